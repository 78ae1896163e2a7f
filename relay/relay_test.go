package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow/breaker"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/internal/dbtest"
	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/kafkapubsub"
	"github.com/orderflow/orderflow/relay"
)

type fixture struct {
	pool    *pgxpool.Pool
	store   *eventstore.Store
	brokers []string
	prefix  string
}

func MustFixture(t *testing.T) fixture {
	t.Helper()
	pool := dbtest.MustPool(t)
	store, err := eventstore.New(pool, eventstore.Config{PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	f := fixture{pool: pool, store: store, brokers: kafkatest.MustBrokers(t), prefix: kafkatest.UniquePrefix(t)}
	var specs []kafkapubsub.TopicSpec
	for _, topic := range relay.Topics(f.prefix) {
		specs = append(specs, kafkapubsub.TopicSpec{Name: topic, Partitions: 3, ReplicationFactor: 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := kafkapubsub.EnsureTopics(ctx, f.brokers, specs); err != nil {
		t.Fatal(err)
	}
	return f
}

// MustRunRelay runs a relay until the test ends.
func (f fixture) MustRunRelay(t *testing.T, producer relay.Producer, br *breaker.Breaker) *relay.Relay {
	t.Helper()
	if br == nil {
		var err error
		if br, err = breaker.New(breaker.Config{Name: "kafka-test", Failures: 3, OpenTimeout: 200 * time.Millisecond}, nil); err != nil {
			t.Fatal(err)
		}
	}
	r, err := relay.New(relay.Config{TopicPrefix: f.prefix, BatchSize: 500, LeaderPoll: 100 * time.Millisecond}, f.pool, f.store, producer, br, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func ev(n int) eventstore.EventData {
	return eventstore.EventData{Type: "Test", Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)),
		Metadata: eventstore.Metadata{CorrelationID: fmt.Sprintf("corr-%d", n), TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
}

// Eight writers append 1,000 events each over 50 streams while the relay
// runs and other transactions roll back; every committed event reaches
// Kafka, each stream in version order, and nothing rolled back does.
func TestRelayPublishesEveryCommittedEventInOrder(t *testing.T) {
	t.Parallel()
	f := MustFixture(t)
	writer := relay.NewProducer(f.brokers)
	t.Cleanup(func() { writer.Close() })
	f.MustRunRelay(t, writer, nil)
	collector := kafkatest.MustCollect(t, f.brokers, relay.Topics(f.prefix)...)

	const writers, perWriter, streams = 8, 1000, 50
	categories := []string{"order", "sku", "reservation", "payment", "misc"}
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		committed  = map[string]bool{}
		rolledBack = map[string]bool{}
	)
	for w := range writers {
		wg.Go(func() {
			ctx := context.Background()
			for i := range perWriter {
				n := w*perWriter + i
				stream := fmt.Sprintf("%s-%d", categories[n%len(categories)], n%streams)
				e := ev(n)
				e.ID = uuid.Must(uuid.NewV7())
				if i%100 == 50 { // now and then a transaction that rolls back
					id := uuid.Must(uuid.NewV7())
					tx, err := f.pool.Begin(ctx)
					if err != nil {
						t.Error(err)
						return
					}
					batch := fmt.Sprintf(`[{"cmd":"","streams":[{"id":%q,"exp":-1,"events":[{"id":%q,"type":"Doomed","sv":1,"data":{}}]}]}]`, stream, id)
					if _, err := tx.Exec(ctx, "select orderflow_append($1::jsonb)", batch); err != nil {
						t.Error(err)
					}
					_ = tx.Rollback(ctx)
					mu.Lock()
					rolledBack[id.String()] = true
					mu.Unlock()
				}
				if _, err := f.store.Append(ctx, eventstore.Append{Streams: []eventstore.StreamAppend{{StreamID: stream, Expected: eventstore.Any, Events: []eventstore.EventData{e}}}}); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				committed[e.ID.String()] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var d kafkatest.Delivery
	msgs := collector.WaitFor(t, 2*time.Minute, func(msgs []kafka.Message) bool {
		var err error
		if d, err = kafkatest.Verify(msgs); err != nil {
			t.Fatal(err)
		}
		for id := range committed {
			if !d.IDs[id] {
				return false
			}
		}
		return true
	})
	for id := range rolledBack {
		if d.IDs[id] {
			t.Fatalf("rolled-back event %s reached Kafka", id)
		}
	}
	t.Logf("%d events relayed, %d duplicates", len(d.IDs), d.Duplicates)

	// The messages are CloudEvents in binary mode on the topic of their context.
	m := msgs[0]
	for _, h := range []string{relay.HeaderSpecVersion, relay.HeaderID, relay.HeaderType, relay.HeaderSource, relay.HeaderTime,
		relay.HeaderStreamID, relay.HeaderStreamVersion, relay.HeaderCorrelationID, relay.HeaderTraceParent, relay.HeaderContentType} {
		if kafkatest.Header(m, h) == "" {
			t.Fatalf("message lacks header %s: %v", h, m.Headers)
		}
	}
	if kafkatest.Header(m, relay.HeaderSpecVersion) != "1.0" {
		t.Fatalf("ce_specversion = %q", kafkatest.Header(m, relay.HeaderSpecVersion))
	}
	if _, err := time.Parse(time.RFC3339Nano, kafkatest.Header(m, relay.HeaderTime)); err != nil {
		t.Fatalf("ce_time: %v", err)
	}
	for _, m := range msgs {
		if want := relay.Topic(f.prefix, relay.ContextOf(string(m.Key))); m.Topic != want {
			t.Fatalf("event of %s on %s, want %s", m.Key, m.Topic, want)
		}
	}
}

// A producer that fails opens the breaker: the relay stops calling it, the
// relay reports degraded, the checkpoint stays; when the producer recovers
// the relay drains the backlog.
func TestRelayBreakerHoldsEventsUntilRecovery(t *testing.T) {
	t.Parallel()
	f := MustFixture(t)
	writer := relay.NewProducer(f.brokers)
	t.Cleanup(func() { writer.Close() })
	flaky := &flakyProducer{next: writer}
	flaky.down.Store(true)
	br, err := breaker.New(breaker.Config{Name: "kafka-flaky", Failures: 3, OpenTimeout: 300 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := f.MustRunRelay(t, flaky, br)
	collector := kafkatest.MustCollect(t, f.brokers, relay.Topics(f.prefix)...)

	ctx := context.Background()
	for i := range 20 {
		if _, err := f.store.Append(ctx, eventstore.Append{Streams: []eventstore.StreamAppend{{StreamID: fmt.Sprintf("order-%d", i%4), Expected: eventstore.Any, Events: []eventstore.EventData{ev(i)}}}}); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, func() bool { return r.Degraded(ctx) != nil })
	// While open, the breaker refuses without calling through: calls grow
	// only by the half-open probes, one per open period.
	before := flaky.calls.Load()
	waitUntil(t, func() bool { return flaky.calls.Load() >= before+2 })
	elapsedCalls := flaky.calls.Load() - before
	if elapsedCalls > 10 {
		t.Fatalf("%d calls to a broken producer while the breaker was open", elapsedCalls)
	}
	var tx, seq int64
	if err := f.pool.QueryRow(ctx, "select tx_id, seq from relay_checkpoints").Scan(&tx, &seq); err != nil || tx != 0 || seq != 0 {
		t.Fatalf("checkpoint moved while Kafka was down: %d.%d, %v", tx, seq, err)
	}

	flaky.down.Store(false)
	msgs := collector.WaitFor(t, time.Minute, func(msgs []kafka.Message) bool { return len(msgs) >= 20 })
	if _, err := kafkatest.Verify(msgs); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return r.Degraded(ctx) == nil })
}

type flakyProducer struct {
	next  relay.Producer
	down  atomic.Bool
	calls atomic.Int64
}

func (p *flakyProducer) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	p.calls.Add(1)
	if p.down.Load() {
		return fmt.Errorf("broker unreachable (simulated)")
	}
	return p.next.WriteMessages(ctx, msgs...)
}

// waitUntil polls cond until it holds, failing the test after a minute.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	if !eventually(cond) {
		t.Fatal("condition not met within a minute")
	}
}

// eventually polls cond until it holds or a minute has passed, and reports
// whether it held.
func eventually(cond func() bool) bool {
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// The checkpoint follows the acknowledgements (written behind the
// publisher) and holds the last acknowledged position when a relay stops,
// so the next relay resumes after it and publishes nothing twice.
func TestRelayResumesAfterItsCheckpoint(t *testing.T) {
	t.Parallel()
	f := MustFixture(t)
	ctx := context.Background()
	producer := relay.NewProducer(f.brokers)
	t.Cleanup(func() { producer.Close() })
	appendN := func(from, n int) eventstore.Position {
		for i := from; i < from+n; i++ {
			if _, err := f.store.Append(ctx, eventstore.Append{Streams: []eventstore.StreamAppend{{StreamID: fmt.Sprintf("order-%d", i%7), Expected: eventstore.Any, Events: []eventstore.EventData{ev(i)}}}}); err != nil {
				t.Fatal(err)
			}
		}
		// The last event, read plainly: every append above has committed.
		// (A tailer's read may stop short of it for a moment: its horizon
		// counts a transaction of another database that ended while it
		// looked, as migration 009 explains.)
		var last eventstore.Position
		if err := f.pool.QueryRow(ctx, "select tx_id, seq from events order by tx_id desc, seq desc limit 1").Scan(&last.TxID, &last.Seq); err != nil {
			t.Fatal(err)
		}
		return last
	}
	checkpoint := func() eventstore.Position {
		var p eventstore.Position
		if err := f.pool.QueryRow(ctx, "select tx_id, seq from relay_checkpoints where name = 'kafka'").Scan(&p.TxID, &p.Seq); err != nil {
			return eventstore.Position{}
		}
		return p
	}
	awaitCheckpoint := func(want eventstore.Position) {
		t.Helper()
		var got eventstore.Position
		if !eventually(func() bool { got = checkpoint(); return got == want }) {
			t.Fatalf("checkpoint %s after a minute; want %s", got, want)
		}
	}
	run := func() (stop func()) {
		br, err := breaker.New(breaker.Config{Name: "kafka-resume", Failures: 3, OpenTimeout: 200 * time.Millisecond}, nil)
		if err != nil {
			t.Fatal(err)
		}
		// The relay's log is shown if the test fails.
		logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
		r, err := relay.New(relay.Config{TopicPrefix: f.prefix, BatchSize: 7, LeaderPoll: 100 * time.Millisecond}, f.pool, f.store, producer, br, logger)
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = r.Run(runCtx) }()
		stop = sync.OnceFunc(func() { cancel(); <-done })
		t.Cleanup(stop) // before the log's writer goes, if the test fails early
		return stop
	}
	collector := kafkatest.MustCollect(t, f.brokers, relay.Topics(f.prefix)...)

	head := appendN(0, 50)
	stop := run()
	awaitCheckpoint(head)
	more := appendN(50, 30)
	// A consumer may see the last message before the relay has its
	// acknowledgement: wait for the checkpoint, then stop.
	awaitCheckpoint(more)
	stop()
	if got := checkpoint(); got != more {
		t.Fatalf("checkpoint after a clean stop = %s; want the last event %s", got, more)
	}

	last := appendN(80, 20)
	run()
	awaitCheckpoint(last)
	msgs := collector.WaitFor(t, time.Minute, func(msgs []kafka.Message) bool { return len(msgs) >= 100 })
	d, err := kafkatest.Verify(msgs)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.IDs) != 100 || d.Duplicates != 0 {
		t.Fatalf("%d events, %d duplicates in Kafka; want 100 and none", len(d.IDs), d.Duplicates)
	}
}
