package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/projector"
)

// otherStreams picks the messages of streams p does not fold (the stock
// projection reads the inventory topic, which also carries reservation
// streams): its consumer never delivers them. A message is keyed by its
// stream id; one without a key is delivered, for the handler to judge.
func otherStreams(p projector.Projection) func(kafka.Message) bool {
	return func(km kafka.Message) bool { return len(km.Key) > 0 && !projector.Wants(p, string(km.Key)) }
}

// project backfills projections that were never built, then applies
// relayed events to every projection, each through its own consumer group,
// until ctx ends.
func project(ctx context.Context, cfg Config, engine *projector.Engine, store *eventstore.Store, logger *slog.Logger) error {
	if err := engine.Backfill(ctx, store, projector.All()); err != nil {
		return err
	}
	var consumers []consumer
	for _, p := range projector.All() {
		for _, s := range projector.Subscriptions(p, cfg.KafkaTopicPrefix) {
			consumers = append(consumers, consumer{name: s.Handler, topic: s.Topic, group: s.ConsumerGroup, handle: engine.Handler(p),
				unordered: true, skip: otherStreams(p)})
		}
	}
	// Only messages that are not orderflow events are dead letters: a
	// projection parks a stream whose event keeps failing, and a database
	// outage is retried until it ends.
	return consume(ctx, cfg, consumers, func(err error) bool { return errors.Is(err, projector.ErrMalformed) }, logger)
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
