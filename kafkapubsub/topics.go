package kafkapubsub

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/segmentio/kafka-go"
)

// TopicSpec describes a topic for EnsureTopics.
type TopicSpec struct {
	// Name is the topic's name; required.
	Name string
	// Partitions is the partition count; 0 means the broker's num.partitions.
	Partitions int
	// ReplicationFactor is the replica count; 0 means the broker's
	// default.replication.factor.
	ReplicationFactor int
}

// EnsureTopics creates the topics that do not exist yet and leaves existing
// ones as they are (an existing topic is success even if its partition count
// differs); it returns the joined errors of the topics it could not create.
//
// Topics are always created explicitly: Publishers never ask the broker to
// auto-create one. EnsureTopics uses kafka-go's default transport, as
// Publishers do, so a topic it creates is at once known to every Publisher of
// the process (kafka-go caches topic metadata per transport).
func EnsureTopics(ctx context.Context, brokers []string, topics []TopicSpec) error {
	var errs []error
	errs = append(errs, validateBrokers(brokers)...)
	req := &kafka.CreateTopicsRequest{Topics: make([]kafka.TopicConfig, 0, len(topics))}
	for i, t := range topics {
		if strings.TrimSpace(t.Name) == "" {
			errs = append(errs, fmt.Errorf("topic %d has no name", i))
		}
		if t.Partitions < 0 || t.ReplicationFactor < 0 {
			errs = append(errs, fmt.Errorf("topic %q: negative partitions or replication factor", t.Name))
		}
		req.Topics = append(req.Topics, kafka.TopicConfig{
			Topic:             t.Name,
			NumPartitions:     orBrokerDefault(t.Partitions),
			ReplicationFactor: orBrokerDefault(t.ReplicationFactor),
		})
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ensure topics: %w", err)
	}
	if len(req.Topics) == 0 {
		return nil
	}

	client := &kafka.Client{Addr: kafka.TCP(brokers...)}
	res, err := client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("ensure topics: %w", err)
	}
	for _, t := range topics {
		if err := res.Errors[t.Name]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("create topic %s: %w", t.Name, err))
		}
	}
	return errors.Join(errs...)
}

// orBrokerDefault maps 0 to -1, which CreateTopics (v4 and later) reads as
// "the broker's default".
func orBrokerDefault(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
