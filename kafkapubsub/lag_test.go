package kafkapubsub_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow/kafkapubsub"
)

// ConsumerLag counts the messages past a group's committed offsets over
// every partition, from the first message where it committed nothing, and
// gives the time of the oldest of them.
func TestConsumerLag(t *testing.T) {
	t.Parallel()
	brokers := MustBrokers(t)
	topic := MustTopic(t, brokers, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond,
		Balancer: kafka.BalancerFunc(func(m kafka.Message, partitions ...int) int { // key "p0"/"p1": that partition
			return partitions[int(m.Key[1]-'0')]
		})}
	defer w.Close()
	// Partition 0 gets the messages of seconds 3, 1, 2 in that order (the
	// oldest is not the first), partition 1 those of seconds 4 and 5.
	var msgs []kafka.Message
	for _, m := range []struct {
		key string
		s   int
	}{{"p0", 3}, {"p0", 1}, {"p0", 2}, {"p1", 4}, {"p1", 5}} {
		msgs = append(msgs, kafka.Message{Key: []byte(m.key), Value: []byte("v"), Time: at(m.s)})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	group := "kafkapubsub-test-lag-" + watermill.NewShortUUID()
	client := &kafka.Client{Addr: kafka.TCP(brokers...)}
	commit := func(p0, p1 int64) {
		t.Helper()
		res, err := client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1,
			Topics: map[string][]kafka.OffsetCommit{topic: {{Partition: 0, Offset: p0}, {Partition: 1, Offset: p1}}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range res.Topics[topic] {
			if p.Error != nil {
				t.Fatalf("commit partition %d: %v", p.Partition, p.Error)
			}
		}
	}
	want := func(messages int64, oldest time.Time) {
		t.Helper()
		lag, err := kafkapubsub.ConsumerLag(ctx, brokers, group, topic)
		if err != nil {
			t.Fatal(err)
		}
		if lag.Messages != messages || !lag.Oldest.Equal(oldest) {
			t.Fatalf("lag = %d messages, oldest %v; want %d, %v", lag.Messages, lag.Oldest, messages, oldest)
		}
	}
	want(5, at(3))       // nothing committed: every message; the first of each partition: 3 and 4
	commit(1, 0)         // partition 0 past its first message
	want(4, at(1))       // 1, 2 on partition 0; 4, 5 on partition 1
	commit(3, 1)         // partition 0 done
	want(1, at(5))       // 5
	commit(3, 2)         // all done
	want(0, time.Time{}) // caught up
}

// Bad arguments are refused before anything is asked of the broker; a topic
// the broker does not have is an error, not a lag of zero.
func TestConsumerLagRefusesBadArguments(t *testing.T) {
	t.Parallel()
	brokers := MustBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := kafkapubsub.ConsumerLag(ctx, nil, " ", "")
	if err == nil {
		t.Fatal("no brokers, group or topic: no error")
	}
	for _, want := range []string{"broker", "consumer group", "topic"} {
		if !strings.Contains(strings.ToLower(err.Error()), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if _, err := kafkapubsub.ConsumerLag(ctx, brokers, "g", "kafkapubsub-test-missing-"+watermill.NewShortUUID()); err == nil {
		t.Fatal("a missing topic: no error")
	}
}
