// Package kafkatest helps integration tests use the real Kafka broker that
// `make test` starts: its address, topic names no other test uses, and a
// verifier that reads whole topics from their first offset.
package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// MustBrokers returns the broker addresses in KAFKA_BROKERS. Without them the
// test fails: integration tests never skip.
func MustBrokers(tb testing.TB) []string {
	tb.Helper()
	v := os.Getenv("KAFKA_BROKERS")
	if v == "" {
		tb.Fatal("KAFKA_BROKERS is not set: run the tests with `make test`, which starts Kafka")
	}
	return strings.Split(v, ",")
}

// UniquePrefix returns a topic prefix no other test uses; the topics under
// it are deleted when tb ends.
func UniquePrefix(tb testing.TB) string {
	tb.Helper()
	brokers := MustBrokers(tb)
	var b [5]byte
	_, _ = rand.Read(b[:])
	prefix := "test-" + hex.EncodeToString(b[:])
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := DeleteTopics(ctx, brokers, prefix+"."); err != nil {
			tb.Logf("kafkatest: delete topics %s.*: %v", prefix, err)
		}
	})
	return prefix
}

// DeleteTopics deletes every topic whose name starts with prefix.
func DeleteTopics(ctx context.Context, brokers []string, prefix string) error {
	conn, err := kafka.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return err
	}
	parts, err := conn.ReadPartitions()
	conn.Close()
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	var topics []string
	for _, p := range parts {
		if strings.HasPrefix(p.Topic, prefix) && !seen[p.Topic] {
			seen[p.Topic] = true
			topics = append(topics, p.Topic)
		}
	}
	if len(topics) == 0 {
		return nil
	}
	res, err := (&kafka.Client{Addr: kafka.TCP(brokers...)}).DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range res.Errors {
		if e != nil {
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

// Partitions returns the partition ids of topic.
func Partitions(ctx context.Context, brokers []string, topic string) ([]int, error) {
	conn, err := kafka.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(topic)
	if err != nil {
		return nil, err
	}
	out := make([]int, len(parts))
	for i, p := range parts {
		out[i] = p.ID
	}
	return out, nil
}

// Collector reads every partition of some topics from the first offset on,
// for as long as the test runs.
type Collector struct {
	mu   sync.Mutex
	msgs []kafka.Message
	wake chan struct{}
}

// MustCollect starts reading topics; it stops when tb ends.
func MustCollect(tb testing.TB, brokers []string, topics ...string) *Collector {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &Collector{wake: make(chan struct{}, 1)}
	var wg sync.WaitGroup
	tb.Cleanup(func() { cancel(); wg.Wait() })
	for _, topic := range topics {
		parts, err := Partitions(ctx, brokers, topic)
		if err != nil {
			tb.Fatalf("partitions of %s: %v", topic, err)
		}
		for _, p := range parts {
			r := kafka.NewReader(kafka.ReaderConfig{
				Brokers: brokers, Topic: topic, Partition: p,
				MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 100 * time.Millisecond,
			})
			wg.Go(func() {
				defer r.Close()
				for {
					m, err := r.ReadMessage(ctx)
					if err != nil {
						if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
							tb.Logf("kafkatest: read %s/%d: %v", topic, p, err)
						}
						return
					}
					c.mu.Lock()
					c.msgs = append(c.msgs, m)
					c.mu.Unlock()
					select {
					case c.wake <- struct{}{}:
					default:
					}
				}
			})
		}
	}
	return c
}

// WaitFor returns the messages read so far once done says they are enough,
// or fails the test after timeout.
func (c *Collector) WaitFor(tb testing.TB, timeout time.Duration, done func([]kafka.Message) bool) []kafka.Message {
	tb.Helper()
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		msgs := append([]kafka.Message(nil), c.msgs...)
		c.mu.Unlock()
		if done(msgs) {
			return msgs
		}
		select {
		case <-c.wake:
		case <-deadline:
			tb.Fatalf("kafkatest: condition not met after %s with %d messages", timeout, len(msgs))
		}
	}
}

// Header returns the value of a message header, or "".
func Header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// HeaderInt returns a header parsed as an integer, or -1.
func HeaderInt(m kafka.Message, key string) int64 {
	n, err := strconv.ParseInt(Header(m, key), 10, 64)
	if err != nil {
		return -1
	}
	return n
}
