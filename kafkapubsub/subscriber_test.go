package kafkapubsub_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow/kafkapubsub"
)

// mustReceive returns the next message of ch, failing the test after timeout
// or when ch is closed.
func mustReceive(tb testing.TB, ch <-chan *message.Message, timeout time.Duration) *message.Message {
	tb.Helper()
	select {
	case msg, ok := <-ch:
		if !ok {
			tb.Fatal("messages channel closed unexpectedly")
		}
		return msg
	case <-time.After(timeout):
		tb.Fatalf("no message within %s", timeout)
		return nil
	}
}

// waitFor polls cond every 20ms until it holds, failing the test after timeout.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSubscriberNeverCommitsPastUnacked checks the group's committed offset,
// as the broker reports it, at every step: kafka-go has already fetched the
// messages after a nacked one, yet nothing past it is committed, and a second
// member of the group resumes exactly at the first unacked message.
func TestSubscriberNeverCommitsPastUnacked(t *testing.T) {
	t.Parallel()
	brokers := MustBrokers(t)
	topic := MustTopic(t, brokers, 1)
	group := "kafkapubsub-test-nocommit-" + watermill.NewShortUUID()
	const wait = 30 * time.Second

	var published []*message.Message
	for i := range 5 {
		published = append(published, message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, "m%d", i)))
	}
	if err := MustPublisher(t, brokers).Publish(topic, published...); err != nil {
		t.Fatalf("publish: %v", err)
	}
	expect := func(msg *message.Message, i int) {
		t.Helper()
		if msg.UUID != published[i].UUID || string(msg.Payload) != string(published[i].Payload) {
			t.Fatalf("got message %s %q, want message %d (%s %q)", msg.UUID, msg.Payload, i, published[i].UUID, published[i].Payload)
		}
	}
	expectCommitted := func(want int64) {
		t.Helper()
		if got := committedOffset(t, brokers, group, topic); got != want {
			t.Fatalf("committed offset = %d, want %d", got, want)
		}
	}

	// First member: acks m0 and m1, nacks m2 twice, acks it, holds m3 unacked.
	first := MustSubscriber(t, brokers, group)
	msgs, err := first.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	for i := range 2 {
		msg := mustReceive(t, msgs, wait)
		expect(msg, i)
		msg.Ack()
	}

	// A message is sent only after the previous ack was committed, so the
	// committed offset is exact (not eventually right) whenever one arrives.
	var previous *message.Message
	for attempt := range 3 {
		msg := mustReceive(t, msgs, wait)
		expect(msg, 2)
		expectCommitted(2)
		if msg == previous {
			t.Fatal("a redelivery reused the nacked *message.Message; want a fresh copy")
		}
		previous = msg
		if attempt < 2 {
			msg.Nack()
		} else {
			msg.Ack()
		}
	}
	held := mustReceive(t, msgs, wait)
	expect(held, 3)
	expectCommitted(3)

	// Closing with m3 unacked must not commit it.
	if err := first.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, open := <-msgs; open {
		t.Fatal("messages channel still open after Close")
	}
	if held.Context().Err() == nil {
		t.Fatal("the unacked message's context is still live after Close")
	}
	expectCommitted(3)

	// Second member of the same group starts at m3, the first unacked message.
	second := MustSubscriber(t, brokers, group)
	msgs, err = second.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	for i := 3; i < 5; i++ {
		msg := mustReceive(t, msgs, wait)
		expect(msg, i)
		msg.Ack()
	}
	waitFor(t, wait, "offset 5 to be committed", func() bool {
		return committedOffset(t, brokers, group, topic) == 5
	})
}

// TestSubscriberInFlight runs a subscription with MaxInFlight 3 over one
// partition holding keys a b a c d: messages of different keys are out at
// once, the second "a" waits for the first one's ack, and the committed
// offset never passes an unacked message however the acks are ordered.
func TestSubscriberInFlight(t *testing.T) {
	t.Parallel()
	brokers := MustBrokers(t)
	topic := MustTopic(t, brokers, 1)
	group := "kafkapubsub-test-inflight-" + watermill.NewShortUUID()
	const wait = 30 * time.Second

	keys := []string{"a", "b", "a", "c", "d"}
	var published []*message.Message
	for i, k := range keys {
		m := message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, "m%d", i))
		m.Metadata.Set(kafkapubsub.PartitionKeyMetadataKey, k)
		published = append(published, m)
	}
	if err := MustPublisher(t, brokers).Publish(topic, published...); err != nil {
		t.Fatalf("publish: %v", err)
	}
	sub := mustSubscriberWith(t, kafkapubsub.SubscriberConfig{Brokers: brokers, ConsumerGroup: group, MaxInFlight: 3})
	msgs, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	index := func(msg *message.Message) int {
		for i, p := range published {
			if p.UUID == msg.UUID {
				return i
			}
		}
		t.Fatalf("received a message that was not published: %s", msg.UUID)
		return -1
	}
	held := map[int]*message.Message{}
	receive := func(want int) {
		t.Helper()
		msg := mustReceive(t, msgs, wait)
		if got := index(msg); got != want {
			t.Fatalf("received m%d, want m%d", got, want)
		}
		held[want] = msg
	}
	receiveSet := func(want ...int) {
		t.Helper()
		for range want {
			msg := mustReceive(t, msgs, wait)
			held[index(msg)] = msg
		}
		for _, i := range want {
			if held[i] == nil {
				t.Fatalf("received %d messages without m%d", len(want), i)
			}
		}
	}
	expectNothing := func(what string) {
		t.Helper()
		select {
		case msg := <-msgs:
			t.Fatalf("%s: received m%d", what, index(msg))
		case <-time.After(200 * time.Millisecond):
		}
	}
	expectCommitted := func(want int64) {
		t.Helper()
		waitFor(t, wait, fmt.Sprintf("committed offset %d", want), func() bool {
			return committedOffset(t, brokers, group, topic) == want
		})
	}

	// Three slots: m0 (a) and m1 (b) go out; m2 (a) holds the third slot
	// waiting for m0, so m3 is not fetched yet.
	receiveSet(0, 1)
	expectNothing("m2 must wait for m0, and no slot is free for m3")
	held[1].Ack() // frees a slot: m3 (c) goes out
	receive(3)
	held[3].Ack() // frees another: m4 (d) goes out
	receive(4)
	if got := committedOffset(t, brokers, group, topic); got != -1 {
		t.Fatalf("committed offset = %d while m0 is unacked, want nothing committed", got)
	}
	held[0].Ack() // m2 (a) may go now; m0, m1 are acked, m2 is not: commit through m1
	receive(2)
	expectCommitted(2)
	held[4].Ack()
	expectNothing("everything was delivered")
	if got := committedOffset(t, brokers, group, topic); got != 2 {
		t.Fatalf("committed offset = %d with m2 unacked, want 2", got)
	}
	held[2].Ack()
	expectCommitted(5)
}

// Skipped messages never reach the handler, and the committed offset
// passes them once everything before them is acked.
func TestSubscriberSkips(t *testing.T) {
	t.Parallel()
	brokers := MustBrokers(t)
	topic := MustTopic(t, brokers, 1)
	group := "kafkapubsub-test-skip-" + watermill.NewShortUUID()
	bodies := []string{"keep-0", "skip-1", "skip-2", "keep-3", "skip-4", "keep-5", "skip-6"}
	var published []*message.Message
	for _, b := range bodies {
		m := message.NewMessage(watermill.NewUUID(), []byte(b))
		m.Metadata.Set(kafkapubsub.PartitionKeyMetadataKey, "k")
		published = append(published, m)
	}
	if err := MustPublisher(t, brokers).Publish(topic, published...); err != nil {
		t.Fatalf("publish: %v", err)
	}
	sub := mustSubscriberWith(t, kafkapubsub.SubscriberConfig{Brokers: brokers, ConsumerGroup: group, MaxInFlight: 2,
		Skip: func(km kafka.Message) bool { return strings.HasPrefix(string(km.Value), "skip") }})
	msgs, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	for _, want := range []string{"keep-0", "keep-3", "keep-5"} {
		msg := mustReceive(t, msgs, 30*time.Second)
		if string(msg.Payload) != want {
			t.Fatalf("received %q, want %q", msg.Payload, want)
		}
		msg.Ack()
	}
	waitFor(t, 30*time.Second, "committed offset 7", func() bool {
		return committedOffset(t, brokers, group, topic) == 7
	})
}

// TestSubscribeBeforeTopicExists subscribes to a topic that is created only
// afterwards: a kafka-go group reader started on a missing topic would be
// assigned nothing and stay idle, so the Subscriber must wait for the topic.
func TestSubscribeBeforeTopicExists(t *testing.T) {
	t.Parallel()
	brokers := MustBrokers(t)
	topic := "kafkapubsub-test-late-" + watermill.NewShortUUID()
	t.Cleanup(func() { deleteTopics(t, brokers, topic) })

	msgs, err := MustSubscriber(t, brokers, "kafkapubsub-test-late-"+watermill.NewShortUUID()).Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	select {
	case msg := <-msgs:
		t.Fatalf("got %v before the topic existed", msg)
	case <-time.After(300 * time.Millisecond): // long enough for the lookups to find nothing
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkapubsub.EnsureTopics(ctx, brokers, []kafkapubsub.TopicSpec{{Name: topic, Partitions: 1, ReplicationFactor: 1}}); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	want := message.NewMessage(watermill.NewUUID(), []byte("late"))
	if err := MustPublisher(t, brokers).Publish(topic, want); err != nil {
		t.Fatalf("publish: %v", err)
	}
	got := mustReceive(t, msgs, 30*time.Second)
	got.Ack()
	if got.UUID != want.UUID {
		t.Fatalf("got message %s, want %s", got.UUID, want.UUID)
	}
}

// TestEnsureTopicsIsIdempotent creates the same topics twice.
func TestEnsureTopicsIsIdempotent(t *testing.T) {
	t.Parallel()
	brokers := MustBrokers(t)
	specs := []kafkapubsub.TopicSpec{
		{Name: "kafkapubsub-test-ensure-a-" + watermill.NewShortUUID(), Partitions: 3, ReplicationFactor: 1},
		{Name: "kafkapubsub-test-ensure-b-" + watermill.NewShortUUID()}, // broker defaults
	}
	t.Cleanup(func() { deleteTopics(t, brokers, specs[0].Name, specs[1].Name) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 2 {
		if err := kafkapubsub.EnsureTopics(ctx, brokers, specs); err != nil {
			t.Fatalf("ensure topics: %v", err)
		}
	}
	if err := kafkapubsub.EnsureTopics(ctx, brokers, []kafkapubsub.TopicSpec{{Name: ""}}); err == nil {
		t.Error("EnsureTopics accepted a topic without a name")
	}
}

func TestSubscribeAfterCloseFails(t *testing.T) {
	t.Parallel()
	sub, err := kafkapubsub.NewSubscriber(kafkapubsub.SubscriberConfig{Brokers: MustBrokers(t), ConsumerGroup: "g"}, nil)
	if err != nil {
		t.Fatalf("new subscriber: %v", err)
	}
	if err := sub.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := sub.Subscribe(context.Background(), "any"); !errors.Is(err, kafkapubsub.ErrSubscriberClosed) {
		t.Fatalf("Subscribe after Close = %v, want ErrSubscriberClosed", err)
	}
	if err := sub.SubscribeInitialize("any"); !errors.Is(err, kafkapubsub.ErrSubscriberClosed) {
		t.Fatalf("SubscribeInitialize after Close = %v, want ErrSubscriberClosed", err)
	}
}
