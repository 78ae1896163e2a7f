package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/kafkapubsub"
	"github.com/orderflow/orderflow/projector"
)

// runProjector backfills projections that were never built, then applies
// relayed events to every projection, each through its own consumer group,
// until ctx ends. Failures to start are retried: the process stays up.
func runProjector(ctx context.Context, cfg Config, engine *projector.Engine, store *eventstore.Store, logger *slog.Logger) {
	for {
		err := projectOnce(ctx, cfg, engine, store, logger)
		if ctx.Err() != nil {
			return
		}
		logger.Error("projector stopped; restarting", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

func projectOnce(ctx context.Context, cfg Config, engine *projector.Engine, store *eventstore.Store, logger *slog.Logger) error {
	if err := engine.Backfill(ctx, store, projector.All()); err != nil {
		return err
	}
	deadLetter := cfg.KafkaTopicPrefix + ".deadletter"
	topics := []kafkapubsub.TopicSpec{{Name: deadLetter, Partitions: 1, ReplicationFactor: cfg.KafkaReplication}}
	seen := map[string]bool{}
	for _, p := range projector.All() {
		for _, t := range projector.Topics(p, cfg.KafkaTopicPrefix) {
			if !seen[t] {
				seen[t] = true
				topics = append(topics, kafkapubsub.TopicSpec{Name: t, Partitions: cfg.KafkaPartitions, ReplicationFactor: cfg.KafkaReplication})
			}
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
	// Only messages that are not orderflow events are dead letters: a
	// projection parks a stream whose event keeps failing, and a database
	// outage is retried until it ends.
	router, err := kafkapubsub.NewRouter(kafkapubsub.RouterConfig{
		DeadLetterTopic: deadLetter,
		Poison:          func(err error) bool { return errors.Is(err, projector.ErrMalformed) },
	}, pub, wlog)
	if err != nil {
		return err
	}
	for _, p := range projector.All() {
		for _, s := range projector.Subscriptions(p, cfg.KafkaTopicPrefix) {
			sub, err := kafkapubsub.NewSubscriber(kafkapubsub.SubscriberConfig{Brokers: cfg.KafkaBrokers, CommitInterval: consumerCommitInterval, ConsumerGroup: s.ConsumerGroup}, wlog)
			if err != nil {
				return err
			}
			defer sub.Close()
			router.AddNoPublisherHandler(s.Handler, s.Topic, sub, engine.Handler(p))
		}
	}
	logger.Info("projector consuming", "projections", len(projector.All()))
	return router.Run(ctx)
}

// registerAll registers collectors, failing on the first that does not fit.
func registerAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

// consumerCommitInterval is how often projection and saga consumers commit
// their acknowledged offsets. Committing in the background instead of after
// every message takes a broker round trip off each event; only acknowledged
// offsets are ever committed, and a crash redelivers at most this much, which
// the checkpoints and command ids make harmless.
const consumerCommitInterval = 100 * time.Millisecond
