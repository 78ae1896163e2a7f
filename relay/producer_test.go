package relay_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/kafkapubsub"
	"github.com/orderflow/orderflow/relay"
)

// The producer writes each message to the partition kafka-go's Writer (with
// the relay's murmur2 balancer) would, each partition in the order given, and
// with key, value, time and headers intact, all topics of a call in one
// request per broker.
func TestBrokerProducerPartitionsLikeTheWriter(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.MustBrokers(t)
	ctx := context.Background()
	ours, theirs := kafkatest.UniquePrefix(t)+"-ours", kafkatest.UniquePrefix(t)+"-writer"
	var specs []kafkapubsub.TopicSpec
	for _, prefix := range []string{ours, theirs} {
		for _, topic := range relay.Topics(prefix) {
			specs = append(specs, kafkapubsub.TopicSpec{Name: topic, Partitions: 5, ReplicationFactor: 1})
		}
	}
	if err := kafkapubsub.EnsureTopics(ctx, brokers, specs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kafkatest.DeleteTopics(context.WithoutCancel(ctx), brokers, ours)
		_ = kafkatest.DeleteTopics(context.WithoutCancel(ctx), brokers, theirs)
	})
	at := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	batch := func(prefix string, from, n int) []kafka.Message {
		categories := []string{"order", "sku", "reservation", "payment", "misc"}
		msgs := make([]kafka.Message, n)
		for i := range msgs {
			k := from + i
			stream := fmt.Sprintf("%s-%d", categories[k%len(categories)], k%37)
			msgs[i] = kafka.Message{
				Topic:   relay.Topic(prefix, relay.ContextOf(stream)),
				Key:     []byte(stream),
				Value:   []byte(fmt.Sprintf(`{"n":%d}`, k)),
				Time:    at.Add(time.Duration(k) * time.Millisecond),
				Headers: []kafka.Header{{Key: "n", Value: []byte(fmt.Sprint(k))}},
			}
		}
		return msgs
	}
	producer := relay.NewProducer(brokers)
	t.Cleanup(func() { producer.Close() })
	writer := relay.NewWriter(brokers, 1000)
	t.Cleanup(func() { writer.Close() })
	const calls, perCall = 5, 200
	for c := range calls {
		if err := producer.WriteMessages(ctx, batch(ours, c*perCall, perCall)...); err != nil {
			t.Fatal(err)
		}
		if err := writer.WriteMessages(ctx, batch(theirs, c*perCall, perCall)...); err != nil {
			t.Fatal(err)
		}
	}
	enough := func(msgs []kafka.Message) bool { return len(msgs) >= calls*perCall }
	got := kafkatest.MustCollect(t, brokers, relay.Topics(ours)...).WaitFor(t, time.Minute, enough)
	want := kafkatest.MustCollect(t, brokers, relay.Topics(theirs)...).WaitFor(t, time.Minute, enough)
	if len(got) != calls*perCall || len(want) != calls*perCall {
		t.Fatalf("%d messages through the producer, %d through the writer; want %d each", len(got), len(want), calls*perCall)
	}
	partitionOf := map[string]int{}
	for _, m := range want {
		partitionOf[string(m.Value)] = m.Partition
	}
	last := map[string]int{} // per topic and partition: the last n seen
	for _, m := range got {
		n := int(kafkatest.HeaderInt(m, "n"))
		if string(m.Value) != fmt.Sprintf(`{"n":%d}`, n) || !m.Time.Equal(at.Add(time.Duration(n)*time.Millisecond)) {
			t.Fatalf("message %d came back as value %s, time %s", n, m.Value, m.Time)
		}
		if p, ok := partitionOf[string(m.Value)]; !ok || p != m.Partition {
			t.Fatalf("message %d (key %s) on partition %d; the writer put it on %d", n, m.Key, m.Partition, p)
		}
		tp := strings.TrimPrefix(m.Topic, ours) + fmt.Sprint("/", m.Partition)
		if prev, ok := last[tp]; ok && n <= prev {
			t.Fatalf("%s: message %d after %d", tp, n, prev)
		}
		last[tp] = n
	}
}

// A batch naming a topic that does not exist is refused whole, before
// anything is written, with an error that names the topic.
func TestBrokerProducerRefusesAnUnknownTopic(t *testing.T) {
	t.Parallel()
	f := MustFixture(t)
	producer := relay.NewProducer(f.brokers)
	t.Cleanup(func() { producer.Close() })
	missing := f.prefix + ".nowhere"
	err := producer.WriteMessages(context.Background(),
		kafka.Message{Topic: relay.Topic(f.prefix, "order"), Key: []byte("order-1"), Value: []byte(`{}`)},
		kafka.Message{Topic: missing, Key: []byte("x"), Value: []byte(`{}`)})
	if !errors.Is(err, kafka.UnknownTopicOrPartition) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("err = %v; want unknown topic %s", err, missing)
	}
	// The valid message was not written either: a marker written after it
	// is the first message of its partition.
	marker := kafka.Message{Topic: relay.Topic(f.prefix, "order"), Key: []byte("order-1"), Value: []byte(`{"marker":true}`)}
	if err := producer.WriteMessages(context.Background(), marker); err != nil {
		t.Fatal(err)
	}
	msgs := kafkatest.MustCollect(t, f.brokers, relay.Topic(f.prefix, "order")).WaitFor(t, time.Minute, func(msgs []kafka.Message) bool { return len(msgs) >= 1 })
	if len(msgs) != 1 || string(msgs[0].Value) != `{"marker":true}` || msgs[0].Offset != 0 {
		t.Fatalf("after the refused batch the topic holds %d messages, first %s at offset %d; want only the marker at 0", len(msgs), msgs[0].Value, msgs[0].Offset)
	}
}
