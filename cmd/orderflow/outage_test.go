package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow/internal/dbtest"
	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/relay"
)

// privateBroker is a Kafka broker of the test's own, started by
// scripts/kafka.sh in a temporary directory, so the test can stop it.
type privateBroker struct {
	env  []string
	addr string
}

func MustPrivateBroker(t *testing.T) *privateBroker {
	t.Helper()
	b := &privateBroker{env: append(os.Environ(),
		"KAFKA_BROKERS=", // never reuse the shared broker
		"ORDERFLOW_KAFKA_DIR="+t.TempDir(),
		fmt.Sprintf("ORDERFLOW_KAFKA_PORT=%d", freePort(t)),
		fmt.Sprintf("ORDERFLOW_KAFKA_CONTROLLER_PORT=%d", freePort(t)),
		"ORDERFLOW_KAFKA_HEAP=-Xms128m -Xmx512m",
	)}
	b.Start(t)
	t.Cleanup(func() { b.Stop(t) })
	return b
}

func (b *privateBroker) script(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("../../scripts/kafka.sh", args...)
	cmd.Env = b.env
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kafka.sh %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

func (b *privateBroker) Start(t *testing.T) { b.addr = b.script(t) }
func (b *privateBroker) Stop(t *testing.T)  { b.script(t, "stop") }

// While Kafka is down, orders are still accepted (201), the relay's breaker
// opens and /readyz says degraded; when Kafka is back, every event arrives,
// in order per stream.
func TestKafkaOutageKeepsAcceptingOrders(t *testing.T) {
	// Not parallel: each of these runs whole orderflow processes; on 2 cores
	// they would starve each other and measure the machine, not the code.
	broker := MustPrivateBroker(t)
	prefix := kafkatest.UniquePrefix(t)
	p := MustStart(t, map[string]string{
		"DATABASE_URL":                         dbtest.MustURL(t),
		"KAFKA_BROKERS":                        broker.addr,
		"ORDERFLOW_ROLES":                      "command,relay",
		"ORDERFLOW_KAFKA_TOPIC_PREFIX":         prefix,
		"ORDERFLOW_KAFKA_PARTITIONS":           "2",
		"ORDERFLOW_KAFKA_BREAKER_FAILURES":     "2",
		"ORDERFLOW_KAFKA_BREAKER_OPEN_TIMEOUT": "1s",
		"ORDERFLOW_LOG_LEVEL":                  "info",
	})
	streams := map[string]bool{}
	post := func(n int) {
		for i := range n {
			body := fmt.Sprintf(`{"customer_id":"c-%d","lines":[{"sku":"SKU-1","quantity":1,"unit_price_cents":100}]}`, i)
			res, err := http.Post(p.base+"/v1/orders", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			var acc struct {
				StreamID string `json:"stream_id"`
			}
			err = json.NewDecoder(res.Body).Decode(&acc)
			res.Body.Close()
			if res.StatusCode != http.StatusCreated || err != nil {
				t.Fatalf("POST /v1/orders: %d, %v", res.StatusCode, err)
			}
			streams[acc.StreamID] = true
		}
	}
	readiness := func() (int, string) {
		res, err := http.Get(p.base + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}

	post(20)
	broker.Stop(t)
	post(30) // accepted while Kafka is down
	waitUntil(t, 2*time.Minute, "readiness reports degraded", func() bool {
		code, body := readiness()
		return code == http.StatusOK && strings.Contains(body, `"degraded"`)
	})
	if s := p.Metric(t, `orderflow_breaker_state{name="kafka"}`); s != 2 && s != 1 {
		t.Fatalf("breaker state metric = %v, want open (2) or half-open (1)", s)
	}
	// The relay's Consul check asks strictly: degraded is 429, a warning.
	if res := MustDo(t, http.MethodGet, p.base+"/readyz?strict=1", "", ""); res.status != http.StatusTooManyRequests || !strings.Contains(res.body, `"degraded"`) {
		t.Fatalf("strict readiness while Kafka is down: %d %s, want 429 degraded", res.status, res.body)
	}
	post(10)

	broker.Start(t)
	waitUntil(t, 2*time.Minute, "readiness recovers", func() bool {
		code, body := readiness()
		return code == http.StatusOK && strings.Contains(body, `"ready"`)
	})
	c := kafkatest.MustCollect(t, []string{broker.addr}, relay.Topics(prefix)...)
	msgs := c.WaitFor(t, 2*time.Minute, func(msgs []kafka.Message) bool {
		seen := map[string]bool{}
		for _, m := range msgs {
			seen[string(m.Key)] = true
		}
		for s := range streams {
			if !seen[s] {
				return false
			}
		}
		return true
	})
	d, err := kafkatest.Verify(msgs)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.IDs) != len(streams) {
		t.Fatalf("%d distinct events on Kafka, want %d (one OrderPlaced per order)", len(d.IDs), len(streams))
	}
	t.Logf("Kafka outage: %d orders accepted, all relayed after recovery, %d duplicates", len(streams), d.Duplicates)
}
