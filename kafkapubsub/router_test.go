package kafkapubsub_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow/kafkapubsub"
)

// nopPublisher is a Publisher that drops everything.
type nopPublisher struct{}

var _ message.Publisher = nopPublisher{}

func (nopPublisher) Publish(string, ...*message.Message) error { return nil }
func (nopPublisher) Close() error                              { return nil }

// TestRouter runs NewRouter's middleware against the real broker, one
// handler (and consumer group) per case, as consumers run in production.
func TestRouter(t *testing.T) {
	t.Parallel()
	brokers := MustBrokers(t)
	pub := MustPublisher(t, brokers)
	deadLetter := MustTopic(t, brokers, 1)
	const maxRetries = 3
	const wait = 30 * time.Second

	router, err := kafkapubsub.NewRouter(kafkapubsub.RouterConfig{
		DeadLetterTopic: deadLetter,
		MaxRetries:      maxRetries,
		InitialInterval: 5 * time.Millisecond,
		MaxInterval:     20 * time.Millisecond,
	}, pub, testLogger())
	if err != nil {
		t.Fatalf("new router: %v", err)
	}
	suffix := "-" + watermill.NewShortUUID()

	// A handler that always fails.
	failingTopic := MustTopic(t, brokers, 1)
	failingGroup := "kafkapubsub-test-failing" + suffix
	var failingAttempts atomic.Int32
	router.AddConsumerHandler(failingGroup, failingTopic, MustSubscriber(t, brokers, failingGroup), func(*message.Message) error {
		failingAttempts.Add(1)
		return errors.New("stock service says no")
	})

	// A handler that panics on its first attempt and succeeds on the second.
	panickyTopic := MustTopic(t, brokers, 1)
	panickyGroup := "kafkapubsub-test-panicky" + suffix
	var panickyAttempts, panickySuccesses atomic.Int32
	var panickySeen [2]atomic.Pointer[message.Message]
	router.AddConsumerHandler(panickyGroup, panickyTopic, MustSubscriber(t, brokers, panickyGroup), func(msg *message.Message) error {
		n := panickyAttempts.Add(1)
		if n <= 2 {
			panickySeen[n-1].Store(msg)
		}
		if n == 1 {
			panic("first attempt panics")
		}
		panickySuccesses.Add(1)
		return nil
	})

	// A handler that produces a message of its own, without a correlation id.
	inTopic, outTopic := MustTopic(t, brokers, 1), MustTopic(t, brokers, 1)
	producerGroup := "kafkapubsub-test-producer" + suffix
	router.AddHandler(producerGroup, inTopic, MustSubscriber(t, brokers, producerGroup), outTopic, pub,
		func(msg *message.Message) ([]*message.Message, error) {
			return []*message.Message{message.NewMessage(watermill.NewUUID(), []byte("derived"))}, nil
		})

	mustRun(t, router)

	t.Run("always failing message goes to the dead-letter topic after MaxRetries+1 attempts", func(t *testing.T) {
		poison := message.NewMessage(watermill.NewUUID(), []byte(`{"sku":"ABC-1"}`))
		poison.Metadata.Set("stream_id", "sku-ABC-1")
		if err := pub.Publish(failingTopic, poison); err != nil {
			t.Fatalf("publish: %v", err)
		}

		dead := mustSubscribe(t, brokers, deadLetter)
		got := mustReceive(t, dead, wait)
		got.Ack()
		if got.UUID != poison.UUID || string(got.Payload) != string(poison.Payload) {
			t.Fatalf("dead letter = %s %q, want %s %q", got.UUID, got.Payload, poison.UUID, poison.Payload)
		}
		if reason := got.Metadata.Get(middleware.ReasonForPoisonedKey); !strings.Contains(reason, "stock service says no") {
			t.Errorf("reason = %q, want the handler's error", reason)
		}
		if topic := got.Metadata.Get(middleware.PoisonedTopicKey); topic != failingTopic {
			t.Errorf("poisoned topic = %q, want %q", topic, failingTopic)
		}
		if id := got.Metadata.Get("stream_id"); id != "sku-ABC-1" {
			t.Errorf("original metadata stream_id = %q, want it kept", id)
		}

		// Poisoning acks the message: once its offset is committed the
		// handler has seen its last attempt.
		waitFor(t, wait, "the poisoned message to be committed", func() bool {
			return committedOffset(t, brokers, failingGroup, failingTopic) == 1
		})
		if n := failingAttempts.Load(); n != maxRetries+1 {
			t.Errorf("handler ran %d times, want MaxRetries+1 = %d", n, maxRetries+1)
		}
	})

	t.Run("panic is recovered and retried, then the message is processed once", func(t *testing.T) {
		if err := pub.Publish(panickyTopic, message.NewMessage(watermill.NewUUID(), []byte("x"))); err != nil {
			t.Fatalf("publish: %v", err)
		}
		waitFor(t, wait, "the message to be committed", func() bool {
			return committedOffset(t, brokers, panickyGroup, panickyTopic) == 1
		})
		if n := panickyAttempts.Load(); n != 2 {
			t.Errorf("handler ran %d times, want 2 (a panic, then a success)", n)
		}
		if n := panickySuccesses.Load(); n != 1 {
			t.Errorf("handler succeeded %d times, want 1", n)
		}
		// The retry middleware hands the same *Message to every attempt; a
		// redelivery by the subscriber would be a fresh copy. The same one
		// twice shows the recoverer is inside the retry.
		if first, second := panickySeen[0].Load(), panickySeen[1].Load(); first == nil || first != second {
			t.Errorf("the panic was not retried within one delivery (attempts saw %p and %p)", first, second)
		}
		// The poison queue publishes before the ack that the commit
		// follows, so by now a poisoned message would be there.
		if n := endOffset(t, brokers, deadLetter); n > 1 {
			t.Errorf("dead-letter topic has %d messages, want only the failing case's", n)
		}
	})

	t.Run("correlation id propagates to produced messages", func(t *testing.T) {
		in := message.NewMessage(watermill.NewUUID(), []byte("x"))
		correlationID := "corr-" + watermill.NewUUID()
		middleware.SetCorrelationID(correlationID, in)
		if err := pub.Publish(inTopic, in); err != nil {
			t.Fatalf("publish: %v", err)
		}
		out := mustReceive(t, mustSubscribe(t, brokers, outTopic), wait)
		out.Ack()
		if string(out.Payload) != "derived" {
			t.Fatalf("produced payload = %q, want %q", out.Payload, "derived")
		}
		if got := middleware.MessageCorrelationID(out); got != correlationID {
			t.Errorf("produced correlation id = %q, want %q", got, correlationID)
		}
	})
}

// mustRun runs router until the test ends and waits until it is running.
func mustRun(tb testing.TB, router *message.Router) {
	tb.Helper()
	done := make(chan error, 1)
	go func() { done <- router.Run(context.Background()) }()
	tb.Cleanup(func() {
		if err := router.Close(); err != nil {
			tb.Errorf("close router: %v", err)
		}
		if err := <-done; err != nil {
			tb.Errorf("router run: %v", err)
		}
	})
	select {
	case <-router.Running():
	case err := <-done:
		tb.Fatalf("router stopped at start: %v", err)
	case <-time.After(30 * time.Second):
		tb.Fatal("router not running after 30s")
	}
}

// mustSubscribe subscribes a fresh consumer group to topic.
func mustSubscribe(tb testing.TB, brokers []string, topic string) <-chan *message.Message {
	tb.Helper()
	sub := MustSubscriber(tb, brokers, "kafkapubsub-test-reader-"+watermill.NewShortUUID())
	msgs, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		tb.Fatalf("subscribe to %s: %v", topic, err)
	}
	return msgs
}

// endOffset returns the end offset of partition 0 of topic.
func endOffset(tb testing.TB, brokers []string, topic string) int64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...)}
	res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: {kafka.LastOffsetOf(0)}}})
	if err != nil {
		tb.Fatalf("list offsets: %v", err)
	}
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			tb.Fatalf("list offsets of %s: %v", topic, p.Error)
		}
		return p.LastOffset
	}
	tb.Fatalf("list offsets: no partition of %s in the answer", topic)
	return 0
}
