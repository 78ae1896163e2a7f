// Package relay publishes the event log to Kafka. One relay is active at a
// time (a PostgreSQL session advisory lock elects it; others wait and take
// over when it dies). The active relay tails the log in its safe global
// order, publishes each event as a CloudEvent to the topic of its stream's
// bounded context, keyed by stream id, with acknowledgements from all in-sync
// replicas and one batch in flight, and moves its checkpoint only after the
// broker acknowledged (in the background: a publish never waits for it). A
// circuit breaker stops it hammering a broker that is down; events keep
// accumulating in PostgreSQL and are drained on recovery.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow/breaker"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/internal/latency"
)

// Producer writes a batch of messages and returns once the broker
// acknowledged all of them, or with an error (some may have been written).
type Producer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Tailer is what the relay needs of the event log.
type Tailer interface {
	Subscribe(ctx context.Context, after eventstore.Position, batchSize int, fn func(context.Context, []eventstore.Event) error) error
}

// DefaultName is the name of a relay whose Config names none.
const DefaultName = "kafka"

// Config tunes a Relay.
type Config struct {
	// Name identifies the relay's checkpoint and leader lock (default
	// DefaultName).
	Name string
	// Source is the CloudEvents source attribute (default "/orderflow").
	Source string
	// TopicPrefix names the topics: "<prefix>.order" and so on (default
	// DefaultTopicPrefix).
	TopicPrefix string
	// BatchSize is the most events published per batch (default 1000).
	BatchSize int
	// RetryInterval is the wait between publish attempts while the breaker is
	// closed (default 200ms); while it is open the relay waits for it.
	RetryInterval time.Duration
	// LeaderPoll is how often a standby relay tries to become the leader,
	// and how often the leader checks it still is (default 1s).
	LeaderPoll time.Duration
}

func (c *Config) setDefaults() {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.TopicPrefix == "" {
		c.TopicPrefix = DefaultTopicPrefix
	}
	if c.Source == "" {
		c.Source = "/orderflow"
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = 200 * time.Millisecond
	}
	if c.LeaderPoll <= 0 {
		c.LeaderPoll = time.Second
	}
}

// Relay publishes the event log to Kafka.
type Relay struct {
	cfg      Config
	pool     *pgxpool.Pool
	tail     Tailer
	producer Producer
	breaker  *breaker.Breaker
	logger   *slog.Logger
	leader   atomic.Bool

	published prometheus.Counter
	batches   prometheus.Histogram
	delay     prometheus.Histogram
	failures  prometheus.Counter
	isLeader  prometheus.GaugeFunc
}

// New returns a relay that reads from tail, keeps its checkpoint and leader
// lock in pool's database, and publishes through producer guarded by br.
func New(cfg Config, pool *pgxpool.Pool, tail Tailer, producer Producer, br *breaker.Breaker, logger *slog.Logger) (*Relay, error) {
	if pool == nil || tail == nil || producer == nil || br == nil || logger == nil {
		return nil, errors.New("relay: New: nil dependency")
	}
	cfg.setDefaults()
	r := &Relay{cfg: cfg, pool: pool, tail: tail, producer: producer, breaker: br, logger: logger.With("relay", cfg.Name)}
	r.published = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "orderflow_relay_published_events_total", Help: "Events the broker acknowledged.",
	})
	r.batches = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "orderflow_relay_batch_size", Help: "Events per published batch.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 7),
	})
	r.delay = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "orderflow_relay_delay_seconds",
		Help:    "Time from an event's append (its recorded time) to the broker's acknowledgement of it.",
		Buckets: latency.Buckets(),
	})
	r.failures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "orderflow_relay_publish_failures_total", Help: "Publish attempts that failed or were refused by the open breaker.",
	})
	r.isLeader = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "orderflow_relay_leader", Help: "1 while this process is the active relay.",
	}, func() float64 {
		if r.leader.Load() {
			return 1
		}
		return 0
	})
	return r, nil
}

// Collectors returns the relay's metrics, including the lag (events and
// seconds behind the log) computed from the stored checkpoint at scrape time.
func (r *Relay) Collectors() []prometheus.Collector {
	return []prometheus.Collector{r.published, r.batches, r.delay, r.failures, r.isLeader, &lagCollector{r}}
}

// Degraded reports the open breaker while it is not closed, else nil: the
// relay cannot publish but commands are still accepted.
func (r *Relay) Degraded(context.Context) error {
	if r.breaker.Open() {
		return fmt.Errorf("kafka breaker %s: events are held in PostgreSQL until the broker is back", r.breaker.State())
	}
	return nil
}

// IsLeader reports whether this relay is the active one.
func (r *Relay) IsLeader() bool { return r.leader.Load() }

// Run relays until ctx ends: it waits to become the leader, publishes from
// the checkpoint on, and if it loses the lock (its connection dies) it goes
// back to waiting. It returns nil when ctx ends.
func (r *Relay) Run(ctx context.Context) error {
	for {
		err := r.lead(ctx)
		r.leader.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		r.logger.Warn("relay stopped leading; will try again", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.cfg.LeaderPoll):
		}
	}
}

// leaderKey is the advisory lock key of the relay's name.
func (r *Relay) lockKey() string { return "orderflow.relay." + r.cfg.Name }

// lead waits for the leader lock, then publishes until ctx ends or the lock
// is lost.
func (r *Relay) lead(ctx context.Context) error {
	// The lock lives in a connection of its own: if this process dies, the
	// connection closes and the lock passes to a standby.
	conn, err := pgx.ConnectConfig(ctx, r.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("relay: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for {
		var got bool
		if err := conn.QueryRow(ctx, `select pg_try_advisory_lock(hashtextextended($1, 0))`, r.lockKey()).Scan(&got); err != nil {
			return fmt.Errorf("relay: leader lock: %w", err)
		}
		if got {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.cfg.LeaderPoll):
		}
	}
	r.leader.Store(true)
	r.logger.Info("relay is the leader")

	if _, err := conn.Exec(ctx, `insert into relay_checkpoints (name) values ($1) on conflict do nothing`, r.cfg.Name); err != nil {
		return fmt.Errorf("relay: checkpoint: %w", err)
	}
	var from eventstore.Position
	if err := conn.QueryRow(ctx, `select tx_id, seq from relay_checkpoints where name = $1`, r.cfg.Name).Scan(&from.TxID, &from.Seq); err != nil {
		return fmt.Errorf("relay: checkpoint: %w", err)
	}
	r.logger.Info("relay resumes", "after", from.String())

	// From here a pinger shares the lock's connection, which is not safe
	// for concurrent use: every use takes mu, and the pinger has ended
	// before the connection closes (deferred calls run last-in first-out).
	var (
		mu      sync.Mutex
		pingers sync.WaitGroup
	)
	defer pingers.Wait()
	leaderCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pingers.Go(func() { // notice a lost connection (and so a lost lock) promptly
		t := time.NewTicker(r.cfg.LeaderPoll)
		defer t.Stop()
		for {
			select {
			case <-leaderCtx.Done():
				return
			case <-t.C:
			}
			mu.Lock()
			err := conn.Ping(leaderCtx)
			mu.Unlock()
			if err != nil && leaderCtx.Err() == nil {
				cancel(fmt.Errorf("relay: leader connection lost: %w", err))
				return
			}
		}
	})

	// While catching up, reading the next batch overlaps publishing this
	// one: the tail runs ahead by at most one batch. Once caught up (a batch
	// smaller than BatchSize), the tail waits for the publisher, so events
	// are not held behind a queue of tiny batches. Only the publisher moves
	// the checkpoint, in order, after the broker acknowledged.
	batches := make(chan []eventstore.Event, 1)
	published := make(chan struct{}, 1)
	tailErr := make(chan error, 1)
	go func() {
		defer close(batches)
		tailErr <- r.tail.Subscribe(leaderCtx, from, r.cfg.BatchSize, func(ctx context.Context, events []eventstore.Event) error {
			select {
			case batches <- events:
			case <-ctx.Done():
				return ctx.Err()
			}
			if len(events) == r.cfg.BatchSize {
				return nil // a backlog: read the next batch now
			}
			select {
			case <-published:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	// The checkpoint is written behind the publisher, on the lock's own
	// connection (a relay that lost the lock cannot move it): each write
	// takes the latest acknowledged position, so a burst of batches costs one
	// write, and a publish never waits for a commit. A crash repeats what was
	// acknowledged since the last write: delivery is at least once anyway.
	var (
		acked    eventstore.Position // the latest acknowledged position; under ackedMu
		ackedMu  sync.Mutex
		saveable = make(chan struct{}, 1)
		saved    eventstore.Position // the checkpointer's own
	)
	save := func(ctx context.Context) error {
		ackedMu.Lock()
		last := acked
		ackedMu.Unlock()
		if last == saved {
			return nil
		}
		mu.Lock()
		_, err := conn.Exec(ctx, `update relay_checkpoints set tx_id = $2, seq = $3, updated_at = now() where name = $1`,
			r.cfg.Name, last.TxID, last.Seq)
		mu.Unlock()
		if err != nil {
			return fmt.Errorf("relay: save checkpoint %s: %w", last, err)
		}
		saved = last
		return nil
	}
	checkpointer := make(chan struct{})
	go func() {
		defer close(checkpointer)
		for {
			select {
			case <-leaderCtx.Done():
				return
			case <-saveable:
			}
			if err := save(leaderCtx); err != nil && leaderCtx.Err() == nil {
				cancel(err)
				return
			}
		}
	}()
	for events := range batches {
		err = r.publish(leaderCtx, events)
		if len(events) < r.cfg.BatchSize {
			published <- struct{}{} // the tail waits for this one
		}
		if err != nil {
			break
		}
		ackedMu.Lock()
		acked = events[len(events)-1].Position
		ackedMu.Unlock()
		select {
		case saveable <- struct{}{}:
		default: // a write is due already; it takes this position too
		}
	}
	cancel(nil) // stop the tail and the checkpointer if the publisher stopped first
	for range batches {
	}
	<-checkpointer
	// What was acknowledged last is saved before leaving, unless the lock's
	// connection is what failed.
	if cause := context.Cause(leaderCtx); cause == nil || errors.Is(cause, context.Canceled) {
		saveCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if saveErr := save(saveCtx); saveErr != nil && err == nil {
			err = saveErr
		}
		stop()
	}
	if tailE := <-tailErr; err == nil {
		err = tailE
	}
	if cause := context.Cause(leaderCtx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// publish writes one batch, retrying until the broker acknowledged it all or
// ctx ends. While the breaker is open it waits instead of calling Kafka.
func (r *Relay) publish(ctx context.Context, events []eventstore.Event) error {
	msgs := make([]kafka.Message, len(events))
	for i, e := range events {
		msgs[i] = Message(e, r.cfg.Source, r.cfg.TopicPrefix)
	}
	for {
		err := r.breaker.Do(func() error { return r.producer.WriteMessages(ctx, msgs...) })
		if err == nil {
			r.published.Add(float64(len(msgs)))
			r.batches.Observe(float64(len(msgs)))
			for _, e := range events {
				r.delay.Observe(time.Since(e.RecordedAt).Seconds())
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.failures.Inc()
		if !errors.Is(err, breaker.ErrOpen) {
			r.logger.Debug("publish failed; retrying", "events", len(msgs), "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.cfg.RetryInterval):
		}
	}
}

// lagCollector exports how far the relay is behind the log.
type lagCollector struct{ r *Relay }

var (
	lagEventsDesc = prometheus.NewDesc("orderflow_relay_lag_events",
		"Events in the log not yet acknowledged by Kafka (capped at 10 million).", nil, nil)
	lagSecondsDesc = prometheus.NewDesc("orderflow_relay_lag_seconds",
		"Age of the oldest event not yet acknowledged by Kafka; 0 when caught up.", nil, nil)
)

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagEventsDesc
	ch <- lagSecondsDesc
}

// BacklogCap caps the events Backlog counts.
const BacklogCap = 10_000_000

// Backlog returns how far the relay called name is behind the log: the
// events past its checkpoint (the first BacklogCap of them; with streams,
// only those whose stream id matches one of these LIKE patterns), and the
// age in seconds of the oldest of them (0 when there is none). It reads an
// index range as long as the backlog, not the log.
func Backlog(ctx context.Context, pool *pgxpool.Pool, name string, streams ...string) (events int64, seconds float64, err error) {
	if len(streams) == 0 {
		streams = []string{"%"}
	}
	b, err := Backlogs(ctx, pool, name, [][]string{streams})
	if err != nil {
		return 0, 0, err
	}
	return b[0].Events, b[0].Seconds, nil
}

// StreamBacklog is Backlog's answer for one group of stream patterns.
type StreamBacklog struct {
	Events  int64
	Seconds float64
}

// Backlogs is Backlog for several groups of LIKE patterns at once, in one
// read of the backlog: one answer per group, in their order.
func Backlogs(ctx context.Context, pool *pgxpool.Pool, name string, groups [][]string) ([]StreamBacklog, error) {
	var (
		index    []int
		patterns []string
	)
	for i, g := range groups {
		for _, p := range g {
			index, patterns = append(index, i), append(patterns, p)
		}
	}
	out := make([]StreamBacklog, len(groups))
	rows, err := pool.Query(ctx, `
		with cp as (
			select coalesce((select tx_id from relay_checkpoints where name = $1), 0) as tx_id,
			       coalesce((select seq from relay_checkpoints where name = $1), 0) as seq
		), pending as materialized (
			select e.stream_id, e.recorded_at from events e, cp
			where (e.tx_id, e.seq) > (cp.tx_id, cp.seq)
			order by e.tx_id, e.seq
			limit $2
		), g as (select * from unnest($3::int[], $4::text[]) as g(i, pattern))
		select gi.i, count(p.recorded_at), coalesce(extract(epoch from now() - min(p.recorded_at)), 0)::float8
		from (select distinct i from g) gi
		left join pending p on exists (select 1 from g where g.i = gi.i and p.stream_id like g.pattern)
		group by gi.i`,
		name, BacklogCap, index, patterns)
	if err == nil {
		var r StreamBacklog
		var i int
		_, err = pgx.ForEachRow(rows, []any{&i, &r.Events, &r.Seconds}, func() error {
			out[i] = r
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("relay %s: backlog: %w", name, err)
	}
	return out, nil
}

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	events, seconds, err := Backlog(ctx, c.r.pool, c.r.cfg.Name)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(lagEventsDesc, err)
		ch <- prometheus.NewInvalidMetric(lagSecondsDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(lagEventsDesc, prometheus.GaugeValue, float64(events))
	ch <- prometheus.MustNewConstMetric(lagSecondsDesc, prometheus.GaugeValue, seconds)
}
