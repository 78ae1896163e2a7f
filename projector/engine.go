package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/eventcodec"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/internal/batch"
	"github.com/orderflow/orderflow/internal/latency"
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
	// RebuildChunk is how many events of the log a rebuild reads at a time
	// (default RebuildChunk).
	RebuildChunk int
	// RebuildTxEvents is about how many events of the log one rebuild
	// transaction folds, its position saved with it (default
	// RebuildTxEvents).
	RebuildTxEvents int
	// MaxLiveBatches is how many live batch transactions of all projections
	// may run at once (0: no limit, one per projection). A projection whose
	// batch waits for a turn gathers more events into it, so a lower limit
	// costs fewer transactions and less CPU under load, at the price of
	// fresher views: on a machine the projector shares with the saga, it
	// leaves the saga's path more of the cores.
	MaxLiveBatches int
}

// Engine applies events to projections with their checkpoints.
type Engine struct {
	pool   *pgxpool.Pool
	store  EventReader
	cfg    EngineConfig
	logger *slog.Logger

	freshness *prometheus.HistogramVec
	delivery  *prometheus.HistogramVec
	batchTime *prometheus.HistogramVec
	outcomes  *prometheus.CounterVec
	waiting   prometheus.Gauge

	turns chan struct{} // one per live batch that may run (MaxLiveBatches); nil: no limit

	mu       sync.Mutex
	batchers map[string]*batch.Batcher[eventstore.Event, result] // by projection name
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
	if cfg.RebuildChunk <= 0 {
		cfg.RebuildChunk = RebuildChunk
	}
	if cfg.RebuildTxEvents <= 0 {
		cfg.RebuildTxEvents = RebuildTxEvents
	}
	if cfg.MaxLiveBatches < 0 {
		return nil, fmt.Errorf("projector: NewEngine: MaxLiveBatches %d is negative", cfg.MaxLiveBatches)
	}
	var turns chan struct{}
	if cfg.MaxLiveBatches > 0 {
		turns = make(chan struct{}, cfg.MaxLiveBatches)
	}
	return &Engine{
		pool: pool, store: store, cfg: cfg, logger: logger, batchers: map[string]*batch.Batcher[eventstore.Event, result]{},
		turns: turns,
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderflow_projection_batches_waiting",
			Help: "Live batches waiting for a turn to run (ORDERFLOW_PROJECTOR_MAX_BATCHES).",
		}),
		freshness: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orderflow_projection_freshness_seconds",
			Help:    "Time from an event's append (command accepted) to its view update committing, per projection.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"projection"}),
		delivery: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "orderflow_projection_delivery_seconds",
			Help: "Time from an event's append to its message reaching the projection's handler (the relay, Kafka and the consumer: " +
				"freshness less the apply), per projection, for the events it applies.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"projection"}),
		batchTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orderflow_projection_batch_seconds",
			Help:    "Time of one live apply transaction (the events handled together), to its commit, per projection.",
			Buckets: latency.Buckets(),
		}, []string{"projection"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_projection_events_total",
			Help: "Events handled by each projection, by outcome (applied, duplicate, skipped, parked).",
		}, []string{"projection", "outcome"}),
	}, nil
}

// Collectors returns the engine's metrics.
func (en *Engine) Collectors() []prometheus.Collector {
	return []prometheus.Collector{en.freshness, en.delivery, en.batchTime, en.outcomes, en.waiting, parkedCollector{en}}
}

// parkedCollector exports how many streams each projection has parked now,
// read from projection_parked on each scrape: those the live projection
// parked and those its last rebuild did (the counter of outcomes only
// sees the live ones, and starts again at 0 with the process).
type parkedCollector struct{ en *Engine }

var parkedDesc = prometheus.NewDesc("orderflow_projection_parked_streams",
	"Streams a projection has parked now, by the live projection or its last rebuild; a rebuild clears them.",
	[]string{"projection"}, nil)

func (c parkedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- parkedDesc }

// Collect leaves the metric out of a scrape when the database does not
// answer, so the rest of /metrics still does.
func (c parkedCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var keys []string
	for _, p := range All() {
		keys = append(keys, parkedKey(p, Live))
	}
	rows, err := c.en.pool.Query(ctx, `select projection, count(*) from projection_parked where projection = any($1) group by projection`, keys)
	counts := map[string]int64{}
	if err == nil {
		var (
			key string
			n   int64
		)
		_, err = pgx.ForEachRow(rows, []any{&key, &n}, func() error {
			counts[key] = n
			return nil
		})
	}
	if err != nil {
		c.en.logger.Warn("parked streams not exported in this scrape", "err", err)
		return
	}
	for _, p := range All() {
		ch <- prometheus.MustNewConstMetric(parkedDesc, prometheus.GaugeValue, float64(counts[parkedKey(p, Live)]), p.Name())
	}
}

func (o Outcome) String() string {
	return [...]string{"applied", "duplicate", "skipped", "parked"}[o]
}

// lockKey is the advisory lock a rebuild's swap takes exclusively and live
// applies take shared.
func lockKey(projection string) string { return "orderflow.projection." + projection }

// checkpoints returns the quoted name of p's checkpoint table in t: the last
// version of each stream applied to the view, committed with it, for the
// streams applied past the position p's last rebuild replayed to (a stream
// without a row stands at its last version up to there; see
// replayedCheckpoints). It is one of p's tables (see tables), so a rebuild
// fills a shadow of it and swaps it in with the views. A projection's migration creates it with its views:
// (stream_id text primary key, version bigint not null).
func checkpoints(p Projection, t Tables) string { return t.Name(p.Name() + "_checkpoints") }

// tables returns p's view tables and its checkpoint table.
func tables(p Projection) []string { return append(slices.Clone(p.Tables()), p.Name()+"_checkpoints") }

// parkedKey is the key of p's parked streams in t in projection_parked.
func parkedKey(p Projection, t Tables) string { return p.Name() + t.suffix }

// errCheckpointMoved reports that another transaction applied a stream
// this one was applying (two consumers briefly sharing a partition during a
// rebalance): it rolls back and the event is tried again.
var errCheckpointMoved = errors.New("projector: a checkpoint moved under a concurrent apply")

// Handle applies a recorded event to p live, with retries; an event that
// keeps failing parks its stream and returns Parked with a nil error. It
// returns an error only for transient failures (database unreachable, ctx
// ended), which the caller should retry without acknowledging.
func (en *Engine) Handle(ctx context.Context, p Projection, e eventstore.Event) (Outcome, error) {
	return en.handle(ctx, p, e, true)
}

// handle is Handle; when e keeps failing, it first handles the versions
// missing before e one by one (handleEarlier) if earlier is true.
func (en *Engine) handle(ctx context.Context, p Projection, e eventstore.Event, earlier bool) (Outcome, error) {
	if !Wants(p, e.StreamID) {
		return Skipped, nil
	}
	backoff := en.cfg.Backoff
	var err error
	for attempt := 1; attempt <= en.cfg.Attempts; attempt++ {
		var out Outcome
		out, err = en.applyOne(ctx, p, e)
		if err == nil {
			en.observe(p, e, out)
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
	// e may have come ahead of versions the projection lacks, which it
	// applies with e in one transaction: the failure may be theirs. Those
	// go one by one first, so the stream parks at the event that fails,
	// with every one before it applied.
	if earlier {
		if out, done, herr := en.handleEarlier(ctx, p, e); done || herr != nil {
			return out, herr
		}
	}
	if perr := en.park(ctx, p, e, err); perr != nil {
		return 0, perr
	}
	en.outcomes.WithLabelValues(p.Name(), Parked.String()).Inc()
	en.logger.Error("projection parked a stream", "projection", p.Name(), "stream", e.StreamID, "version", e.Version, "err", err)
	return Parked, nil
}

// handleEarlier handles, one by one and in order, the versions of e's
// stream that p lacks before e, then e itself, and reports done. When one
// of them parks the stream, e is skipped with it. With no version missing
// before e, or when the store does not hold every missing version (e's
// stream cannot be applied up to e: e is to be parked), it does nothing
// (done is false). Neither those versions nor e look for earlier ones
// again: each is handled with every version before it applied.
func (en *Engine) handleEarlier(ctx context.Context, p Projection, e eventstore.Event) (out Outcome, done bool, err error) {
	// A failure to look is the database's: transient ones are retried, the
	// rest leave e to be parked as it is.
	lookFailed := func(err error) (Outcome, bool, error) {
		if transient(ctx, err) {
			return 0, false, err
		}
		return 0, false, nil
	}
	cp, err := en.streamCheckpoint(ctx, p, e)
	if err != nil {
		return lookFailed(err)
	}
	if e.Version <= cp+1 {
		return 0, false, nil
	}
	missing := e.Version - cp - 1
	earlier, err := en.store.ReadStream(ctx, e.StreamID, cp+1, int(missing))
	if err != nil {
		return lookFailed(err)
	}
	if int64(len(earlier)) != missing { // versions run without gaps: these are cp+1 to e's predecessor
		return 0, false, nil
	}
	for _, x := range earlier {
		xout, err := en.handle(ctx, p, x, false)
		if err != nil {
			return 0, true, err
		}
		if xout == Parked || xout == Skipped {
			en.observe(p, e, Skipped)
			return Skipped, true, nil
		}
	}
	out, err = en.handle(ctx, p, e, false)
	return out, true, err
}

// streamCheckpoint returns the last version of e's stream that p's live
// tables hold, as a live batch reads it (streamStates).
func (en *Engine) streamCheckpoint(ctx context.Context, p Projection, e eventstore.Event) (cp int64, err error) {
	err = en.live(ctx, p, func(tx pgx.Tx) error {
		states, err := en.streamStates(ctx, tx, p, []eventstore.Event{e})
		if err == nil {
			cp = states[e.StreamID].cp
		}
		return err
	})
	return cp, err
}

// observe counts what was done with e, and the freshness of an applied one.
func (en *Engine) observe(p Projection, e eventstore.Event, out Outcome) {
	en.outcomes.WithLabelValues(p.Name(), out.String()).Inc()
	if out == Applied {
		en.freshness.WithLabelValues(p.Name()).Observe(time.Since(e.RecordedAt).Seconds())
	}
}

// transient reports errors worth retrying later rather than parking for.
func transient(ctx context.Context, err error) bool {
	var netErr net.Error
	var connErr *pgconn.ConnectError
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001") { // deadlock, serialization failure
		return true
	}
	return ctx.Err() != nil || errors.Is(err, errCheckpointMoved) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &netErr) || errors.As(err, &connErr) || pgconn.SafeToRetry(err)
}

// applyOne applies e, and any versions of its stream missing before it, to
// p's live tables in one transaction with the checkpoint.
func (en *Engine) applyOne(ctx context.Context, p Projection, e eventstore.Event) (Outcome, error) {
	var outs []Outcome
	err := en.live(ctx, p, func(tx pgx.Tx) error {
		var err error
		outs, err = en.applyLive(ctx, tx, p, []eventstore.Event{e})
		return err
	})
	if err != nil {
		return 0, err
	}
	return outs[0], nil
}

// park records that p stopped applying e's stream, under the shared side
// of p's lock like any live write, so it never lands between a swap's
// clearing of the live parked streams and its moving in the rebuilt ones.
func (en *Engine) park(ctx context.Context, p Projection, e eventstore.Event, cause error) error {
	err := en.live(ctx, p, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `insert into projection_parked (projection, stream_id, version, error) values ($1, $2, $3, $4)
			on conflict (projection, stream_id) do nothing`, parkedKey(p, Live), e.StreamID, e.Version, cause.Error())
		return err
	})
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
