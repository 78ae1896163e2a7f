package relay

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/eventstore"
)

// CloudEvents 1.0 in Kafka binary mode: attributes travel as ce_ headers, the
// body is the event's JSON payload, datacontenttype is the content-type
// header. Extension attribute names are lower-case letters and digits only.
const (
	HeaderID            = "ce_id"
	HeaderType          = "ce_type"
	HeaderSource        = "ce_source"
	HeaderSpecVersion   = "ce_specversion"
	HeaderTime          = "ce_time"
	HeaderSubject       = "ce_subject"
	HeaderStreamID      = "ce_streamid"
	HeaderStreamVersion = "ce_streamversion"
	HeaderSchemaVersion = "ce_schemaversion"
	HeaderPosition      = "ce_position"
	HeaderCorrelationID = "ce_correlationid"
	HeaderCausationID   = "ce_causationid"
	HeaderCommandID     = "ce_commandid"
	HeaderContentType   = "content-type"
	// W3C trace context, as OpenTelemetry's Kafka propagation reads it.
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
)

// Bounded contexts, each with a topic named "<prefix>.<context>".
const (
	ContextOrder     = "order"
	ContextInventory = "inventory"
	ContextPayment   = "payment"
	// ContextUnrouted takes events of a stream category no context owns, so
	// they never block the relay.
	ContextUnrouted = "unrouted"
)

// DefaultTopicPrefix makes the topics orderflow.order, orderflow.inventory,
// orderflow.payment and orderflow.unrouted.
const DefaultTopicPrefix = "orderflow"

// Topics lists every topic the relay publishes to under prefix.
func Topics(prefix string) []string {
	return []string{
		Topic(prefix, ContextOrder), Topic(prefix, ContextInventory),
		Topic(prefix, ContextPayment), Topic(prefix, ContextUnrouted),
	}
}

// Topic returns the topic of a bounded context under prefix.
func Topic(prefix, context string) string { return prefix + "." + context }

// ContextOf returns the bounded context of a stream.
func ContextOf(streamID string) string {
	switch orderflow.StreamCategory(streamID) {
	case "order":
		return ContextOrder
	case "sku", "reservation":
		return ContextInventory
	case "payment":
		return ContextPayment
	}
	return ContextUnrouted
}

// Message returns the Kafka message of a recorded event, for the topic of its
// context under prefix, keyed by stream id so a stream stays in one
// partition and in order.
func Message(e eventstore.Event, source, prefix string) kafka.Message {
	h := []kafka.Header{
		{Key: HeaderSpecVersion, Value: []byte("1.0")},
		{Key: HeaderID, Value: []byte(e.ID.String())},
		{Key: HeaderType, Value: []byte(e.Type)},
		{Key: HeaderSource, Value: []byte(source)},
		{Key: HeaderTime, Value: []byte(e.RecordedAt.UTC().Format(time.RFC3339Nano))},
		{Key: HeaderSubject, Value: []byte(e.StreamID)},
		{Key: HeaderContentType, Value: []byte("application/json")},
		{Key: HeaderStreamID, Value: []byte(e.StreamID)},
		{Key: HeaderStreamVersion, Value: []byte(strconv.FormatInt(e.Version, 10))},
		{Key: HeaderSchemaVersion, Value: []byte(strconv.Itoa(e.SchemaVersion))},
		{Key: HeaderPosition, Value: []byte(e.Position.String())},
	}
	add := func(k, v string) {
		if v != "" {
			h = append(h, kafka.Header{Key: k, Value: []byte(v)})
		}
	}
	add(HeaderCorrelationID, e.Metadata.CorrelationID)
	add(HeaderCausationID, e.Metadata.CausationID)
	add(HeaderCommandID, e.Metadata.CommandID)
	add(HeaderTraceParent, e.Metadata.TraceParent)
	add(HeaderTraceState, e.Metadata.TraceState)
	return kafka.Message{
		Topic:   Topic(prefix, ContextOf(e.StreamID)),
		Key:     []byte(e.StreamID),
		Value:   e.Data,
		Headers: h,
		Time:    e.RecordedAt,
	}
}

// NewWriter returns kafka-go's Writer set up to do the relay's work:
// acknowledgements from all in-sync replicas, Java-compatible murmur2
// partitioning by key, a batch limit no smaller than the relay's batches (so
// one call sends one batch per partition, and a partition never has two in
// flight), a short batch timeout (kafka-go's default of 1s would delay every
// write), and few attempts of its own so a circuit breaker sees failures
// promptly. The relay used it until NewProducer, which sends one request
// per broker where it sends one per partition; it stays as the raw
// library's baseline in the benchmarks and the reference NewProducer's
// partitioning is tested against.
func NewWriter(brokers []string, batchSize int) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Balancer:     &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll,
		BatchSize:    max(batchSize, 1),
		BatchBytes:   1_000_000, // under the broker's default message.max.bytes
		// kafka-go queues all of one call's messages for a partition before
		// this timer can fire, so a tiny timeout splits nothing and saves
		// the wait a 1ms timer adds to every batch.
		BatchTimeout:           10 * time.Microsecond,
		MaxAttempts:            2,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        500 * time.Millisecond,
		ReadTimeout:            10 * time.Second,
		WriteTimeout:           10 * time.Second,
		AllowAutoTopicCreation: false,
	}
}

// EventFromHeaders is Message's inverse: it rebuilds the recorded event from
// a relayed CloudEvent's headers and body. It fails on a message that lacks
// or garbles a required attribute.
func EventFromHeaders(h map[string]string, body []byte) (eventstore.Event, error) {
	var e eventstore.Event
	var errs []error
	id, err := uuid.Parse(h[HeaderID])
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", HeaderID, err))
	}
	e.ID, e.StreamID, e.Type, e.Data = id, h[HeaderStreamID], h[HeaderType], body
	if e.StreamID == "" || e.Type == "" {
		errs = append(errs, fmt.Errorf("%s and %s are required", HeaderStreamID, HeaderType))
	}
	if e.Version, err = strconv.ParseInt(h[HeaderStreamVersion], 10, 64); err != nil || e.Version < 1 {
		errs = append(errs, fmt.Errorf("%s: %q is not a version", HeaderStreamVersion, h[HeaderStreamVersion]))
	}
	if e.SchemaVersion, err = strconv.Atoi(h[HeaderSchemaVersion]); err != nil || e.SchemaVersion < 1 {
		errs = append(errs, fmt.Errorf("%s: %q is not a schema version", HeaderSchemaVersion, h[HeaderSchemaVersion]))
	}
	if e.RecordedAt, err = time.Parse(time.RFC3339Nano, h[HeaderTime]); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", HeaderTime, err))
	}
	if e.Position, err = eventstore.ParsePosition(h[HeaderPosition]); err != nil {
		errs = append(errs, err)
	}
	e.Metadata = eventstore.Metadata{
		CorrelationID: h[HeaderCorrelationID], CausationID: h[HeaderCausationID], CommandID: h[HeaderCommandID],
		TraceParent: h[HeaderTraceParent], TraceState: h[HeaderTraceState],
	}
	if err := errors.Join(errs...); err != nil {
		return eventstore.Event{}, fmt.Errorf("relay: not an orderflow CloudEvent: %w", err)
	}
	return e, nil
}
