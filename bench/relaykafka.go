package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow/kafkapubsub"
	"github.com/orderflow/orderflow/relay"
)

// relayPartitions is the partition count of every topic the relay section
// creates.
const relayPartitions = 6

// topicSet is a set of fresh topics made for one measurement: the relay's
// four topics under a prefix no one else uses. The caller must delete them.
type topicSet struct {
	brokers []string
	prefix  string
	names   []string
}

// createTopics creates the relay's topics under a fresh prefix, each with
// relayPartitions partitions and one replica, and waits until every
// partition has a leader, so the first write does not race the metadata.
func createTopics(ctx context.Context, brokers []string, label string) (*topicSet, error) {
	var b [5]byte
	_, _ = rand.Read(b[:])
	t := &topicSet{brokers: brokers, prefix: "bench-" + label + "-" + hex.EncodeToString(b[:])}
	t.names = relay.Topics(t.prefix)
	specs := make([]kafkapubsub.TopicSpec, len(t.names))
	for i, n := range t.names {
		specs[i] = kafkapubsub.TopicSpec{Name: n, Partitions: relayPartitions, ReplicationFactor: 1}
	}
	if err := kafkapubsub.EnsureTopics(ctx, brokers, specs); err != nil {
		return nil, errors.Join(err, t.delete(ctx))
	}
	if err := t.waitReady(ctx); err != nil {
		return nil, errors.Join(err, t.delete(ctx))
	}
	return t, nil
}

func (t *topicSet) client() *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(t.brokers...), Timeout: 30 * time.Second}
}

// waitReady polls until every partition of every topic answers a
// ListOffsets, which only the partition's leader does once it is ready:
// metadata alone announces a leader before it accepts writes. It gives up
// after 30s.
func (t *topicSet) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := t.count(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("topics %s.* not ready after 30s: %w", t.prefix, err)
		}
		if !sleepUntil(ctx, time.Now().Add(100*time.Millisecond)) {
			return ctx.Err()
		}
	}
}

// delete deletes the topics, even when ctx has already ended.
func (t *topicSet) delete(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	res, err := t.client().DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: t.names})
	if err != nil {
		return fmt.Errorf("delete topics %s.*: %w", t.prefix, err)
	}
	var errs []error
	for name, err := range res.Errors {
		if err != nil && !errors.Is(err, kafka.UnknownTopicOrPartition) {
			errs = append(errs, fmt.Errorf("delete topic %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// partitionCount is one partition's share of a topic set's messages.
type partitionCount struct {
	Topic     string
	Partition int
	Messages  int64 // last offset − first offset
}

// count returns, per partition, the last offset minus the first: on fresh
// topics without compaction, how many messages were appended.
func (t *topicSet) count(ctx context.Context) ([]partitionCount, error) {
	req := &kafka.ListOffsetsRequest{Topics: make(map[string][]kafka.OffsetRequest)}
	for _, n := range t.names {
		for p := range relayPartitions {
			req.Topics[n] = append(req.Topics[n], kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
		}
	}
	res, err := t.client().ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s.*: %w", t.prefix, err)
	}
	var out []partitionCount
	for _, n := range t.names {
		parts := res.Topics[n]
		if len(parts) != relayPartitions {
			return nil, fmt.Errorf("list offsets of %s: %d partitions, want %d", n, len(parts), relayPartitions)
		}
		for _, p := range parts {
			if p.Error != nil {
				return nil, fmt.Errorf("list offsets of %s/%d: %w", n, p.Partition, p.Error)
			}
			out = append(out, partitionCount{Topic: n, Partition: p.Partition, Messages: p.LastOffset - p.FirstOffset})
		}
	}
	return out, nil
}

// total sums the messages of every partition.
func total(counts []partitionCount) int64 {
	var n int64
	for _, c := range counts {
		n += c.Messages
	}
	return n
}

// checkDelivered compares what the topics hold with what was sent: more
// means duplicates (allowed by at-least-once delivery, reported), fewer
// means loss (the figure is invalid). It returns the duplicates and the
// problems found.
func checkDelivered(label string, counts []partitionCount, want int64) (dups int64, problems []string) {
	got := total(counts)
	switch {
	case got > want:
		dups = got - want
	case got < want:
		problems = append(problems, fmt.Sprintf("%s: the topics hold %d messages, %d were sent: %d lost", label, got, want, want-got))
	}
	return dups, problems
}
