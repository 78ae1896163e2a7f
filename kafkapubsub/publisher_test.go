package kafkapubsub_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow/kafkapubsub"
)

// murmur2 is a line-by-line port of Java's
// org.apache.kafka.common.utils.Utils.murmur2, kept here as the reference
// the publisher is checked against.
func murmur2(data []byte) int32 {
	const (
		seed = int32(-1756908916) // 0x9747b28c
		m    = int32(0x5bd1e995)
		r    = 24
	)
	length := len(data)
	h := seed ^ int32(length)
	for i := 0; i < length/4; i++ {
		i4 := i * 4
		k := int32(data[i4]) | int32(data[i4+1])<<8 | int32(data[i4+2])<<16 | int32(data[i4+3])<<24
		k *= m
		k ^= int32(uint32(k) >> r)
		k *= m
		h *= m
		h ^= k
	}
	switch length % 4 {
	case 3:
		h ^= int32(data[(length&^3)+2]) << 16
		fallthrough
	case 2:
		h ^= int32(data[(length&^3)+1]) << 8
		fallthrough
	case 1:
		h ^= int32(data[length&^3])
		h *= m
	}
	h ^= int32(uint32(h) >> 13)
	h *= m
	h ^= int32(uint32(h) >> 15)
	return h
}

// javaPartition is Java's default partition of a keyed record.
func javaPartition(key string, partitions int) int {
	return int(murmur2([]byte(key))&0x7fffffff) % partitions
}

// TestMurmur2Reference checks the reference port against Kafka's own test
// vectors (UtilsTest.testMurmur2) and partitions computed with the Java
// client (kafka-clients 4.4.0, Utils.toPositive(Utils.murmur2(key)) % 8).
func TestMurmur2Reference(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key        string
		murmur2    int32
		partition8 int
	}{
		{"21", -973932308, 4},
		{"foobar", -790332482, 6},
		{"a-little-bit-long-string", -985981536, 0},
		{"a-little-bit-longer-string", -1486304829, 3},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971, 5},
		{"abc", 479470107, 3},
		{"order-0b6a1d0e-3f5c-4a47-9a43-2d7f1e8e2c11", -708576970, 6},
		{"sku-ABC-123", -439731002, 6},
		{"reservation-5f0d9c2a-7d8e-4b1a-9b7e-1c2d3e4f5a6b", 1733775215, 7},
		{"payment-5f0d9c2a-7d8e-4b1a-9b7e-1c2d3e4f5a6b", -1677037999, 1},
	}
	for _, tt := range tests {
		if got := murmur2([]byte(tt.key)); got != tt.murmur2 {
			t.Errorf("murmur2(%q) = %d, want %d", tt.key, got, tt.murmur2)
		}
		if got := javaPartition(tt.key, 8); got != tt.partition8 {
			t.Errorf("partition of %q among 8 = %d, want %d", tt.key, got, tt.partition8)
		}
	}
}

// TestPublisherPartitionsLikeJava publishes to a real 8-partition topic and
// checks that every message landed where a Java producer would put it: keyed
// by the partition_key metadata, or by the UUID when there is none.
func TestPublisherPartitionsLikeJava(t *testing.T) {
	t.Parallel()
	const partitions = 8
	brokers := MustBrokers(t)
	topic := MustTopic(t, brokers, partitions)

	keys := []string{
		"21", "foobar", "a-little-bit-long-string", "a-little-bit-longer-string",
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", "abc",
		"order-0b6a1d0e-3f5c-4a47-9a43-2d7f1e8e2c11", "sku-ABC-123",
		"reservation-5f0d9c2a-7d8e-4b1a-9b7e-1c2d3e4f5a6b", "payment-5f0d9c2a-7d8e-4b1a-9b7e-1c2d3e4f5a6b",
	}
	want := map[string]int{} // message UUID -> partition
	var msgs []*message.Message
	for _, key := range keys {
		msg := message.NewMessage(watermill.NewUUID(), []byte(key))
		msg.Metadata.Set(kafkapubsub.PartitionKeyMetadataKey, key)
		msgs = append(msgs, msg)
		want[msg.UUID] = javaPartition(key, partitions)
	}
	for _, uuid := range []string{"foobar", "21", watermill.NewUUID()} {
		msgs = append(msgs, message.NewMessage(uuid, nil)) // keyed by UUID
		want[uuid] = javaPartition(uuid, partitions)
	}
	if err := MustPublisher(t, brokers).Publish(topic, msgs...); err != nil {
		t.Fatalf("publish: %v", err)
	}

	got := readPartitions(t, brokers, topic, partitions)
	if len(got) != len(want) {
		t.Fatalf("read %d messages back, want %d", len(got), len(want))
	}
	for uuid, p := range want {
		if got[uuid] != p {
			t.Errorf("message %s is in partition %d, want %d", uuid, got[uuid], p)
		}
	}
}

// readPartitions reads every message of topic and returns the partition of
// each by its UUID header.
func readPartitions(tb testing.TB, brokers []string, topic string, partitions int) map[string]int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	client := &kafka.Client{Addr: kafka.TCP(brokers...)}
	var reqs []kafka.OffsetRequest
	for p := range partitions {
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	offsets, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		tb.Fatalf("list offsets: %v", err)
	}

	got := map[string]int{}
	for _, po := range offsets.Topics[topic] {
		if po.Error != nil {
			tb.Fatalf("list offsets of partition %d: %v", po.Partition, po.Error)
		}
		if po.LastOffset == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: po.Partition, MaxWait: 250 * time.Millisecond})
		for range po.LastOffset {
			km, err := r.ReadMessage(ctx)
			if err != nil {
				_ = r.Close()
				tb.Fatalf("read partition %d: %v", po.Partition, err)
			}
			for _, h := range km.Headers {
				if h.Key == kafkapubsub.UUIDHeaderKey {
					got[string(h.Value)] = km.Partition
				}
			}
		}
		if err := r.Close(); err != nil {
			tb.Fatalf("close reader: %v", err)
		}
	}
	return got
}

// TestPublishToMissingTopicFails checks that Publish never creates a topic:
// topics are created explicitly, with the partitions their keys rely on.
func TestPublishToMissingTopicFails(t *testing.T) {
	t.Parallel()
	brokers := MustBrokers(t)
	topic := "kafkapubsub-test-missing-" + watermill.NewShortUUID()
	err := MustPublisher(t, brokers).Publish(topic, message.NewMessage(watermill.NewUUID(), []byte("x")))
	if !errors.Is(err, kafka.UnknownTopicOrPartition) {
		t.Fatalf("Publish to a missing topic = %v, want kafka.UnknownTopicOrPartition", err)
	}
}

func TestPublishAfterCloseFails(t *testing.T) {
	t.Parallel()
	pub, err := kafkapubsub.NewPublisher(kafkapubsub.PublisherConfig{Brokers: MustBrokers(t)}, nil)
	if err != nil {
		t.Fatalf("new publisher: %v", err)
	}
	if err := pub.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := pub.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := pub.Publish("any", message.NewMessage(watermill.NewUUID(), nil)); !errors.Is(err, kafkapubsub.ErrPublisherClosed) {
		t.Fatalf("Publish after Close = %v, want ErrPublisherClosed", err)
	}
}
