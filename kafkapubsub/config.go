package kafkapubsub

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// Defaults applied to a zero field of PublisherConfig or SubscriberConfig.
const (
	// DefaultBatchTimeout bounds how long a synchronous Publish waits for its
	// batch to fill; kafka-go's own default (1s) makes every Publish take a second.
	DefaultBatchTimeout = 5 * time.Millisecond
	// DefaultMinBytes lets the broker answer a fetch as soon as one byte is there.
	DefaultMinBytes = 1
	// DefaultMaxBytes is the largest fetch response the reader accepts.
	DefaultMaxBytes = 1 << 20
	// DefaultMaxWait is how long a fetch waits for data; kafka-go also uses it
	// as the read deadline, so it bounds how fast a reader notices Close.
	DefaultMaxWait = 250 * time.Millisecond
	// DefaultNackResendSleep is the pause before a nacked message is redelivered.
	DefaultNackResendSleep = 100 * time.Millisecond
	// DefaultHeartbeatInterval is how often a reader heartbeats its group,
	// which is also how soon it notices that the group is rebalancing.
	DefaultHeartbeatInterval = time.Second
	// DefaultSessionTimeout is how long a silent member keeps its partitions;
	// brokers reject less than their group.min.session.timeout.ms (6s).
	DefaultSessionTimeout = 10 * time.Second
	// DefaultRebalanceTimeout is how long the coordinator waits for members to
	// rejoin during a rebalance.
	DefaultRebalanceTimeout = 10 * time.Second
	// DefaultJoinGroupBackoff is the pause before a reader tries again to
	// join its group after a failed join (a broker restarting, the group's
	// coordinator moving): a second, where kafka-go's own default is five.
	DefaultJoinGroupBackoff = time.Second
)

// PublisherConfig configures a Publisher; zero fields take the defaults above.
type PublisherConfig struct {
	// Brokers are the bootstrap addresses (host:port); required.
	Brokers []string
	// Balancer picks a message's partition from its key; default
	// kafka.Murmur2Balancer{}, the partitioning of Java clients.
	Balancer kafka.Balancer
	// BatchTimeout is how long a batch waits to fill; default DefaultBatchTimeout.
	BatchTimeout time.Duration
	// RequiredAcks is the acknowledgement Publish waits for: kafka.RequireAll
	// (the default, used for the zero value) or kafka.RequireOne.
	// Fire-and-forget (kafka.RequireNone) is deliberately not offered.
	RequiredAcks kafka.RequiredAcks
	// Marshaler turns watermill messages into Kafka messages; default DefaultMarshaler.
	Marshaler Marshaler
}

// setDefaults fills the zero fields.
func (c *PublisherConfig) setDefaults() {
	if c.Balancer == nil {
		c.Balancer = kafka.Murmur2Balancer{}
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = DefaultBatchTimeout
	}
	if c.RequiredAcks == kafka.RequireNone {
		c.RequiredAcks = kafka.RequireAll
	}
	if c.Marshaler == nil {
		c.Marshaler = DefaultMarshaler{}
	}
}

// Validate reports every problem of the config at once (errors.Join); a zero
// field is valid and means its default.
func (c PublisherConfig) Validate() error {
	var errs []error
	errs = append(errs, validateBrokers(c.Brokers)...)
	if c.BatchTimeout < 0 {
		errs = append(errs, fmt.Errorf("BatchTimeout %s is negative", c.BatchTimeout))
	}
	switch c.RequiredAcks {
	case kafka.RequireNone, kafka.RequireAll, kafka.RequireOne:
	default:
		errs = append(errs, fmt.Errorf("RequiredAcks %d is neither RequireAll nor RequireOne", c.RequiredAcks))
	}
	return errors.Join(errs...)
}

// SubscriberConfig configures a Subscriber; zero fields take the defaults above.
type SubscriberConfig struct {
	// Brokers are the bootstrap addresses (host:port); required.
	Brokers []string
	// ConsumerGroup is the Kafka consumer group; required. Each handler has
	// its own group and its name is its group: renaming one makes it start
	// over from the oldest retained message.
	ConsumerGroup string
	// MinBytes is the least data a fetch waits for; default DefaultMinBytes.
	MinBytes int
	// MaxBytes is the most data one fetch returns; default DefaultMaxBytes.
	MaxBytes int
	// MaxWait is how long a fetch waits for MinBytes; default DefaultMaxWait.
	MaxWait time.Duration
	// CommitInterval is 0 (the default) to commit each acked offset before the
	// next message is delivered, or a period to commit acked offsets in the
	// background (fewer round trips, more redelivery after a crash). Either
	// way only acked messages are committed.
	CommitInterval time.Duration
	// HeartbeatInterval is how often the group is heartbeated; default
	// DefaultHeartbeatInterval. A member learns of a rebalance only then.
	HeartbeatInterval time.Duration
	// SessionTimeout is how long the broker keeps a silent member; default
	// DefaultSessionTimeout.
	SessionTimeout time.Duration
	// RebalanceTimeout is how long a rebalance waits for members to rejoin;
	// default DefaultRebalanceTimeout.
	RebalanceTimeout time.Duration
	// JoinGroupBackoff is the pause before joining the group again after a
	// failed join; default DefaultJoinGroupBackoff.
	JoinGroupBackoff time.Duration
	// InitializeTopicPartitions is the partition count SubscribeInitialize
	// creates a missing topic with; 0 means the broker's num.partitions.
	InitializeTopicPartitions int
	// InitializeTopicReplication is the replication factor SubscribeInitialize
	// creates a missing topic with; 0 means the broker's default.replication.factor.
	InitializeTopicReplication int
	// NackResendSleep is the pause before a nacked message is delivered again;
	// default DefaultNackResendSleep.
	NackResendSleep time.Duration
	// MaxInFlight is how many messages of a subscription may be out at once,
	// delivered and not yet acked; default 1 (one at a time, in offset order).
	// Above 1, messages with different keys are handled concurrently while
	// messages with the same key (keyless ones: the same partition) still
	// come one at a time in offset order, and a partition's offset is
	// committed only up to its first message not yet acked.
	MaxInFlight int
	// Unordered lets messages with the same key be out at once too, for a
	// handler that puts a key's messages in order itself (a projection
	// applies a stream's events by version, skipping duplicates and reading
	// what it missed, whatever order they come in). Offsets are still
	// committed only below the first unacked message. Without it, one busy
	// key holds its later messages back, and with them, once they fill
	// MaxInFlight, every other key.
	Unordered bool
	// Skip, if set, picks messages not to deliver: they are acknowledged as
	// they are fetched, without a watermill message, a handler call or a
	// place among MaxInFlight. For a handler that reacts to some event types
	// only, it saves the work of delivering the rest.
	Skip func(kafka.Message) bool
	// Unmarshaler turns Kafka messages into watermill messages; default DefaultMarshaler.
	Unmarshaler Unmarshaler
}

// setDefaults fills the zero fields.
func (c *SubscriberConfig) setDefaults() {
	if c.MinBytes == 0 {
		c.MinBytes = DefaultMinBytes
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxWait == 0 {
		c.MaxWait = DefaultMaxWait
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.RebalanceTimeout == 0 {
		c.RebalanceTimeout = DefaultRebalanceTimeout
	}
	if c.JoinGroupBackoff == 0 {
		c.JoinGroupBackoff = DefaultJoinGroupBackoff
	}
	if c.NackResendSleep == 0 {
		c.NackResendSleep = DefaultNackResendSleep
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 1
	}
	if c.Unmarshaler == nil {
		c.Unmarshaler = DefaultMarshaler{}
	}
}

// Validate reports every problem of the config at once (errors.Join); a zero
// field is valid and means its default.
func (c SubscriberConfig) Validate() error {
	var errs []error
	errs = append(errs, validateBrokers(c.Brokers)...)
	if strings.TrimSpace(c.ConsumerGroup) == "" {
		errs = append(errs, errors.New("ConsumerGroup is required: one consumer group per handler"))
	}
	if c.MinBytes < 0 {
		errs = append(errs, fmt.Errorf("MinBytes %d is negative", c.MinBytes))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("MaxBytes %d is negative", c.MaxBytes))
	}
	if c.MinBytes > 0 && c.MaxBytes > 0 && c.MinBytes > c.MaxBytes {
		errs = append(errs, fmt.Errorf("MinBytes %d exceeds MaxBytes %d", c.MinBytes, c.MaxBytes))
	}
	for _, d := range []struct {
		name  string
		value time.Duration
	}{
		{"MaxWait", c.MaxWait},
		{"CommitInterval", c.CommitInterval},
		{"HeartbeatInterval", c.HeartbeatInterval},
		{"SessionTimeout", c.SessionTimeout},
		{"RebalanceTimeout", c.RebalanceTimeout},
		{"JoinGroupBackoff", c.JoinGroupBackoff},
		{"NackResendSleep", c.NackResendSleep},
	} {
		if d.value < 0 {
			errs = append(errs, fmt.Errorf("%s %s is negative", d.name, d.value))
		}
	}
	if c.HeartbeatInterval > 0 && c.SessionTimeout > 0 && c.HeartbeatInterval >= c.SessionTimeout {
		errs = append(errs, fmt.Errorf("HeartbeatInterval %s must be shorter than SessionTimeout %s", c.HeartbeatInterval, c.SessionTimeout))
	}
	if c.MaxInFlight < 0 {
		errs = append(errs, fmt.Errorf("MaxInFlight %d is negative", c.MaxInFlight))
	}
	if c.InitializeTopicPartitions < 0 {
		errs = append(errs, fmt.Errorf("InitializeTopicPartitions %d is negative", c.InitializeTopicPartitions))
	}
	if c.InitializeTopicReplication < 0 {
		errs = append(errs, fmt.Errorf("InitializeTopicReplication %d is negative", c.InitializeTopicReplication))
	}
	return errors.Join(errs...)
}

// validateBrokers reports a missing or blank broker list.
func validateBrokers(brokers []string) []error {
	if len(brokers) == 0 {
		return []error{errors.New("Brokers is required")}
	}
	var errs []error
	for i, b := range brokers {
		if strings.TrimSpace(b) == "" {
			errs = append(errs, fmt.Errorf("Brokers[%d] is empty", i))
		}
	}
	return errs
}
