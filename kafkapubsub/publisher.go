package kafkapubsub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/segmentio/kafka-go"
)

// ErrPublisherClosed is returned by Publish after Close.
var ErrPublisherClosed = errors.New("kafkapubsub: publisher is closed")

// Publisher is a synchronous watermill Publisher over one kafka-go Writer.
type Publisher struct {
	writer    *kafka.Writer
	marshaler Marshaler
	closed    atomic.Bool
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher returns a Publisher for config (defaults applied), or the
// config's validation errors; a nil logger logs nothing.
func NewPublisher(config PublisherConfig, logger watermill.LoggerAdapter) (*Publisher, error) {
	config.setDefaults()
	if err := config.Validate(); err != nil {
		return nil, fmt.Errorf("kafkapubsub: invalid publisher config: %w", err)
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	logger = logger.With(watermill.LogFields{"component": "kafkapubsub.Publisher"})

	return &Publisher{
		writer: &kafka.Writer{
			Addr:     kafka.TCP(config.Brokers...),
			Balancer: config.Balancer,
			// A Publish of one message waits this long for company; kafka-go's
			// default of 1s would make every synchronous Publish take a second.
			BatchTimeout: config.BatchTimeout,
			RequiredAcks: config.RequiredAcks,
			// Topics are created by EnsureTopics, never implicitly with the
			// broker's defaults.
			AllowAutoTopicCreation: false,
			ErrorLogger:            errorLogger(logger),
		},
		marshaler: config.Marshaler,
	}, nil
}

// Publish writes msgs to topic and returns once the broker acknowledged all of
// them (RequiredAcks), or returns ErrPublisherClosed, a marshaling error, or
// the write error (a kafka.WriteErrors naming each failed message).
//
// kafka-go keeps one batch in flight per partition, so messages published in
// order to one partition are written in that order. The topic must exist:
// kafka.UnknownTopicOrPartition means EnsureTopics was not called for it.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	if p.closed.Load() {
		return ErrPublisherClosed
	}
	if len(msgs) == 0 {
		return nil
	}
	kmsgs, err := marshalAll(p.marshaler, topic, msgs)
	if err != nil {
		return fmt.Errorf("publish to %s: %w", topic, err)
	}

	// No deadline here: the writer bounds each attempt (WriteTimeout) and the
	// number of attempts, and a canceled write leaves the outcome unknown.
	if err := p.writer.WriteMessages(context.Background(), kmsgs...); err != nil {
		if errors.Is(err, io.ErrClosedPipe) {
			return ErrPublisherClosed
		}
		return fmt.Errorf("publish %d message(s) to %s: %w", len(kmsgs), topic, err)
	}
	return nil
}

// Close flushes and waits for writes under way, then makes Publish fail with
// ErrPublisherClosed; it is safe to call more than once and returns the
// writer's close error.
func (p *Publisher) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	if err := p.writer.Close(); err != nil {
		return fmt.Errorf("close kafka writer: %w", err)
	}
	return nil
}
