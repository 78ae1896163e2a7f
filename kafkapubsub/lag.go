package kafkapubsub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// Lag is how far a consumer group is behind a topic.
type Lag struct {
	// Messages past the group's committed offsets, summed over the
	// topic's partitions. A partition the group never committed on counts
	// from its first retained message, where a new member starts.
	Messages int64
	// Oldest is the time of the oldest of them (the earliest record time of
	// the first message past each partition's committed offset); zero when
	// Messages is 0.
	Oldest time.Time
}

// ConsumerLag asks the broker how far group is behind topic: each
// partition's end offset minus the group's committed offset (Kafka's
// "consumer lag"), and the time of the first message not yet committed.
// Offsets are committed some time after messages are handled (see
// SubscriberConfig.CommitInterval), so a group that keeps up lags by about
// what arrives in that time.
func ConsumerLag(ctx context.Context, brokers []string, group, topic string) (Lag, error) {
	var errs []error
	errs = append(errs, validateBrokers(brokers)...)
	if strings.TrimSpace(group) == "" {
		errs = append(errs, errors.New("no consumer group"))
	}
	if strings.TrimSpace(topic) == "" {
		errs = append(errs, errors.New("no topic"))
	}
	if err := errors.Join(errs...); err != nil {
		return Lag{}, fmt.Errorf("consumer lag: %w", err)
	}
	client := &kafka.Client{Addr: kafka.TCP(brokers...)}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return Lag{}, fmt.Errorf("consumer lag of %s on %s: %w", group, topic, err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		var topicErr error = errors.New("not in the broker's metadata")
		if len(md.Topics) == 1 {
			topicErr = md.Topics[0].Error
		}
		return Lag{}, fmt.Errorf("consumer lag of %s on %s: %w", group, topic, topicErr)
	}
	var (
		partitions []int
		ends       []kafka.OffsetRequest
	)
	for _, p := range md.Topics[0].Partitions {
		partitions = append(partitions, p.ID)
		ends = append(ends, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	offsets, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: ends}})
	if err != nil {
		return Lag{}, fmt.Errorf("consumer lag of %s on %s: end offsets: %w", group, topic, err)
	}
	committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: partitions}})
	if err == nil {
		err = committed.Error
	}
	if err != nil {
		return Lag{}, fmt.Errorf("consumer lag of %s on %s: committed offsets: %w", group, topic, err)
	}
	at := map[int]int64{}
	for _, p := range committed.Topics[topic] {
		if p.Error != nil {
			return Lag{}, fmt.Errorf("consumer lag of %s on %s: committed offset of partition %d: %w", group, topic, p.Partition, p.Error)
		}
		at[p.Partition] = p.CommittedOffset
	}
	var lag Lag
	for _, p := range offsets.Topics[topic] {
		if p.Error != nil {
			return Lag{}, fmt.Errorf("consumer lag of %s on %s: offsets of partition %d: %w", group, topic, p.Partition, p.Error)
		}
		from, ok := at[p.Partition]
		if !ok || from < p.FirstOffset { // never committed, or retention removed what it had not read
			from = p.FirstOffset
		}
		if from >= p.LastOffset {
			continue
		}
		lag.Messages += p.LastOffset - from
		t, err := recordTime(ctx, client, topic, p.Partition, from)
		if err != nil {
			return Lag{}, fmt.Errorf("consumer lag of %s on %s: %w", group, topic, err)
		}
		if lag.Oldest.IsZero() || t.Before(lag.Oldest) {
			lag.Oldest = t
		}
	}
	return lag, nil
}

// recordTime returns the time of the record at offset in a partition.
func recordTime(ctx context.Context, client *kafka.Client, topic string, partition int, offset int64) (time.Time, error) {
	res, err := client.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: partition, Offset: offset,
		MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 100 * time.Millisecond})
	if err == nil {
		err = res.Error
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("fetch offset %d of partition %d: %w", offset, partition, err)
	}
	for {
		r, err := res.Records.ReadRecord()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("no record there")
			}
			return time.Time{}, fmt.Errorf("record %d of partition %d: %w", offset, partition, err)
		}
		if r.Offset >= offset { // a fetch answers with whole batches, which may start earlier
			return r.Time, nil
		}
	}
}
