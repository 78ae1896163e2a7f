package kafkapubsub_test

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"github.com/orderflow/orderflow/kafkapubsub"
)

// TestPubSub runs watermill's universal pub/sub suite against the real broker.
//
// Features, and why:
//   - ConsumerGroups: every Subscriber belongs to a consumer group.
//   - ExactlyOnceDelivery false: delivery is at least once (an ack whose
//     commit is lost to a rebalance or crash is delivered again).
//   - GuaranteedOrder true: every suite topic has one partition, a partition
//     is consumed one message at a time and each ack is committed before the
//     next message is sent, so a group resumes exactly after the last acked
//     message; the suite deduplicates redeliveries before comparing order.
//   - Persistent true: Kafka keeps messages across subscribers.
//   - NewSubscriberReceivesOldMessages false: a new member of a group starts
//     at the group's committed offset, not at the beginning.
//   - RestartServiceCommand nil: the broker belongs to the whole test run.
func TestPubSub(t *testing.T) {
	brokers := MustBrokers(t)
	prefix := "kafkapubsub-suite-" + watermill.NewShortUUID() + "-"
	t.Cleanup(func() { deleteTopicsWithPrefix(t, brokers, prefix) })

	newPubSub := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		pub, err := kafkapubsub.NewPublisher(kafkapubsub.PublisherConfig{Brokers: brokers}, testLogger())
		if err != nil {
			t.Fatalf("new publisher: %v", err)
		}
		sub, err := kafkapubsub.NewSubscriber(kafkapubsub.SubscriberConfig{
			Brokers:                    brokers,
			ConsumerGroup:              group,
			InitializeTopicPartitions:  1,
			InitializeTopicReplication: 1,
		}, testLogger())
		if err != nil {
			t.Fatalf("new subscriber: %v", err)
		}
		return pub, sub
	}

	start := time.Now()
	tests.TestPubSub(
		t,
		tests.Features{
			ConsumerGroups:                   true,
			ExactlyOnceDelivery:              false,
			GuaranteedOrder:                  true,
			Persistent:                       true,
			RestartServiceCommand:            nil,
			RequireSingleInstance:            false,
			NewSubscriberReceivesOldMessages: false,
			GenerateTopicFunc: func(tctx tests.TestContext) string {
				return prefix + string(tctx.TestID)
			},
		},
		// One group per suite test, shared by every subscriber that test
		// creates: the group of a handler, as in production.
		func(t *testing.T) (message.Publisher, message.Subscriber) {
			return newPubSub(t, prefix+t.Name())
		},
		newPubSub,
	)
	t.Cleanup(func() { t.Logf("suite ran for %s", time.Since(start).Round(time.Millisecond)) })
}
