// Package command is orderflow's write side: the order and stock aggregates
// as pure decide and fold functions, one handler per command that loads,
// decides and appends, and the command REST API.
package command

import (
	"context"
	"errors"
	"fmt"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/eventcodec"
	"github.com/orderflow/orderflow/eventstore"
)

// EventStore is what the command handlers need of the event log.
type EventStore interface {
	Append(ctx context.Context, a eventstore.Append) (eventstore.Result, error)
	ReadStream(ctx context.Context, streamID string, from int64, limit int) ([]eventstore.Event, error)
	LookupCommand(ctx context.Context, commandID string) (eventstore.CommandRecord, error)
}

var _ EventStore = (*eventstore.Store)(nil)

// Meta is what travels with a command besides its content.
type Meta struct {
	// CommandID makes the command idempotent; empty for none.
	CommandID string
	// Fingerprint identifies the command's content, so a retry (same
	// fingerprint) is told from another command reusing CommandID.
	Fingerprint   string
	CorrelationID string
	Actor         string
	TraceParent   string
	TraceState    string
}

// Accepted is where the command left the stream it wrote.
type Accepted struct {
	StreamID string
	Version  int64
}

// replay answers a command whose id was already handled: done is true when
// it did, with the first result, or with eventstore.ErrCommandIDReused when
// the id was used for another command.
func replay(ctx context.Context, store EventStore, meta Meta) (acc Accepted, done bool, err error) {
	if meta.CommandID == "" {
		return Accepted{}, false, nil
	}
	rec, err := store.LookupCommand(ctx, meta.CommandID)
	switch {
	case errors.Is(err, eventstore.ErrNotFound):
		return Accepted{}, false, nil
	case err != nil:
		return Accepted{}, true, err
	case rec.Fingerprint != meta.Fingerprint:
		return Accepted{}, true, fmt.Errorf("command %s: %w", meta.CommandID, eventstore.ErrCommandIDReused)
	}
	return accepted(rec.Result)
}

func accepted(res eventstore.Result) (Accepted, bool, error) {
	if len(res.Streams) != 1 {
		return Accepted{}, true, fmt.Errorf("command: result of %d streams, want 1", len(res.Streams))
	}
	return Accepted{StreamID: res.Streams[0].StreamID, Version: res.Streams[0].Version}, true, nil
}

// appendEvents encodes events and appends them to one stream.
func appendEvents(ctx context.Context, store EventStore, meta Meta, stream string, exp eventstore.ExpectedVersion, events []orderflow.Event) (Accepted, error) {
	md := eventstore.Metadata{
		CorrelationID: meta.CorrelationID, CommandID: meta.CommandID, Actor: meta.Actor,
		TraceParent: meta.TraceParent, TraceState: meta.TraceState,
	}
	data := make([]eventstore.EventData, len(events))
	for i, e := range events {
		payload, err := eventcodec.Encode(e)
		if err != nil {
			return Accepted{}, err
		}
		data[i] = eventstore.EventData{Type: e.EventType(), SchemaVersion: e.SchemaVersion(), Data: payload, Metadata: md}
	}
	res, err := store.Append(ctx, eventstore.Append{
		CommandID: meta.CommandID, Fingerprint: meta.Fingerprint,
		Streams: []eventstore.StreamAppend{{StreamID: stream, Expected: exp, Events: data}},
	})
	if errors.Is(err, eventstore.ErrDuplicateCommand) { // a concurrent retry won the race
		acc, _, err := accepted(res)
		return acc, err
	}
	if err != nil {
		return Accepted{}, fmt.Errorf("append to %s: %w", stream, err)
	}
	v, _ := res.Version(stream)
	return Accepted{StreamID: stream, Version: v}, nil
}

// loadOrder reads and folds an order's stream. It returns
// orderflow.ErrNotFound for an order that was never placed.
func loadOrder(ctx context.Context, store EventStore, id orderflow.OrderID) (Order, error) {
	recorded, err := store.ReadStream(ctx, id.Stream(), 1, 0)
	if errors.Is(err, eventstore.ErrNotFound) {
		return Order{}, fmt.Errorf("order %s: %w", id, orderflow.ErrNotFound)
	}
	if err != nil {
		return Order{}, err
	}
	events := make([]orderflow.Event, 0, len(recorded))
	for _, r := range recorded {
		e, err := eventcodec.Decode(r.Type, r.SchemaVersion, r.Data)
		if errors.Is(err, eventcodec.ErrUnknownEvent) {
			events = append(events, unknownEvent{})
			continue // a later event type: counts for the version only
		}
		if err != nil {
			return Order{}, fmt.Errorf("order %s: %w", id, err)
		}
		events = append(events, e)
	}
	return FoldOrder(events), nil
}

// unknownEvent stands for an event this build cannot decode.
type unknownEvent struct{}

func (unknownEvent) EventType() string  { return "" }
func (unknownEvent) SchemaVersion() int { return 0 }
