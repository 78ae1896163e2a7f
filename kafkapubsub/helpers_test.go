package kafkapubsub_test

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow/kafkapubsub"
)

// MustBrokers returns the broker addresses from KAFKA_BROKERS, failing the
// test when it is unset: these tests need a real broker, never a fake.
func MustBrokers(tb testing.TB) []string {
	tb.Helper()
	v := strings.TrimSpace(os.Getenv("KAFKA_BROKERS"))
	if v == "" {
		tb.Fatal("KAFKA_BROKERS is not set: the kafkapubsub tests need a real Kafka broker; " +
			"run `make test` (it starts one with scripts/kafka.sh) or export KAFKA_BROKERS=host:port")
	}
	var brokers []string
	for _, b := range strings.Split(v, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	return brokers
}

// testLogger logs warnings and errors of the code under test to stderr; a
// t.Log based logger would panic on a line logged after the test ended.
func testLogger() watermill.LoggerAdapter {
	return kafkapubsub.NewSlogLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// MustTopic creates a fresh topic with the given partitions and deletes it
// when the test ends.
func MustTopic(tb testing.TB, brokers []string, partitions int) string {
	tb.Helper()
	name := "kafkapubsub-test-" + strings.NewReplacer("/", "-", " ", "-").Replace(tb.Name()) + "-" + watermill.NewShortUUID()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkapubsub.EnsureTopics(ctx, brokers, []kafkapubsub.TopicSpec{{Name: name, Partitions: partitions, ReplicationFactor: 1}}); err != nil {
		tb.Fatalf("create topic %s: %v", name, err)
	}
	tb.Cleanup(func() { deleteTopics(tb, brokers, name) })
	return name
}

// deleteTopics deletes topics, logging (not failing on) what it could not.
func deleteTopics(tb testing.TB, brokers []string, topics ...string) {
	tb.Helper()
	if len(topics) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...)}
	res, err := client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
	if err != nil {
		tb.Logf("delete topics: %v", err)
		return
	}
	for name, err := range res.Errors {
		if err != nil {
			tb.Logf("delete topic %s: %v", name, err)
		}
	}
}

// deleteTopicsWithPrefix deletes every topic whose name starts with prefix.
func deleteTopicsWithPrefix(tb testing.TB, brokers []string, prefix string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...)}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		tb.Logf("list topics: %v", err)
		return
	}
	var names []string
	for _, topic := range md.Topics {
		if strings.HasPrefix(topic.Name, prefix) {
			names = append(names, topic.Name)
		}
	}
	deleteTopics(tb, brokers, names...)
}

// MustPublisher returns a Publisher on brokers, closed when the test ends.
func MustPublisher(tb testing.TB, brokers []string) *kafkapubsub.Publisher {
	tb.Helper()
	pub, err := kafkapubsub.NewPublisher(kafkapubsub.PublisherConfig{Brokers: brokers}, testLogger())
	if err != nil {
		tb.Fatalf("new publisher: %v", err)
	}
	tb.Cleanup(func() {
		if err := pub.Close(); err != nil {
			tb.Errorf("close publisher: %v", err)
		}
	})
	return pub
}

// MustSubscriber returns a Subscriber in group, closed when the test ends.
func MustSubscriber(tb testing.TB, brokers []string, group string) *kafkapubsub.Subscriber {
	tb.Helper()
	return mustSubscriberWith(tb, kafkapubsub.SubscriberConfig{Brokers: brokers, ConsumerGroup: group})
}

// mustSubscriberWith returns a Subscriber for config (a short
// NackResendSleep unless it sets one), closed when the test ends.
func mustSubscriberWith(tb testing.TB, config kafkapubsub.SubscriberConfig) *kafkapubsub.Subscriber {
	tb.Helper()
	if config.NackResendSleep == 0 {
		config.NackResendSleep = 10 * time.Millisecond
	}
	sub, err := kafkapubsub.NewSubscriber(config, testLogger())
	if err != nil {
		tb.Fatalf("new subscriber: %v", err)
	}
	tb.Cleanup(func() {
		if err := sub.Close(); err != nil {
			tb.Errorf("close subscriber: %v", err)
		}
	})
	return sub
}

// committedOffset returns group's committed offset of partition 0 of topic
// as the broker has it (-1 when nothing was committed).
func committedOffset(tb testing.TB, brokers []string, group, topic string) int64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...)}
	res, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0}}})
	if err != nil {
		tb.Fatalf("offset fetch: %v", err)
	}
	if res.Error != nil {
		tb.Fatalf("offset fetch: %v", res.Error)
	}
	for _, p := range res.Topics[topic] {
		if p.Partition == 0 {
			if p.Error != nil {
				tb.Fatalf("offset fetch of %s/0: %v", topic, p.Error)
			}
			return p.CommittedOffset
		}
	}
	tb.Fatalf("offset fetch: no partition 0 of %s in the answer", topic)
	return 0
}
