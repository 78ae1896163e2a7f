// Package eventstore is orderflow's event log in PostgreSQL.
//
// It promises: appends checked against an expected version (exactly one of
// several concurrent appends at the same version wins); atomic appends to
// several streams; idempotent command ids; reading one stream; reading the
// whole log in a safe global order in which no late-committing event is ever
// skipped and every stream reads in version order; and tailing that wakes
// promptly on new events and falls back to polling.
package eventstore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"
	"github.com/google/uuid"
)

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrConcurrency: an expected version did not hold; nothing was appended.
	ErrConcurrency = errors.New("eventstore: concurrency conflict")
	// ErrNotFound: the stream has no events.
	ErrNotFound = errors.New("eventstore: stream not found")
	// ErrDuplicateCommand: the command id already appended with the same
	// fingerprint; nothing new was stored and the Result is the first one.
	ErrDuplicateCommand = errors.New("eventstore: duplicate command")
	// ErrCommandIDReused: the command id already appended a different command
	// (another fingerprint); nothing was stored.
	ErrCommandIDReused = errors.New("eventstore: command id reused for a different command")
	// ErrInvalidAppend: the append is malformed (no streams, no events, a
	// stream named twice, an empty type); nothing was stored.
	ErrInvalidAppend = errors.New("eventstore: invalid append")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("eventstore: closed")
	// ErrOutcomeUnknown: the append was sent but its transaction's outcome
	// never came back (the connection failed or the timeout struck around
	// the commit): it may have been stored. Retrying with the same command
	// id is safe and tells which.
	ErrOutcomeUnknown = errors.New("eventstore: the append's outcome is unknown")
	// ErrUnavailable: the append never reached the database (no connection
	// could be had); nothing was stored, and a retry may succeed.
	ErrUnavailable = errors.New("eventstore: database unavailable")
)

// ExpectedVersion is what an append expects of a stream: Any, NoStream or an
// exact version (see Exactly).
type ExpectedVersion int64

const (
	// Any appends whatever the stream's version.
	Any ExpectedVersion = -1
	// NoStream appends only if the stream has no events yet.
	NoStream ExpectedVersion = 0
)

// Exactly expects the stream to be at version v (0 is the same as NoStream).
func Exactly(v int64) ExpectedVersion { return ExpectedVersion(v) }

// ConflictError details an ErrConcurrency: which stream, what was expected and
// what it was.
type ConflictError struct {
	StreamID string
	Expected ExpectedVersion
	Actual   int64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("eventstore: concurrency conflict on %s: expected version %d, stream is at %d",
		e.StreamID, e.Expected, e.Actual)
}

// Unwrap makes errors.Is(err, ErrConcurrency) true.
func (e *ConflictError) Unwrap() error { return ErrConcurrency }

// Metadata travels with every event.
type Metadata struct {
	CorrelationID string `json:"correlation_id,omitempty"`
	CausationID   string `json:"causation_id,omitempty"`
	CommandID     string `json:"command_id,omitempty"`
	Actor         string `json:"actor,omitempty"`
	TraceParent   string `json:"traceparent,omitempty"`
	TraceState    string `json:"tracestate,omitempty"`
}

// EventData is an event to append.
type EventData struct {
	ID            uuid.UUID // zero: a new UUIDv7 is assigned
	Type          string
	SchemaVersion int
	Data          json.RawMessage
	Metadata      Metadata
}

// StreamAppend is the part of an append that goes to one stream.
type StreamAppend struct {
	StreamID string
	Expected ExpectedVersion
	Events   []EventData
}

// Append appends to one or more streams, all or nothing. CommandID, when set,
// makes the append idempotent; Fingerprint tells a retry of the same command
// (same fingerprint) from another command reusing the id.
type Append struct {
	CommandID   string
	Fingerprint string
	Streams     []StreamAppend
}

// StreamVersion is a stream's version after an append.
type StreamVersion struct {
	StreamID string `json:"id"`
	Version  int64  `json:"version"`
}

// Result is the outcome of a successful append.
type Result struct {
	Streams []StreamVersion `json:"streams"`
}

// Version returns the version the append left streamID at, and whether the
// append wrote to it.
func (r Result) Version(streamID string) (int64, bool) {
	for _, s := range r.Streams {
		if s.StreamID == streamID {
			return s.Version, true
		}
	}
	return 0, false
}

// Position is a place in the global order of the log. Positions compare with
// Compare; the zero Position is before the first event.
type Position struct {
	TxID int64 // id of the transaction that wrote the event
	Seq  int64 // the event's sequence number
}

// Compare returns -1, 0 or +1 as p is before, at or after q.
func (p Position) Compare(q Position) int {
	switch {
	case p.TxID < q.TxID:
		return -1
	case p.TxID > q.TxID:
		return 1
	case p.Seq < q.Seq:
		return -1
	case p.Seq > q.Seq:
		return 1
	}
	return 0
}

// String returns the token form "txid.seq", accepted by ParsePosition.
func (p Position) String() string {
	return strconv.FormatInt(p.TxID, 10) + "." + strconv.FormatInt(p.Seq, 10)
}

// ParsePosition parses the token form of a Position ("" is the start).
func ParsePosition(s string) (Position, error) {
	if s == "" {
		return Position{}, nil
	}
	tx, seq, ok := strings.Cut(s, ".")
	t, err1 := strconv.ParseInt(tx, 10, 64)
	q, err2 := strconv.ParseInt(seq, 10, 64)
	if !ok || err1 != nil || err2 != nil || t < 0 || q < 0 {
		return Position{}, fmt.Errorf("eventstore: bad position %q: want txid.seq", s)
	}
	return Position{TxID: t, Seq: q}, nil
}

// Event is a recorded event.
type Event struct {
	ID            uuid.UUID
	StreamID      string
	Version       int64
	Type          string
	SchemaVersion int
	Data          json.RawMessage
	Metadata      Metadata
	RecordedAt    time.Time
	Position      Position
}
