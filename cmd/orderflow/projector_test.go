package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/dbtest"
	"github.com/orderflow/orderflow/internal/kafkatest"
)

// fullEnv is the environment of an orderflow running every role on a fresh
// database and its own topics.
func fullEnv(t *testing.T) (map[string]string, *pgxpool.Pool) {
	t.Helper()
	url := dbtest.MustURL(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return map[string]string{
		"DATABASE_URL":                 url,
		"KAFKA_BROKERS":                strings.Join(kafkatest.MustBrokers(t), ","),
		"ORDERFLOW_KAFKA_TOPIC_PREFIX": kafkatest.UniquePrefix(t),
		"ORDERFLOW_KAFKA_PARTITIONS":   "3",
		"ORDERFLOW_LOG_LEVEL":          "info",
	}, pool
}

func postOrder(t *testing.T, base string, customer string) (orderID string, version int64) {
	t.Helper()
	body := fmt.Sprintf(`{"customer_id":%q,"lines":[{"sku":"SKU-1","quantity":2,"unit_price_cents":150}]}`, customer)
	res, err := http.Post(base+"/v1/orders", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var acc struct {
		OrderID string `json:"order_id"`
		Version int64  `json:"version"`
	}
	if err := json.NewDecoder(res.Body).Decode(&acc); err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/orders: %d, %v", res.StatusCode, err)
	}
	return acc.OrderID, acc.Version
}

// Orders posted through the API reach every view through the relay and
// Kafka, and a rebuild started over the admin API swaps in the same rows.
func TestOrdersReachTheViewsThroughKafka(t *testing.T) {
	t.Parallel()
	env, pool := fullEnv(t)
	p := MustStart(t, env)
	const orders = 30
	for i := range orders {
		postOrder(t, p.base, fmt.Sprintf("c-%d", i%3))
	}
	count := func(table string) int {
		var n int
		if err := pool.QueryRow(context.Background(), "select count(*) from "+table).Scan(&n); err != nil {
			return -1
		}
		return n
	}
	waitUntil(t, 2*time.Minute, "every order in every view", func() bool {
		var placed int
		_ = pool.QueryRow(context.Background(), "select coalesce(sum(orders_placed), 0) from daily_sales").Scan(&placed)
		return count("order_details") == orders && count("orders_by_customer") == orders && placed == orders
	})
	if n := p.Metric(t, `orderflow_projection_freshness_seconds_count{projection="order_details"}`); n < orders {
		t.Fatalf("freshness histogram counted %v applies, want at least %d", n, orders)
	}
}
