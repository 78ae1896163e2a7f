package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/internal/dbtest"
	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/relay"
)

// relayEnv is the environment of a relay-only orderflow on a fresh database
// and its own topics.
func relayEnv(t *testing.T) (map[string]string, *eventstore.Store) {
	t.Helper()
	url := dbtest.MustURL(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store, err := eventstore.New(pool, eventstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	return map[string]string{
		"DATABASE_URL":                 url,
		"KAFKA_BROKERS":                strings.Join(kafkatest.MustBrokers(t), ","),
		"ORDERFLOW_ROLES":              "relay",
		"ORDERFLOW_KAFKA_TOPIC_PREFIX": kafkatest.UniquePrefix(t),
		"ORDERFLOW_KAFKA_PARTITIONS":   "3",
		"ORDERFLOW_RELAY_BATCH_SIZE":   "200",
		"ORDERFLOW_LOG_LEVEL":          "info",
	}, store
}

// appendEvents appends n events over streams from 8 writers and returns
// their ids.
func appendEvents(t *testing.T, store *eventstore.Store, n, streams int) map[string]bool {
	t.Helper()
	ids := make(map[string]bool, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				id := uuid.Must(uuid.NewV7())
				_, err := store.Append(context.Background(), eventstore.Append{Streams: []eventstore.StreamAppend{{
					StreamID: fmt.Sprintf("order-%d", i%streams), Expected: eventstore.Any,
					Events: []eventstore.EventData{{ID: id, Type: "Test", Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}},
				}}})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ids[id.String()] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return ids
}

// waitDelivered waits until every id in want reached Kafka and checks the
// per-stream order.
func waitDelivered(t *testing.T, c *kafkatest.Collector, want map[string]bool) kafkatest.Delivery {
	t.Helper()
	var d kafkatest.Delivery
	c.WaitFor(t, 3*time.Minute, func(msgs []kafka.Message) bool {
		var err error
		if d, err = kafkatest.Verify(msgs); err != nil {
			t.Fatal(err)
		}
		for id := range want {
			if !d.IDs[id] {
				return false
			}
		}
		return true
	})
	return d
}

func TestRelayKilledMidBatchLosesNothing(t *testing.T) {
	// Not parallel: each of these runs whole orderflow processes; on 2 cores
	// they would starve each other and measure the machine, not the code.
	env, store := relayEnv(t)
	ids := appendEvents(t, store, 20_000, 100)

	first := MustStart(t, env) // creates the topics, then relays
	c := kafkatest.MustCollect(t, kafkatest.MustBrokers(t), relay.Topics(env["ORDERFLOW_KAFKA_TOPIC_PREFIX"])...)
	c.WaitFor(t, 2*time.Minute, func(msgs []kafka.Message) bool { return len(msgs) >= 3000 })
	first.Kill() // SIGKILL, in the middle of relaying the backlog

	MustStart(t, env)
	d := waitDelivered(t, c, ids)
	t.Logf("relay killed mid-batch: %d events delivered, %d duplicates after the restart", len(d.IDs), d.Duplicates)
}

func TestTwoRelaysExactlyOnePublishes(t *testing.T) {
	// Not parallel: each of these runs whole orderflow processes; on 2 cores
	// they would starve each other and measure the machine, not the code.
	env, store := relayEnv(t)
	a, b := MustStart(t, env), MustStart(t, env)
	c := kafkatest.MustCollect(t, kafkatest.MustBrokers(t), relay.Topics(env["ORDERFLOW_KAFKA_TOPIC_PREFIX"])...)

	var leader, standby *process
	waitUntil(t, time.Minute, "one relay leads", func() bool {
		la, lb := a.Metric(t, "orderflow_relay_leader"), b.Metric(t, "orderflow_relay_leader")
		switch {
		case la == 1 && lb == 0:
			leader, standby = a, b
		case la == 0 && lb == 1:
			leader, standby = b, a
		default:
			return false
		}
		return true
	})
	ids := appendEvents(t, store, 500, 10)
	waitDelivered(t, c, ids)
	if n := standby.Metric(t, "orderflow_relay_published_events_total"); n != 0 {
		t.Fatalf("the standby published %v events", n)
	}
	if n := leader.Metric(t, "orderflow_relay_published_events_total"); n < 500 {
		t.Fatalf("the leader published %v events, want at least 500", n)
	}

	leader.Kill()
	waitUntil(t, time.Minute, "the standby takes over", func() bool { return standby.Metric(t, "orderflow_relay_leader") == 1 })
	more := appendEvents(t, store, 500, 10)
	d := waitDelivered(t, c, more)
	t.Logf("after takeover: %d events delivered, %d duplicates", len(d.IDs), d.Duplicates)
}
