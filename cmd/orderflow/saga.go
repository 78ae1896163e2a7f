package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/breaker"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/kafkapubsub"
	"github.com/orderflow/orderflow/paymentprovider"
	"github.com/orderflow/orderflow/relay"
	"github.com/orderflow/orderflow/saga"
)

// newSaga builds the saga's participants, charging through the payment
// provider at cfg's URL (or this process's own, selfURL) behind a breaker.
func newSaga(cfg Config, pool *pgxpool.Pool, store *eventstore.Store, selfURL string, logger *slog.Logger) (*saga.Participants, error) {
	br, err := breaker.New(breaker.Config{Name: "payment-provider", Failures: uint32(cfg.PaymentBreakerFails), OpenTimeout: cfg.PaymentBreakerTimeout}, logger)
	if err != nil {
		return nil, err
	}
	base := cfg.PaymentProviderURL
	if base == "" {
		base = selfURL
	}
	client, err := paymentprovider.NewClient(base, &http.Client{Timeout: 10 * time.Second}, br)
	if err != nil {
		return nil, err
	}
	return saga.New(store, client, pool, time.Now, logger)
}

// runSaga runs every saga reaction, each through its own consumer group,
// until ctx ends, restarting after failures.
func runSaga(ctx context.Context, cfg Config, participants *saga.Participants, logger *slog.Logger) {
	for {
		err := sagaOnce(ctx, cfg, participants, logger)
		if ctx.Err() != nil {
			return
		}
		logger.Error("saga stopped; restarting", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

func sagaOnce(ctx context.Context, cfg Config, participants *saga.Participants, logger *slog.Logger) error {
	deadLetter := cfg.KafkaTopicPrefix + ".deadletter"
	specs := []kafkapubsub.TopicSpec{{Name: deadLetter, Partitions: 1, ReplicationFactor: cfg.KafkaReplication}}
	for _, t := range relay.Topics(cfg.KafkaTopicPrefix) {
		specs = append(specs, kafkapubsub.TopicSpec{Name: t, Partitions: cfg.KafkaPartitions, ReplicationFactor: cfg.KafkaReplication})
	}
	if err := kafkapubsub.EnsureTopics(ctx, cfg.KafkaBrokers, specs); err != nil {
		return err
	}
	wlog := kafkapubsub.NewSlogLogger(logger)
	pub, err := kafkapubsub.NewPublisher(kafkapubsub.PublisherConfig{Brokers: cfg.KafkaBrokers}, wlog)
	if err != nil {
		return err
	}
	defer pub.Close()
	// Only undecodable messages are dead letters: a provider outage or a
	// database hiccup is retried until it passes, so no order fails because
	// of the outage itself.
	router, err := kafkapubsub.NewRouter(kafkapubsub.RouterConfig{
		DeadLetterTopic: deadLetter,
		Poison:          func(err error) bool { return errors.Is(err, saga.ErrMalformed) },
	}, pub, wlog)
	if err != nil {
		return err
	}
	for _, reaction := range participants.Reactions() {
		sub, err := kafkapubsub.NewSubscriber(kafkapubsub.SubscriberConfig{Brokers: cfg.KafkaBrokers, CommitInterval: consumerCommitInterval, ConsumerGroup: "orderflow.saga." + reaction.Name}, wlog)
		if err != nil {
			return err
		}
		defer sub.Close()
		handle := reaction.Handle
		router.AddNoPublisherHandler("saga."+reaction.Name, relay.Topic(cfg.KafkaTopicPrefix, reaction.Context), sub, func(msg *message.Message) error {
			e, err := relay.EventFromHeaders(msg.Metadata, msg.Payload)
			if err != nil {
				return errors.Join(saga.ErrMalformed, err)
			}
			return handle(msg.Context(), e)
		})
	}
	logger.Info("saga consuming", "reactions", len(participants.Reactions()))
	return router.Run(ctx)
}
