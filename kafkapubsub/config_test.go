package kafkapubsub_test

import (
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow/kafkapubsub"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	brokers := []string{"127.0.0.1:9092"}
	tests := []struct {
		name string
		err  error
		// want lists substrings the error must contain; none means valid.
		want []string
	}{
		{name: "publisher: zero values take defaults", err: kafkapubsub.PublisherConfig{Brokers: brokers}.Validate()},
		{name: "publisher: explicit settings", err: kafkapubsub.PublisherConfig{
			Brokers: brokers, Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireOne,
			Marshaler: kafkapubsub.DefaultMarshaler{},
		}.Validate()},
		{name: "publisher: no brokers", err: kafkapubsub.PublisherConfig{}.Validate(), want: []string{"Brokers is required"}},
		{name: "publisher: every problem at once", err: kafkapubsub.PublisherConfig{
			Brokers: []string{"127.0.0.1:9092", " "}, BatchTimeout: -time.Second, RequiredAcks: 7,
		}.Validate(), want: []string{"Brokers[1] is empty", "BatchTimeout -1s is negative", "RequiredAcks 7"}},

		{name: "subscriber: zero values take defaults", err: kafkapubsub.SubscriberConfig{Brokers: brokers, ConsumerGroup: "projector.orders"}.Validate()},
		{name: "subscriber: no consumer group", err: kafkapubsub.SubscriberConfig{Brokers: brokers}.Validate(), want: []string{"ConsumerGroup is required"}},
		{name: "subscriber: blank consumer group", err: kafkapubsub.SubscriberConfig{Brokers: brokers, ConsumerGroup: "  "}.Validate(), want: []string{"ConsumerGroup is required"}},
		{name: "subscriber: every problem at once", err: kafkapubsub.SubscriberConfig{
			ConsumerGroup: "g", MinBytes: -1, MaxBytes: -1, MaxWait: -1, CommitInterval: -1, NackResendSleep: -1, MaxInFlight: -3,
			InitializeTopicPartitions: -1, InitializeTopicReplication: -2, JoinGroupBackoff: -1,
		}.Validate(), want: []string{
			"Brokers is required", "MinBytes -1", "MaxBytes -1", "MaxWait -1ns", "CommitInterval -1ns",
			"NackResendSleep -1ns", "MaxInFlight -3 is negative", "InitializeTopicPartitions -1", "InitializeTopicReplication -2",
			"JoinGroupBackoff -1ns is negative",
		}},
		{name: "subscriber: MinBytes above MaxBytes", err: kafkapubsub.SubscriberConfig{
			Brokers: brokers, ConsumerGroup: "g", MinBytes: 10, MaxBytes: 5,
		}.Validate(), want: []string{"MinBytes 10 exceeds MaxBytes 5"}},
		{name: "subscriber: heartbeat not below session timeout", err: kafkapubsub.SubscriberConfig{
			Brokers: brokers, ConsumerGroup: "g", HeartbeatInterval: 10 * time.Second, SessionTimeout: 10 * time.Second,
		}.Validate(), want: []string{"HeartbeatInterval 10s must be shorter than SessionTimeout 10s"}},

		{name: "router: zero values take defaults", err: kafkapubsub.RouterConfig{}.Validate()},
		{name: "router: explicit settings", err: kafkapubsub.RouterConfig{
			DeadLetterTopic: "dlq", MaxRetries: 5, InitialInterval: time.Millisecond, MaxInterval: time.Second, Multiplier: 1.5,
		}.Validate()},
		{name: "router: every problem at once", err: kafkapubsub.RouterConfig{
			DeadLetterTopic: " dlq", MaxRetries: -1, InitialInterval: 2 * time.Second, MaxInterval: time.Second,
			Multiplier: 0.5, CloseTimeout: -1,
		}.Validate(), want: []string{
			"DeadLetterTopic", "MaxRetries -1", "InitialInterval 2s exceeds MaxInterval 1s", "Multiplier 0.5", "CloseTimeout -1ns",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if len(tt.want) == 0 {
				if tt.err != nil {
					t.Fatalf("Validate() = %v, want nil", tt.err)
				}
				return
			}
			if tt.err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(tt.err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", tt.err, w)
				}
			}
		})
	}
}

func TestConstructorsRejectInvalidConfig(t *testing.T) {
	t.Parallel()
	if _, err := kafkapubsub.NewPublisher(kafkapubsub.PublisherConfig{}, nil); err == nil {
		t.Error("NewPublisher accepted a config without brokers")
	}
	if _, err := kafkapubsub.NewSubscriber(kafkapubsub.SubscriberConfig{Brokers: []string{"127.0.0.1:9092"}}, nil); err == nil {
		t.Error("NewSubscriber accepted a config without a consumer group")
	}
	// A heartbeat longer than the default session timeout is only caught
	// once the defaults are applied.
	if _, err := kafkapubsub.NewSubscriber(kafkapubsub.SubscriberConfig{
		Brokers: []string{"127.0.0.1:9092"}, ConsumerGroup: "g", HeartbeatInterval: time.Hour,
	}, nil); err == nil {
		t.Error("NewSubscriber accepted a heartbeat longer than the session timeout")
	}
	if _, err := kafkapubsub.NewRouter(kafkapubsub.RouterConfig{}, nil, nil); err == nil {
		t.Error("NewRouter accepted a nil publisher")
	}
	if _, err := kafkapubsub.NewRouter(kafkapubsub.RouterConfig{MaxRetries: -1}, nopPublisher{}, nil); err == nil {
		t.Error("NewRouter accepted a negative MaxRetries")
	}
}
