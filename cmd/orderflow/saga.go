package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow/breaker"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/internal/latency"
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
	// Every charge in flight calls the provider at once; Go's default
	// transport keeps two idle connections per host, so it opened and closed
	// one for nearly every call.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 128
	client, err := paymentprovider.NewClient(base, &http.Client{Timeout: 10 * time.Second, Transport: transport}, br)
	if err != nil {
		return nil, err
	}
	return saga.New(store, client, pool, time.Now, logger)
}

// sagaReactions runs every saga reaction, each through its own consumer
// group, until ctx ends. Dead letters are the messages no retry can help
// (sagaPoison); a provider outage or a database hiccup is retried until it
// passes, so no order fails because of the outage itself.
func sagaReactions(ctx context.Context, cfg Config, participants *saga.Participants, m *sagaMetrics, logger *slog.Logger) error {
	var consumers []consumer
	for _, reaction := range participants.Reactions() {
		handle, types, name := reaction.Handle, reaction.Types, reaction.Name
		consumers = append(consumers, consumer{
			name: "saga." + reaction.Name, topic: relay.Topic(cfg.KafkaTopicPrefix, reaction.Context),
			group: "orderflow.saga." + reaction.Name,
			skip:  otherTypes(types),
			handle: func(msg *message.Message) error {
				e, err := relay.EventFromHeaders(msg.Metadata, msg.Payload)
				if err != nil {
					return errors.Join(saga.ErrMalformed, err)
				}
				start := time.Now()
				m.wait.WithLabelValues(name).Observe(start.Sub(e.RecordedAt).Seconds())
				err = handle(msg.Context(), e)
				m.took.WithLabelValues(name).Observe(time.Since(start).Seconds())
				return err
			},
		})
	}
	return consume(ctx, cfg, consumers, sagaPoison, logger)
}

// sagaPoison picks the reaction errors that go to the dead-letter topic: an
// undecodable trigger, and a request the payment provider itself refused
// for good (a refund of a charge it no longer knows, say, after it lost its
// state: paymentprovider.Refused). Retried, either would hold its
// partition's later messages back forever; as a dead letter it is in front
// of an operator, and an order it leaves pending is cancelled at its
// deadline. Another 4xx, such as a wrong provider URL's 404, is retried
// until it is mended, like an outage.
func sagaPoison(err error) bool {
	return errors.Is(err, saga.ErrMalformed) || paymentprovider.Refused(err)
}

// otherTypes picks the messages of event types not in types: the reaction
// never sees them (kafkapubsub.SubscriberConfig.Skip). One without a type is
// delivered, for the handler to turn away as malformed.
func otherTypes(types []string) func(kafka.Message) bool {
	return func(km kafka.Message) bool {
		for _, h := range km.Headers {
			if h.Key == relay.HeaderType {
				return !slices.Contains(types, string(h.Value))
			}
		}
		return false
	}
}

// sagaMetrics times the saga's reactions: how long after its trigger's
// append a reaction starts (the relay, Kafka and the consumer's queue) and
// how long it takes.
type sagaMetrics struct {
	wait, took *prometheus.HistogramVec
}

func newSagaMetrics(reg prometheus.Registerer) (*sagaMetrics, error) {
	buckets := latency.Buckets()
	m := &sagaMetrics{
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "orderflow_saga_trigger_age_seconds", Buckets: buckets,
			Help: "Time from a reaction's trigger event's append to the reaction starting on it, per reaction.",
		}, []string{"reaction"}),
		took: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "orderflow_saga_reaction_seconds", Buckets: buckets,
			Help: "Time a reaction takes on one trigger event (reads, provider calls, appends), per reaction.",
		}, []string{"reaction"}),
	}
	return m, registerAll(reg, m.wait, m.took)
}
