package kafkapubsub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/segmentio/kafka-go"
)

// ErrSubscriberClosed is returned by Subscribe and SubscribeInitialize after Close.
var ErrSubscriberClosed = errors.New("kafkapubsub: subscriber is closed")

const (
	// commitTimeout bounds one CommitMessages; a commit waits for the group's
	// current generation, so it stalls while the group rebalances.
	commitTimeout = 10 * time.Second
	// fetchErrorBackoff is the pause after a failed fetch.
	fetchErrorBackoff = 500 * time.Millisecond
	// initializeTimeout bounds SubscribeInitialize, which has no context.
	initializeTimeout = 30 * time.Second
	// topicPollMin and topicPollMax bound the pause between two lookups of
	// a topic that does not exist yet.
	topicPollMin = 100 * time.Millisecond
	topicPollMax = 5 * time.Second
)

// Subscriber is a watermill Subscriber over kafka-go consumer-group readers:
// every Subscribe call joins the configured group with a reader of its own.
type Subscriber struct {
	config SubscriberConfig
	logger watermill.LoggerAdapter

	mu      sync.Mutex // guards closed and the Add of wg
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup
}

var (
	_ message.Subscriber           = (*Subscriber)(nil)
	_ message.SubscribeInitializer = (*Subscriber)(nil)
)

// NewSubscriber returns a Subscriber for config (defaults applied), or the
// config's validation errors; a nil logger logs nothing.
func NewSubscriber(config SubscriberConfig, logger watermill.LoggerAdapter) (*Subscriber, error) {
	config.setDefaults()
	if err := config.Validate(); err != nil {
		return nil, fmt.Errorf("kafkapubsub: invalid subscriber config: %w", err)
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	return &Subscriber{
		config: config,
		logger: logger.With(watermill.LogFields{
			"component":      "kafkapubsub.Subscriber",
			"consumer_group": config.ConsumerGroup,
		}),
		closing: make(chan struct{}),
	}, nil
}

// SubscribeInitialize creates topic if it is missing, with the configured
// InitializeTopicPartitions and InitializeTopicReplication; it returns
// ErrSubscriberClosed after Close or the creation error.
func (s *Subscriber) SubscribeInitialize(topic string) error {
	if s.isClosed() {
		return ErrSubscriberClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), initializeTimeout)
	defer cancel()
	return EnsureTopics(ctx, s.config.Brokers, []TopicSpec{{
		Name:              topic,
		Partitions:        s.config.InitializeTopicPartitions,
		ReplicationFactor: s.config.InitializeTopicReplication,
	}})
}

// Subscribe joins the consumer group on topic and returns the channel of its
// messages, closed when ctx ends or the Subscriber is closed; it returns
// ErrSubscriberClosed after Close. If topic does not exist yet, the
// subscription waits for it to be created.
//
// With MaxInFlight 1 (the default) messages come one at a time in offset
// order: the next one is sent only after the previous one was acked, and an
// ack commits its offset. With more, messages of different keys come
// concurrently and those of one key one at a time in offset order (unless
// Unordered: then any message may be out with any other). A nacked
// message is sent again (as a fresh copy) after NackResendSleep and nothing
// past it is committed; a message still unacked when the subscription ends
// is not committed either.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if topic == "" {
		return nil, errors.New("kafkapubsub: subscribe: empty topic")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrSubscriberClosed
	}

	logger := s.logger.With(watermill.LogFields{"topic": topic})
	ctx, cancel := context.WithCancel(ctx)
	out := make(chan *message.Message)
	s.wg.Add(2)
	go func() {
		// Ends the subscription on Close; exits with it either way.
		defer s.wg.Done()
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	go func() {
		defer s.wg.Done()
		defer close(out)
		defer cancel()
		if !s.waitForTopic(ctx, topic, logger) {
			return
		}
		reader := s.newReader(topic, logger)
		s.consume(ctx, reader, out, logger)
		// Leaves the group before the channel closes, so that whoever
		// subscribes next gets the partitions without waiting for a timeout.
		if err := reader.Close(); err != nil {
			logger.Error("Closing the kafka reader failed", err, nil)
		}
	}()
	return out, nil
}

// newReader returns a consumer-group reader of topic.
func (s *Subscriber) newReader(topic string, logger watermill.LoggerAdapter) *kafka.Reader {
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers: s.config.Brokers,
		GroupID: s.config.ConsumerGroup,
		Topic:   topic,
		// kafka-go's defaults (MaxWait 10s) make an idle reader slow to
		// notice Close; MinBytes 1 answers a fetch as soon as data is there.
		MinBytes:          s.config.MinBytes,
		MaxBytes:          s.config.MaxBytes,
		MaxWait:           s.config.MaxWait,
		CommitInterval:    s.config.CommitInterval,
		HeartbeatInterval: s.config.HeartbeatInterval,
		SessionTimeout:    s.config.SessionTimeout,
		RebalanceTimeout:  s.config.RebalanceTimeout,
		JoinGroupBackoff:  s.config.JoinGroupBackoff,
		StartOffset:       kafka.FirstOffset,
		// WatchPartitionChanges stays off: with it, kafka-go rejoins the
		// group in a tight loop while the topic is missing (or deleted).
		ErrorLogger: errorLogger(logger),
	})
}

// waitForTopic returns true once topic exists, or false when ctx ends first.
//
// A kafka-go group reader started on a missing topic is assigned nothing and
// stays that way after the topic appears (until some rebalance), so the
// reader is only started once the topic is there. The lookup goes through
// kafka-go's metadata cache: a topic created by EnsureTopics in this process
// is seen at once, one created elsewhere within the cache's TTL (6s).
func (s *Subscriber) waitForTopic(ctx context.Context, topic string, logger watermill.LoggerAdapter) bool {
	client := &kafka.Client{Addr: kafka.TCP(s.config.Brokers...)}
	delay, waiting := topicPollMin, false
	for {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		switch {
		case ctx.Err() != nil:
			return false
		case err != nil:
			logger.Error("Looking up the topic failed", err, nil)
		case len(md.Topics) == 1 && md.Topics[0].Error == nil && len(md.Topics[0].Partitions) > 0:
			if waiting {
				logger.Info("The topic exists now; subscribing", nil)
			}
			return true
		case !waiting:
			logger.Info("Waiting for the topic to be created (EnsureTopics or SubscribeInitialize)", nil)
			waiting = true
		}
		if !sleep(ctx, delay) {
			return false
		}
		delay = min(2*delay, topicPollMax)
	}
}

// consume delivers the reader's messages to out until ctx ends, keeping up to
// MaxInFlight of them out at once (see SubscriberConfig.MaxInFlight).
func (s *Subscriber) consume(ctx context.Context, reader *kafka.Reader, out chan<- *message.Message, logger watermill.LoggerAdapter) {
	slots := make(chan struct{}, s.config.MaxInFlight) // one per message between fetch and ack
	fetched := make(chan kafka.Message)
	fetcherDone := make(chan struct{})
	go func() {
		defer close(fetcherDone)
		s.fetch(ctx, reader, slots, fetched, logger)
	}()

	var (
		w          = newWindow(s.config.Unordered)
		acked      = make(chan kafka.Message)
		deliveries sync.WaitGroup
	)
	start := func(km kafka.Message) {
		deliveries.Add(1)
		go func() {
			defer deliveries.Done()
			if s.deliver(ctx, km, out, logger) {
				acked <- km // the loops below receive until every delivery ended
			}
		}()
	}
	ack := func(km kafka.Message) *kafka.Message {
		next, commit := w.done(km)
		if commit != nil {
			s.commit(ctx, reader, *commit, logger)
		}
		return next
	}
	for ctx.Err() == nil {
		select {
		case km := <-fetched:
			switch {
			case s.config.Skip != nil && s.config.Skip(km):
				if commit := w.skip(km); commit != nil {
					s.commit(ctx, reader, *commit, logger)
				}
				<-slots
			case w.add(km):
				start(km)
			}
		case km := <-acked:
			next := ack(km)
			<-slots
			if next != nil {
				start(*next)
			}
		case <-ctx.Done():
		}
	}
	// Record the acks that raced the end; deliver nothing more.
	allDone := make(chan struct{})
	go func() {
		deliveries.Wait()
		close(allDone)
	}()
	for {
		select {
		case km := <-acked:
			ack(km)
		case <-allDone:
			<-fetcherDone
			return
		}
	}
}

// fetch sends the reader's messages to fetched, each once it holds a slot,
// until ctx ends.
func (s *Subscriber) fetch(ctx context.Context, reader *kafka.Reader, slots chan<- struct{}, fetched chan<- kafka.Message, logger watermill.LoggerAdapter) {
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		// FetchMessage, never ReadMessage: ReadMessage commits on fetch,
		// before the message was processed.
		km, err := reader.FetchMessage(ctx)
		for err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return
			}
			logger.Error("Fetching a message failed", err, nil)
			if !sleep(ctx, fetchErrorBackoff) {
				return
			}
			km, err = reader.FetchMessage(ctx)
		}
		select {
		case fetched <- km:
		case <-ctx.Done():
			return
		}
	}
}

// deliver sends km until it is acked; it returns false when ctx ended first.
func (s *Subscriber) deliver(ctx context.Context, km kafka.Message, out chan<- *message.Message, logger watermill.LoggerAdapter) bool {
	fields := watermill.LogFields{"partition": km.Partition, "offset": km.Offset}
	for {
		msg, err := s.config.Unmarshaler.Unmarshal(km)
		if err != nil {
			// Skipping it would commit past it: the partition waits instead.
			logger.Error("Unmarshaling a message failed; retrying", err, fields)
			if !sleep(ctx, s.config.NackResendSleep) {
				return false
			}
			continue
		}

		msgCtx, cancelMsg := context.WithCancel(ctx)
		msg.SetContext(msgCtx)
		select {
		case out <- msg:
		case <-ctx.Done():
			cancelMsg()
			return false
		}

		select {
		case <-msg.Acked():
			cancelMsg()
			return true
		case <-msg.Nacked():
			cancelMsg()
			logger.Trace("Message nacked; sending it again", fields)
			if !sleep(ctx, s.config.NackResendSleep) {
				return false
			}
		case <-ctx.Done():
			cancelMsg()
			return false
		}
	}
}

// commit commits km's offset (and so everything before it in its partition).
// It outlives ctx, so an ack that races Close is still recorded; a failed
// commit only means km may be delivered again.
func (s *Subscriber) commit(ctx context.Context, reader *kafka.Reader, km kafka.Message, logger watermill.LoggerAdapter) {
	commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if err := reader.CommitMessages(commitCtx, km); err != nil {
		logger.Error("Committing acked messages failed; they may be delivered again", err,
			watermill.LogFields{"partition": km.Partition, "offset": km.Offset})
	}
}

// Close ends every subscription, closes their readers (leaving the group) and
// waits for all of it; it is safe to call more than once and always returns nil.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.mu.Unlock()

	s.wg.Wait()
	return nil
}

func (s *Subscriber) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// sleep waits d, or returns false as soon as ctx ends.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
