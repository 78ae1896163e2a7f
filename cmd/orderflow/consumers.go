package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow/kafkapubsub"
)

// consumer is one watermill handler over relayed events: its consumer group
// is its identity, never renamed casually.
type consumer struct {
	name   string // handler name, for logs
	topic  string
	group  string
	handle message.NoPublishHandlerFunc
	// unordered: the handler orders a stream's events itself, so they may
	// be out at once (kafkapubsub.SubscriberConfig.Unordered).
	unordered bool
	// skip, if set, picks messages the handler never gets
	// (kafkapubsub.SubscriberConfig.Skip).
	skip func(kafka.Message) bool
}

// consumerCommitInterval is how often projection and saga consumers commit
// their acknowledged offsets. Committing in the background instead of after
// every message takes a broker round trip off each event; only acknowledged
// offsets are ever committed, and a crash redelivers at most this much, which
// the checkpoints and command ids make harmless.
const consumerCommitInterval = 100 * time.Millisecond

// consume runs consumers, each through its own consumer group, until ctx
// ends. Messages whose error poison accepts go to the dead-letter topic
// after the router's retries; any other failure is retried until it passes.
func consume(ctx context.Context, cfg Config, consumers []consumer, poison func(error) bool, logger *slog.Logger) error {
	deadLetter := cfg.KafkaTopicPrefix + ".deadletter"
	topics := []kafkapubsub.TopicSpec{{Name: deadLetter, Partitions: 1, ReplicationFactor: cfg.KafkaReplication}}
	seen := map[string]bool{}
	for _, c := range consumers {
		if !seen[c.topic] {
			seen[c.topic] = true
			topics = append(topics, kafkapubsub.TopicSpec{Name: c.topic, Partitions: cfg.KafkaPartitions, ReplicationFactor: cfg.KafkaReplication})
		}
	}
	if err := kafkapubsub.EnsureTopics(ctx, cfg.KafkaBrokers, topics); err != nil {
		return err
	}
	wlog := kafkapubsub.NewSlogLogger(logger)
	pub, err := kafkapubsub.NewPublisher(kafkapubsub.PublisherConfig{Brokers: cfg.KafkaBrokers}, wlog)
	if err != nil {
		return err
	}
	defer pub.Close()
	router, err := kafkapubsub.NewRouter(kafkapubsub.RouterConfig{DeadLetterTopic: deadLetter, Poison: poison}, pub, wlog)
	if err != nil {
		return err
	}
	for _, c := range consumers {
		sub, err := kafkapubsub.NewSubscriber(kafkapubsub.SubscriberConfig{
			Brokers: cfg.KafkaBrokers, ConsumerGroup: c.group, CommitInterval: consumerCommitInterval,
			MaxInFlight: cfg.ConsumerInFlight, Unordered: c.unordered, Skip: c.skip,
		}, wlog)
		if err != nil {
			return err
		}
		defer sub.Close()
		router.AddNoPublisherHandler(c.name, c.topic, sub, c.handle)
	}
	logger.Info("consuming", "handlers", len(consumers))
	return router.Run(ctx)
}

// supervise runs fn until ctx ends, starting it again two seconds after it
// fails: a role whose broker or database is away waits for it instead of
// taking the process down.
func supervise(ctx context.Context, name string, fn func(context.Context) error, logger *slog.Logger) {
	for {
		err := fn(ctx)
		if ctx.Err() != nil {
			return
		}
		logger.Error(name+" stopped; restarting", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}
