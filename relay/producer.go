package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	metadataAPI "github.com/segmentio/kafka-go/protocol/metadata"
	produceAPI "github.com/segmentio/kafka-go/protocol/produce"
)

// BrokerProducer writes a relay batch with one produce request per leader
// broker, holding every partition's records of the batch, and returns once
// the broker acknowledged all of them (acks from all in-sync replicas).
//
// kafka-go's Writer sends one request per partition: with four topics of six
// partitions, a batch of a few dozen events became up to 24 requests, each
// scheduled and answered on its own; under load that made a publish take
// 15–50 ms. The Java producer groups a broker's partitions into one request;
// so does this. Partitions are chosen exactly as the Writer chooses them
// (kafka.Murmur2Balancer over the topic's partitions 0..n-1), so a stream's
// events land where they always did.
//
// Calls must not overlap, or two batches for one partition could be in
// flight at once and land out of order; the relay makes one call at a time.
// On an error some partitions may have been written: the relay sends the
// whole batch again, and consumers skip what they had.
type BrokerProducer struct {
	addr      net.Addr
	transport *kafka.Transport
	balancer  kafka.Murmur2Balancer
	timeout   time.Duration
}

// NewProducer returns a BrokerProducer bootstrapping from brokers.
func NewProducer(brokers []string) *BrokerProducer {
	return &BrokerProducer{
		addr: kafka.TCP(brokers...),
		// Metadata (partition counts and leaders) is cached and
		// refreshed in the background every metadataTTL.
		transport: &kafka.Transport{MetadataTTL: metadataTTL},
		timeout:   10 * time.Second,
	}
}

// Close closes the idle connections.
func (p *BrokerProducer) Close() error {
	p.transport.CloseIdleConnections()
	return nil
}

// topicLayout is what the producer needs of a topic's metadata.
type topicLayout struct {
	partitions []int         // 0..n-1, for the balancer
	leader     map[int]int32 // partition → leader broker id
}

// WriteMessages implements Producer. A partition refused with a temporary
// error (a topic or leader the cached metadata does not know yet) is sent
// again, alone, a few times, after the metadata had time to refresh; any
// other error is returned at once.
func (p *BrokerProducer) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	pending := msgs
	for attempt := 1; ; attempt++ {
		failed, err := p.write(ctx, pending)
		if err == nil {
			return nil
		}
		if attempt == produceAttempts || !temporary(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * metadataTTL):
		}
		pending = failed
	}
}

const (
	// metadataTTL is how long the transport caches partition counts and
	// leaders; it refreshes them in the background that often.
	metadataTTL = time.Second
	// produceAttempts bounds the attempts at a partition refused with a
	// temporary error; the relay retries the rest through its breaker.
	produceAttempts = 3
)

// temporary reports whether every error joined in err is a temporary Kafka
// error.
func temporary(err error) bool {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			if !temporary(e) {
				return false
			}
		}
		return true
	}
	var kerr kafka.Error
	return errors.As(err, &kerr) && kerr.Temporary()
}

// write sends msgs, one request per leader broker, and returns, in their
// order, the messages of the partitions that were not acknowledged.
func (p *BrokerProducer) write(ctx context.Context, msgs []kafka.Message) ([]kafka.Message, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	layouts, err := p.layouts(ctx, msgs)
	if err != nil {
		return msgs, err
	}

	// Group the records by leader, topic and partition, each partition's in
	// the order given.
	var (
		leaders []int32
		parts   = map[int32][]partKey{}
		records = map[partKey][]kafka.Record{}
		indexes = map[partKey][]int{}
	)
	for i, m := range msgs {
		l := layouts[m.Topic]
		partition := p.balancer.Balance(m, l.partitions...)
		k := partKey{m.Topic, int32(partition)}
		if _, ok := records[k]; !ok {
			leader := l.leader[partition]
			if _, ok := parts[leader]; !ok {
				leaders = append(leaders, leader)
			}
			parts[leader] = append(parts[leader], k)
		}
		records[k] = append(records[k], kafka.Record{Time: m.Time, Key: kafka.NewBytes(m.Key), Value: kafka.NewBytes(m.Value), Headers: m.Headers})
		indexes[k] = append(indexes[k], i)
	}

	errs := make([]error, len(leaders))
	refused := make([][]partKey, len(leaders))
	var wg sync.WaitGroup
	for i, leader := range leaders {
		req := &produceAPI.Request{Acks: int16(kafka.RequireAll), Timeout: int32(p.timeout.Milliseconds())}
		for _, k := range parts[leader] {
			j := slices.IndexFunc(req.Topics, func(t produceAPI.RequestTopic) bool { return t.Topic == k.topic })
			if j < 0 {
				req.Topics = append(req.Topics, produceAPI.RequestTopic{Topic: k.topic})
				j = len(req.Topics) - 1
			}
			req.Topics[j].Partitions = append(req.Topics[j].Partitions, produceAPI.RequestPartition{
				Partition: k.partition,
				RecordSet: protocol.RecordSet{Records: kafka.NewRecordReader(records[k]...)},
			})
		}
		wg.Go(func() { refused[i], errs[i] = p.produce(ctx, req, parts[leader]) })
	}
	wg.Wait()
	var failed []int
	for _, ks := range refused {
		for _, k := range ks {
			failed = append(failed, indexes[k]...)
		}
	}
	slices.Sort(failed)
	out := make([]kafka.Message, len(failed))
	for i, j := range failed {
		out[i] = msgs[j]
	}
	return out, errors.Join(errs...)
}

// partKey names a partition of a topic.
type partKey struct {
	topic     string
	partition int32
}

// produce sends one request (the transport routes it to the partitions'
// leader) and returns the partitions it did not acknowledge: all of sent if
// the request failed.
func (p *BrokerProducer) produce(ctx context.Context, req *produceAPI.Request, sent []partKey) ([]partKey, error) {
	res, err := p.transport.RoundTrip(ctx, p.addr, req)
	if err != nil {
		return sent, fmt.Errorf("relay: produce: %w", err)
	}
	var (
		refused []partKey
		errs    []error
	)
	for _, t := range res.(*produceAPI.Response).Topics {
		for _, part := range t.Partitions {
			if part.ErrorCode != 0 {
				refused = append(refused, partKey{t.Topic, part.Partition})
				errs = append(errs, fmt.Errorf("relay: produce to %s/%d: %w", t.Topic, part.Partition, kafka.Error(part.ErrorCode)))
			}
		}
	}
	return refused, errors.Join(errs...)
}

// layouts returns the partitions and leaders of the messages' topics.
func (p *BrokerProducer) layouts(ctx context.Context, msgs []kafka.Message) (map[string]topicLayout, error) {
	var names []string
	for _, m := range msgs {
		if !slices.Contains(names, m.Topic) {
			names = append(names, m.Topic)
		}
	}
	res, err := p.transport.RoundTrip(ctx, p.addr, &metadataAPI.Request{TopicNames: names})
	if err != nil {
		return nil, fmt.Errorf("relay: metadata: %w", err)
	}
	out := make(map[string]topicLayout, len(names))
	for _, t := range res.(*metadataAPI.Response).Topics {
		if t.ErrorCode != 0 {
			return nil, fmt.Errorf("relay: topic %s: %w", t.Name, kafka.Error(t.ErrorCode))
		}
		l := topicLayout{partitions: make([]int, len(t.Partitions)), leader: make(map[int]int32, len(t.Partitions))}
		for i, part := range t.Partitions {
			if part.ErrorCode != 0 && part.LeaderID < 0 {
				return nil, fmt.Errorf("relay: topic %s partition %d: %w", t.Name, part.PartitionIndex, kafka.Error(part.ErrorCode))
			}
			l.partitions[i] = i
			l.leader[int(part.PartitionIndex)] = part.LeaderID
		}
		out[t.Name] = l
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("relay: topic %s: %w", n, kafka.UnknownTopicOrPartition)
		}
	}
	return out, nil
}
