package projector_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/kafkapubsub"
	"github.com/orderflow/orderflow/projector"
	"github.com/orderflow/orderflow/relay"
)

// errLostCommit fails a message whose transaction committed, as if the
// process had died before its offset was committed: the message comes again.
var errLostCommit = errors.New("test: the offset commit was lost")

// subscription is one consumer of a projection: its watermill handler and
// group.
type subscription struct {
	p projector.Projection
	s projector.Subscription
}

// kafkaRig runs every projection's consumers over the real broker, as the
// projector role does, on topics of their own.
type kafkaRig struct {
	t       *testing.T
	f       fixture
	brokers []string
	prefix  string
	subs    []subscription
	// lost counts the messages failed with errLostCommit; each handler's
	// message is failed so at most once.
	lost   atomic.Int64
	failed sync.Map
}

func newKafkaRig(t *testing.T, f fixture) *kafkaRig {
	t.Helper()
	r := &kafkaRig{t: t, f: f, brokers: kafkatest.MustBrokers(t), prefix: kafkatest.UniquePrefix(t)}
	specs := []kafkapubsub.TopicSpec{{Name: r.prefix + ".deadletter", Partitions: 1}}
	for _, topic := range relay.Topics(r.prefix) {
		specs = append(specs, kafkapubsub.TopicSpec{Name: topic, Partitions: 2})
	}
	if err := kafkapubsub.EnsureTopics(context.Background(), r.brokers, specs); err != nil {
		t.Fatal(err)
	}
	for _, p := range projector.All() {
		for _, s := range projector.Subscriptions(p, r.prefix) {
			r.subs = append(r.subs, subscription{p: p, s: s})
		}
	}
	return r
}

// publish writes events to their topics as the relay would, except that
// some are written twice (the second time later on, as a relay's retried
// batch does) and some are dropped, never a stream's last: a later version
// reveals it and the projection reads it from the event store.
func (r *kafkaRig) publish(rng *rand.Rand, events []eventstore.Event) (duplicated, dropped int) {
	r.t.Helper()
	last := map[string]int64{}
	for _, e := range events {
		last[e.StreamID] = max(last[e.StreamID], e.Version)
	}
	type placed struct {
		at float64
		m  kafka.Message
	}
	var out []placed
	for i, e := range events {
		if e.Version < last[e.StreamID] && rng.IntN(10) == 0 {
			dropped++
			continue
		}
		m := relay.Message(e, "test", r.prefix)
		out = append(out, placed{at: float64(i), m: m})
		if rng.IntN(5) == 0 {
			duplicated++
			out = append(out, placed{at: float64(i) + 1 + rng.Float64()*float64(len(events)-i), m: m})
		}
	}
	slices.SortStableFunc(out, func(a, b placed) int { return cmp.Compare(a.at, b.at) })
	msgs := make([]kafka.Message, len(out))
	for i, p := range out {
		msgs[i] = p.m
	}
	w := relay.NewWriter(r.brokers, len(msgs))
	defer w.Close()
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		r.t.Fatal(err)
	}
	return duplicated, dropped
}

// consume runs the consumers until every group has committed the end of its
// topic, then stops them. One message in seven per handler fails once after
// its transaction committed (errLostCommit).
func (r *kafkaRig) consume() {
	t := r.t
	t.Helper()
	wlog := kafkapubsub.NewSlogLogger(slog.New(slog.DiscardHandler))
	pub, err := kafkapubsub.NewPublisher(kafkapubsub.PublisherConfig{Brokers: r.brokers}, wlog)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	router, err := kafkapubsub.NewRouter(kafkapubsub.RouterConfig{DeadLetterTopic: r.prefix + ".deadletter",
		InitialInterval: time.Millisecond, MaxInterval: 10 * time.Millisecond,
		Poison: func(err error) bool { return errors.Is(err, projector.ErrMalformed) }}, pub, wlog)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range r.subs {
		sub, err := kafkapubsub.NewSubscriber(kafkapubsub.SubscriberConfig{Brokers: r.brokers, ConsumerGroup: s.s.ConsumerGroup,
			CommitInterval: 100 * time.Millisecond, MaxInFlight: 16, Unordered: true, NackResendSleep: time.Millisecond}, wlog)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		handle := r.f.engine.Handler(s.p)
		router.AddNoPublisherHandler(s.s.Handler, s.s.Topic, sub, func(msg *message.Message) error {
			if err := handle(msg); err != nil {
				return err
			}
			key := s.s.Handler + "/" + msg.Metadata[relay.HeaderID]
			h := fnv.New32a()
			h.Write([]byte(key))
			if h.Sum32()%7 == 0 {
				if _, again := r.failed.LoadOrStore(key, true); !again {
					r.lost.Add(1)
					return errLostCommit
				}
			}
			return nil
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("router: %v", err)
		}
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for !r.caughtUp() {
		if time.Now().After(deadline) {
			t.Fatal("the consumers did not commit the end of their topics in 2 minutes")
		}
		select {
		case err := <-done:
			t.Fatalf("router stopped: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// lag returns how many messages the groups have not committed, summed.
func (r *kafkaRig) lag() int64 {
	r.t.Helper()
	var n int64
	for _, s := range r.subs {
		l, err := kafkapubsub.ConsumerLag(context.Background(), r.brokers, s.s.ConsumerGroup, s.s.Topic)
		if err != nil {
			r.t.Fatal(err)
		}
		n += l.Messages
	}
	return n
}

func (r *kafkaRig) caughtUp() bool { return r.lag() == 0 }

// rewind commits every group's offsets back to a random point at or before
// where they stand (the end: the groups are caught up), as a crash that
// lost the offset commits of everything after it would leave them.
func (r *kafkaRig) rewind(rng *rand.Rand) {
	t := r.t
	t.Helper()
	ctx := context.Background()
	client := &kafka.Client{Addr: kafka.TCP(r.brokers...), Timeout: 10 * time.Second}
	for _, s := range r.subs {
		ends, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
			s.s.Topic: {kafka.LastOffsetOf(0), kafka.LastOffsetOf(1)}}})
		if err != nil {
			t.Fatal(err)
		}
		var commits []kafka.OffsetCommit
		for _, po := range ends.Topics[s.s.Topic] {
			if po.Error != nil {
				t.Fatal(po.Error)
			}
			commits = append(commits, kafka.OffsetCommit{Partition: po.Partition, Offset: rng.Int64N(po.LastOffset + 1)})
		}
		// A commit outside the group is refused while the stopped
		// consumers' members are still in it (they leave as they close).
		for until := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
			res, err := client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: s.s.ConsumerGroup, GenerationID: -1,
				Topics: map[string][]kafka.OffsetCommit{s.s.Topic: commits}})
			if err != nil {
				t.Fatal(err)
			}
			var failed error
			for _, p := range res.Topics[s.s.Topic] {
				failed = cmp.Or(failed, p.Error)
			}
			if failed == nil {
				break
			}
			if !errors.Is(failed, kafka.UnknownMemberId) && !errors.Is(failed, kafka.RebalanceInProgress) || time.Now().After(until) {
				t.Fatalf("rewind %s: %v", s.s.ConsumerGroup, failed)
			}
		}
	}
}

// Through the real broker and consumer groups, as the projector role runs
// them: every event published once, some twice (a relay's retried batch)
// and some not at all (a later version reveals them); some messages failed
// after their transaction committed, as when the offset commit is lost, and
// delivered again; then the consumers stopped and every group's offsets
// rewound to a random earlier point (a crash that lost its offset commits)
// while the history carried on. Each time the views equal the pure fold,
// and a full rebuild equals them, row for row.
func TestLiveThroughKafkaEqualsRebuildEqualsFold(t *testing.T) {
	t.Parallel()
	f := MustFixture(t)
	rng := rand.New(rand.NewPCG(11, 42))
	rig := newKafkaRig(t, f)
	log := f.randomHistory(t, rng, 80)
	dup, drop := rig.publish(rng, log)
	rig.consume()
	model := decodeAll(t, log)
	for _, p := range projector.All() {
		sameRows(t, p.Name()+": live through Kafka vs pure fold", snapshot(t, f, p), p.Model(model))
	}

	rig.rewind(rng)
	rewound := rig.lag()
	f.continueHistory(t, rng, log)
	all := f.readLog(t)
	dup2, drop2 := rig.publish(rng, all[len(log):])
	rig.consume()
	model = decodeAll(t, all)
	ctx := context.Background()
	for _, p := range projector.All() {
		live := snapshot(t, f, p)
		sameRows(t, p.Name()+": live through Kafka after a rewind vs pure fold", live, p.Model(model))
		if err := f.engine.Rebuild(ctx, p, f.store, nil); err != nil {
			t.Fatal(err)
		}
		sameRows(t, p.Name()+": rebuild vs live", snapshot(t, f, p), live)
	}
	t.Logf("%d events: %d published twice, %d dropped; %d offset commits lost; %d messages redelivered by the rewind",
		len(all), dup+dup2, drop+drop2, rig.lost.Load(), rewound)
	if dup+dup2 == 0 || drop+drop2 == 0 || rig.lost.Load() == 0 || rewound == 0 {
		t.Fatal("the run duplicated, dropped, lost or rewound nothing: it proves less than it says")
	}
}

// Through the real broker and consumer groups: an event this build cannot
// decode parks its stream in every projection that follows it, while the
// events of every other stream (behind it in the same partition too) are
// applied and every group commits the end of its topic; a message that is
// not an orderflow event at all goes to the dead-letter topic instead of
// holding its partition.
func TestPoisonThroughKafkaParksItsStreamOnly(t *testing.T) {
	t.Parallel()
	f := MustFixture(t)
	rig := newKafkaRig(t, f)
	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	bad := orderflow.NewOrderID()
	place := func(id orderflow.OrderID) {
		f.appendEvent(t, id.Stream(), orderflow.OrderPlaced{OrderID: id, CustomerID: "c", Lines: []orderflow.OrderLine{{SKU: "A", Quantity: 1, UnitPriceCents: 5}}, TotalCents: 5, PlacedAt: at})
	}
	place(bad)
	f.appendUndecodable(t, bad.Stream())
	var good []orderflow.OrderID
	for range 20 {
		id := orderflow.NewOrderID()
		place(id)
		f.appendEvent(t, id.Stream(), orderflow.OrderCancelled{OrderID: id, Reason: "r", CancelledAt: at})
		good = append(good, id)
	}
	log := f.readLog(t)
	msgs := make([]kafka.Message, 0, len(log)+1)
	for _, e := range log {
		msgs = append(msgs, relay.Message(e, "test", rig.prefix))
	}
	junk := kafka.Message{Topic: relay.Topic(rig.prefix, relay.ContextOrder), Key: []byte("junk"), Value: []byte("not an event")}
	msgs = append(msgs, junk)
	w := relay.NewWriter(rig.brokers, len(msgs))
	defer w.Close()
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	dead := kafkatest.MustCollect(t, rig.brokers, rig.prefix+".deadletter")
	rig.consume() // returns once every group committed the end of its topic

	ctx := context.Background()
	for _, p := range projector.All() {
		st, err := f.engine.Status(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		var parked []string
		for _, k := range st.Parked {
			parked = append(parked, fmt.Sprintf("%s@%d", k.StreamID, k.Version))
		}
		want := []string{}
		if projector.Wants(p, bad.Stream()) {
			want = []string{bad.Stream() + "@2"} // at the bad event, whatever order the events came in
		}
		if !slices.Equal(parked, want) {
			t.Fatalf("%s parked %v, want %v", p.Name(), parked, want)
		}
	}
	for _, id := range good {
		v, err := projector.LoadOrder(ctx, f.pool, projector.Live, id)
		if err != nil || v == nil || v.Status != projector.StatusCancelled {
			t.Fatalf("order %s = %+v, %v; want cancelled", id, v, err)
		}
	}
	if v, err := projector.LoadOrder(ctx, f.pool, projector.Live, bad); err != nil || v == nil || v.Status != projector.StatusPending {
		t.Fatalf("the parked order = %+v, %v; want pending, as before its bad event", v, err)
	}
	// One dead letter per handler of the order topic.
	handlers := 0
	for _, s := range rig.subs {
		if s.s.Topic == junk.Topic {
			handlers++
		}
	}
	// Every dead letter was published before consume returned (a message
	// is acknowledged after its dead letter): read up to the topic's end.
	client := &kafka.Client{Addr: kafka.TCP(rig.brokers...), Timeout: 10 * time.Second}
	ends, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		rig.prefix + ".deadletter": {kafka.LastOffsetOf(0)}}})
	if err != nil {
		t.Fatal(err)
	}
	published := int(ends.Topics[rig.prefix+".deadletter"][0].LastOffset)
	got := dead.WaitFor(t, time.Minute, func(ms []kafka.Message) bool { return len(ms) >= published })
	for _, m := range got {
		if string(m.Value) != "not an event" {
			t.Fatalf("dead letter %q, want the junk message", m.Value)
		}
	}
	if len(got) != handlers {
		t.Fatalf("%d dead letters, want %d (one per handler of the order topic)", len(got), handlers)
	}
}
