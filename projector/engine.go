package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/eventcodec"
	"github.com/orderflow/orderflow/eventstore"
)

// EventReader reads a stream from the event store, to fill gaps.
type EventReader interface {
	ReadStream(ctx context.Context, streamID string, from int64, limit int) ([]eventstore.Event, error)
}

// Outcome says what Handle did with an event.
type Outcome int

// Outcomes of Handle.
const (
	Applied   Outcome = iota // the event (and any missing before it) was applied
	Duplicate                // already applied: skipped
	Skipped                  // its stream is parked, or the projection does not want it
	Parked                   // it kept failing: its stream is now parked
)

// EngineConfig tunes an Engine.
type EngineConfig struct {
	// Attempts is how many times an event is tried before its stream is
	// parked (default 5).
	Attempts int
	// Backoff is the wait before the first retry, doubled each time
	// (default 50ms).
	Backoff time.Duration
}

// Engine applies events to projections with their checkpoints.
type Engine struct {
	pool   *pgxpool.Pool
	store  EventReader
	cfg    EngineConfig
	logger *slog.Logger

	freshness *prometheus.HistogramVec
	outcomes  *prometheus.CounterVec

	mu       sync.Mutex
	batchers map[string]*batcher // by projection name
}

// NewEngine returns an engine writing through pool and filling gaps from store.
func NewEngine(pool *pgxpool.Pool, store EventReader, cfg EngineConfig, logger *slog.Logger) (*Engine, error) {
	if pool == nil || store == nil || logger == nil {
		return nil, errors.New("projector: NewEngine: nil dependency")
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 5
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 50 * time.Millisecond
	}
	return &Engine{
		pool: pool, store: store, cfg: cfg, logger: logger, batchers: map[string]*batcher{},
		freshness: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orderflow_projection_freshness_seconds",
			Help:    "Time from an event's append (command accepted) to its view update committing, per projection.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"projection"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_projection_events_total",
			Help: "Events handled by each projection, by outcome (applied, duplicate, skipped, parked).",
		}, []string{"projection", "outcome"}),
	}, nil
}

// Collectors returns the engine's metrics.
func (en *Engine) Collectors() []prometheus.Collector {
	return []prometheus.Collector{en.freshness, en.outcomes}
}

func (o Outcome) String() string {
	return [...]string{"applied", "duplicate", "skipped", "parked"}[o]
}

// lockKey is the advisory lock a rebuild's swap takes exclusively and live
// applies take shared.
func lockKey(projection string) string { return "orderflow.projection." + projection }

// checkpointName is the key of a projection's checkpoints in t.
func checkpointName(p Projection, t Tables) string { return p.Name() + t.suffix }

// Handle applies a recorded event to p live, with retries; an event that
// keeps failing parks its stream and returns Parked with a nil error. It
// returns an error only for transient failures (database unreachable, ctx
// ended), which the caller should retry without acknowledging.
func (en *Engine) Handle(ctx context.Context, p Projection, e eventstore.Event) (Outcome, error) {
	if !Wants(p, e.StreamID) {
		return Skipped, nil
	}
	backoff := en.cfg.Backoff
	var err error
	for attempt := 1; attempt <= en.cfg.Attempts; attempt++ {
		var out Outcome
		out, err = en.apply(ctx, p, Live, e, true)
		if err == nil {
			en.outcomes.WithLabelValues(p.Name(), out.String()).Inc()
			if out == Applied {
				en.freshness.WithLabelValues(p.Name()).Observe(time.Since(e.RecordedAt).Seconds())
			}
			return out, nil
		}
		if transient(ctx, err) {
			return 0, err
		}
		en.logger.Warn("projection failed to apply an event", "projection", p.Name(), "stream", e.StreamID,
			"version", e.Version, "attempt", attempt, "err", err)
		if attempt < en.cfg.Attempts {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(backoff):
			}
			backoff *= 2
		}
	}
	if perr := en.park(ctx, p, e, err); perr != nil {
		return 0, perr
	}
	en.outcomes.WithLabelValues(p.Name(), Parked.String()).Inc()
	en.logger.Error("projection parked a stream", "projection", p.Name(), "stream", e.StreamID, "version", e.Version, "err", err)
	return Parked, nil
}

// transient reports errors worth retrying later rather than parking for.
func transient(ctx context.Context, err error) bool {
	var netErr net.Error
	var connErr *pgconn.ConnectError
	return ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &netErr) || errors.As(err, &connErr) || pgconn.SafeToRetry(err)
}

// apply applies e, and any versions of its stream missing before it, to p's
// tables t in one transaction with the checkpoint. live takes the shared
// side of the projection's lock, so a rebuild can swap tables under it.
func (en *Engine) apply(ctx context.Context, p Projection, t Tables, e eventstore.Event, live bool) (Outcome, error) {
	out := Applied
	err := pgx.BeginFunc(ctx, en.pool, func(tx pgx.Tx) error {
		var err error
		out, err = en.applyInTx(ctx, tx, p, t, e, live)
		return err
	})
	return out, err
}

func (en *Engine) applyInTx(ctx context.Context, tx pgx.Tx, p Projection, t Tables, e eventstore.Event, live bool) (Outcome, error) {
	b := &pgx.Batch{}
	if live {
		b.Queue(`select pg_advisory_xact_lock_shared(hashtextextended($1, 0))`, lockKey(p.Name()))
	}
	var (
		cp     int64
		parked bool
	)
	b.Queue(`insert into projection_checkpoints as c (projection, stream_id, version) values ($1, $2, 0)
		on conflict (projection, stream_id) do update set version = c.version
		returning version, exists (select 1 from projection_parked where projection = $1 and stream_id = $2)`,
		checkpointName(p, t), e.StreamID).QueryRow(func(row pgx.Row) error { return row.Scan(&cp, &parked) })
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return 0, fmt.Errorf("checkpoint of %s: %w", e.StreamID, err)
	}
	switch {
	case parked:
		return Skipped, nil
	case e.Version <= cp:
		return Duplicate, nil
	}
	events := []eventstore.Event{e}
	if e.Version > cp+1 { // arrived ahead of versions not yet applied: read them
		missing, err := en.store.ReadStream(ctx, e.StreamID, cp+1, int(e.Version-cp-1))
		if err != nil {
			return 0, fmt.Errorf("read missing versions of %s: %w", e.StreamID, err)
		}
		if len(missing) != int(e.Version-cp-1) {
			return 0, fmt.Errorf("read missing versions of %s: got %d of %d", e.StreamID, len(missing), e.Version-cp-1)
		}
		events = append(missing, e)
	}
	decoded := make([]Event, len(events))
	for i, r := range events {
		pe, err := Decode(r)
		if err != nil {
			return 0, err
		}
		decoded[i] = pe
	}
	if err := p.ApplyBatch(ctx, tx, t, decoded); err != nil {
		return 0, fmt.Errorf("%s: apply %s v%d: %w", p.Name(), e.StreamID, e.Version, err)
	}
	if _, err := tx.Exec(ctx, `update projection_checkpoints set version = $3 where projection = $1 and stream_id = $2`,
		checkpointName(p, t), e.StreamID, e.Version); err != nil {
		return 0, fmt.Errorf("checkpoint of %s: %w", e.StreamID, err)
	}
	return Applied, nil
}

// park records that p stopped applying e's stream.
func (en *Engine) park(ctx context.Context, p Projection, e eventstore.Event, cause error) error {
	_, err := en.pool.Exec(ctx, `insert into projection_parked (projection, stream_id, version, error) values ($1, $2, $3, $4)
		on conflict (projection, stream_id) do nothing`, p.Name(), e.StreamID, e.Version, cause.Error())
	if err != nil {
		return fmt.Errorf("park %s for %s: %w", e.StreamID, p.Name(), err)
	}
	return nil
}

// Decode turns a recorded event into what projections fold. An event type
// this build does not know decodes with a nil Payload (folds skip it); a
// known type whose payload does not decode is an error.
func Decode(r eventstore.Event) (Event, error) {
	e := Event{StreamID: r.StreamID, Version: r.Version, Type: r.Type, RecordedAt: r.RecordedAt,
		CorrelationID: r.Metadata.CorrelationID, CausationID: r.Metadata.CausationID}
	if r.ID != uuid.Nil {
		e.EventID = r.ID.String()
	}
	payload, err := eventcodec.Decode(r.Type, r.SchemaVersion, r.Data)
	switch {
	case errors.Is(err, eventcodec.ErrUnknownEvent):
		return e, nil
	case err != nil:
		return Event{}, fmt.Errorf("decode %s v%d of %s: %w", r.Type, r.Version, r.StreamID, err)
	}
	e.Payload = payload
	return e, nil
}
