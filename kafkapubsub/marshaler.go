package kafkapubsub

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/segmentio/kafka-go"
)

// PartitionKeyMetadataKey is the metadata key whose value, when set, becomes
// the Kafka message key (and so picks the partition); without it the key is
// the message UUID. The relay sets it to the stream id so that one stream
// stays in one partition, in order.
const PartitionKeyMetadataKey = "partition_key"

// UUIDHeaderKey is the Kafka header that carries the watermill message UUID;
// it is the same header watermill's Sarama-based adapter uses.
const UUIDHeaderKey = "_watermill_message_uuid"

// Marshaler turns a watermill message into the Kafka message to produce.
type Marshaler interface {
	// Marshal returns the Kafka message for msg on topic, or an error that
	// makes Publish fail before anything is sent.
	Marshal(topic string, msg *message.Message) (kafka.Message, error)
}

// Unmarshaler turns a consumed Kafka message into a watermill message.
type Unmarshaler interface {
	// Unmarshal returns the watermill message for km; an error stops the
	// partition at km (it is logged and retried, never skipped).
	Unmarshal(km kafka.Message) (*message.Message, error)
}

// DefaultMarshaler maps metadata to headers, the payload to the value, the
// UUID to the UUIDHeaderKey header and the key as PartitionKeyMetadataKey says.
type DefaultMarshaler struct{}

var (
	_ Marshaler   = DefaultMarshaler{}
	_ Unmarshaler = DefaultMarshaler{}
)

// Marshal returns msg as a Kafka message for topic; it never fails.
func (DefaultMarshaler) Marshal(topic string, msg *message.Message) (kafka.Message, error) {
	key := msg.Metadata.Get(PartitionKeyMetadataKey)
	if key == "" {
		key = msg.UUID
	}

	// Sorted, so that the same message always produces the same bytes.
	names := make([]string, 0, len(msg.Metadata))
	for name := range msg.Metadata {
		names = append(names, name)
	}
	slices.Sort(names)

	headers := make([]kafka.Header, 0, len(names)+1)
	headers = append(headers, kafka.Header{Key: UUIDHeaderKey, Value: []byte(msg.UUID)})
	for _, name := range names {
		headers = append(headers, kafka.Header{Key: name, Value: []byte(msg.Metadata[name])})
	}

	return kafka.Message{
		Topic:   topic,
		Key:     []byte(key),
		Value:   msg.Payload,
		Headers: headers,
	}, nil
}

// Unmarshal returns km as a watermill message; it never fails. A message that
// lacks the UUID header (one not produced through a Publisher) gets the
// deterministic UUID "topic/partition/offset", so a redelivery keeps its id.
func (DefaultMarshaler) Unmarshal(km kafka.Message) (*message.Message, error) {
	uuid := ""
	metadata := make(message.Metadata, len(km.Headers))
	for _, h := range km.Headers {
		if h.Key == UUIDHeaderKey {
			uuid = string(h.Value)
			continue
		}
		metadata.Set(h.Key, string(h.Value))
	}
	if uuid == "" {
		uuid = km.Topic + "/" + strconv.Itoa(km.Partition) + "/" + strconv.FormatInt(km.Offset, 10)
	}

	msg := message.NewMessage(uuid, km.Value)
	msg.Metadata = metadata
	return msg, nil
}

// marshalAll marshals msgs for topic, naming the message that failed.
func marshalAll(m Marshaler, topic string, msgs []*message.Message) ([]kafka.Message, error) {
	out := make([]kafka.Message, len(msgs))
	for i, msg := range msgs {
		km, err := m.Marshal(topic, msg)
		if err != nil {
			return nil, fmt.Errorf("marshal message %s: %w", msg.UUID, err)
		}
		if km.Topic == "" {
			km.Topic = topic
		}
		out[i] = km
	}
	return out, nil
}
