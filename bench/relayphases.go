package main

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/relay"
)

// phaseTimes is where a relay run's time went, observed from outside the
// relay so that it holds whatever the relay's loop looks like (one batch at
// a time, or reading ahead while it publishes):
//
//   - Read: each ReadAll of the tail (its query, row scan and metadata
//     decoding), timed by a pgx tracer on the relay's pool;
//   - Write: each WriteMessages of the producer, until the broker
//     acknowledged;
//   - Checkpoint: each UPDATE of relay_checkpoints, committed, timed by the
//     same tracer (the relay's lock connection copies the pool's config);
//   - Handover: each batch callback the relay gave Subscribe, from call to
//     return: the whole publish in a relay that publishes inside it, the
//     wait for a busy publisher in one that hands batches over.
//
// The publisher's other time (building messages, the breaker, waiting for a
// batch) is the run's wall time less its Write and Checkpoint.
type phaseTimes struct {
	mu                      sync.Mutex // the tracer is called from the relay's goroutines
	Read, Write, Checkpoint []time.Duration
	Handover                []time.Duration
	Sizes                   []int // events per batch, in the order handed over
}

// timedTailer times the callbacks of the tail it wraps; it changes nothing it
// passes on.
type timedTailer struct {
	next relay.Tailer
	t    *phaseTimes
}

func (tt *timedTailer) Subscribe(ctx context.Context, after eventstore.Position, batchSize int, fn func(context.Context, []eventstore.Event) error) error {
	return tt.next.Subscribe(ctx, after, batchSize, func(ctx context.Context, events []eventstore.Event) error {
		began := time.Now()
		err := fn(ctx, events)
		d := time.Since(began)
		tt.t.mu.Lock()
		tt.t.Handover = append(tt.t.Handover, d)
		tt.t.Sizes = append(tt.t.Sizes, len(events))
		tt.t.mu.Unlock()
		return err
	})
}

// timedProducer times the WriteMessages calls of the producer it wraps (each
// attempt, if a batch took several).
type timedProducer struct {
	next relay.Producer
	t    *phaseTimes
}

func (tp *timedProducer) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	began := time.Now()
	err := tp.next.WriteMessages(ctx, msgs...)
	d := time.Since(began)
	tp.t.mu.Lock()
	tp.t.Write = append(tp.t.Write, d)
	tp.t.mu.Unlock()
	return err
}

// sqlTimer is a pgx QueryTracer that times the relay's reads of the log and
// its checkpoint updates into the phaseTimes it points at; other statements
// pass untimed. A query's time runs until its rows are closed, so a read
// includes scanning and decoding its rows.
type sqlTimer struct {
	mu sync.Mutex
	t  *phaseTimes // nil: time nothing
}

// into directs the timings to t (nil: nowhere).
func (st *sqlTimer) into(t *phaseTimes) {
	st.mu.Lock()
	st.t = t
	st.mu.Unlock()
}

type sqlTimerKey struct{}

type sqlStart struct {
	at   time.Time
	kind int
}

const (
	sqlRead = iota + 1
	sqlCheckpoint
)

// sqlKind classifies a statement: eventstore.ReadAll's read of the log in
// the safe global order, the relay's checkpoint update, or neither (0).
func sqlKind(sql string) int {
	switch {
	case strings.Contains(sql, "update relay_checkpoints"):
		return sqlCheckpoint
	case strings.Contains(sql, "from events") && strings.Contains(sql, "orderflow_log_bound") && strings.Contains(sql, "(tx_id, seq) >"):
		return sqlRead
	}
	return 0
}

func (st *sqlTimer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if k := sqlKind(data.SQL); k != 0 {
		return context.WithValue(ctx, sqlTimerKey{}, sqlStart{at: time.Now(), kind: k})
	}
	return ctx
}

func (st *sqlTimer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	start, ok := ctx.Value(sqlTimerKey{}).(sqlStart)
	if !ok || data.Err != nil {
		return
	}
	d := time.Since(start.at)
	st.mu.Lock()
	t := st.t
	st.mu.Unlock()
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch start.kind {
	case sqlRead:
		t.Read = append(t.Read, d)
	case sqlCheckpoint:
		t.Checkpoint = append(t.Checkpoint, d)
	}
}

var _ pgx.QueryTracer = (*sqlTimer)(nil)

// sum returns the total of ds.
func sum(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}
