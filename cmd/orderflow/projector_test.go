package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/api/apitest"
	"github.com/orderflow/orderflow/eventcodec"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/internal/dbtest"
	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/projector"
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
		// The read side only; the saga tests run every role.
		"ORDERFLOW_ROLES": "command,query,relay,projector",
		// A loaded 2-core CI machine may take longer than the default bound
		// while consumer groups join; the bound's own behaviour is tested in query/.
		"ORDERFLOW_MIN_VERSION_WAIT": "15s",
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
	// Not parallel: each of these runs whole orderflow processes; on 2 cores
	// they would starve each other and measure the machine, not the code.
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
	// Orders that the start-up backfill applied are duplicates to the live
	// consumer and not counted, so only ask that live applies were measured.
	if n := p.Metric(t, `orderflow_projection_freshness_seconds_count{projection="order_details"}`); n < 1 {
		t.Fatalf("freshness histogram counted %v applies, want some", n)
	}
	// Delivery is the part of freshness before the handler: every applied
	// message's delivery precedes its apply.
	delivered := p.Metric(t, `orderflow_projection_delivery_seconds_count{projection="order_details"}`)
	deliverySum := p.Metric(t, `orderflow_projection_delivery_seconds_sum{projection="order_details"}`)
	freshnessSum := p.Metric(t, `orderflow_projection_freshness_seconds_sum{projection="order_details"}`)
	if delivered < 1 || deliverySum > freshnessSum {
		t.Fatalf("delivery histogram: %v messages taking %vs in all, freshness %vs in all; want some, taking less", delivered, deliverySum, freshnessSum)
	}
	if n := p.Metric(t, `orderflow_projection_batch_seconds_count{projection="order_details"}`); n < 1 {
		t.Fatalf("apply transaction histogram counted %v transactions, want some", n)
	}
}

// A query with min_version reads its own write: POST then GET answers the
// new order, not a 404.
func TestPostThenReadYourWrite(t *testing.T) {
	// Not parallel: each of these runs whole orderflow processes; on 2 cores
	// they would starve each other and measure the machine, not the code.
	env, _ := fullEnv(t)
	p := MustStart(t, env)
	for i := range 5 {
		id, version := postOrder(t, p.base, fmt.Sprintf("ryw-%d", i))
		res, err := http.Get(fmt.Sprintf("%s/v1/orders/%s?min_version=%d", p.base, id, version))
		if err != nil {
			t.Fatal(err)
		}
		var order struct {
			OrderID string `json:"order_id"`
			Status  string `json:"status"`
			Version int64  `json:"version"`
		}
		err = json.NewDecoder(res.Body).Decode(&order)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || err != nil || order.OrderID != id || order.Version < version || order.Status != "pending" {
			t.Fatalf("GET with min_version: %d %+v %v", res.StatusCode, order, err)
		}
	}
}

// A rebuild while orders keep coming: every query during it answers 200,
// and afterwards the view equals a fresh rebuild.
func TestRebuildDuringLiveWrites(t *testing.T) {
	// Not parallel: each of these runs whole orderflow processes; on 2 cores
	// they would starve each other and measure the machine, not the code.
	env, pool := fullEnv(t)
	const seeded = 10_000 // enough history for the rebuild to overlap the traffic
	ids := seedOrders(t, pool, seeded)
	p := MustStart(t, env)
	waitUntil(t, 3*time.Minute, "the seeded orders reach the view", func() bool {
		var n int
		_ = pool.QueryRow(context.Background(), "select count(*) from order_details").Scan(&n)
		return n == seeded
	})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wrote, read atomic.Int64
	writes := make(chan int, 1)
	go func() { // keep writing during the rebuild
		n := 0
		for ctx.Err() == nil {
			body := fmt.Sprintf(`{"customer_id":"live-%d","lines":[{"sku":"SKU-2","quantity":1,"unit_price_cents":10}]}`, n%4)
			res, err := http.Post(p.base+"/v1/orders", "application/json", strings.NewReader(body))
			if err == nil {
				res.Body.Close()
				n++
				wrote.Add(1)
			}
		}
		writes <- n
	}()
	queries := make(chan map[int]int, 1)
	go func() { // and keep reading
		codes := map[int]int{}
		for i := 0; ctx.Err() == nil; i++ {
			for _, path := range []string{"/v1/orders/" + ids[i%len(ids)], "/v1/orders?customer_id=c-1&limit=5"} {
				res, err := http.Get(p.base + path)
				if err != nil {
					codes[-1]++
					continue
				}
				res.Body.Close()
				codes[res.StatusCode]++
				read.Add(1)
			}
		}
		queries <- codes
	}()
	traffic := func(what string) { // some traffic on both sides of the rebuild
		w, r := wrote.Load(), read.Load()
		waitUntil(t, time.Minute, what, func() bool { return wrote.Load() >= w+10 && read.Load() >= r+50 })
	}
	traffic("traffic before the rebuild")

	var backfilled time.Time
	if err := pool.QueryRow(context.Background(), `select built_at from projection_builds where projection = 'order_details'`).Scan(&backfilled); err != nil {
		t.Fatal(err)
	}
	spec := apitest.MustValidator(t)
	res, err := http.Post(p.base+"/admin/projections/order_details/rebuild", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	spec.CheckResponse(t, "POST", "/admin/projections/order_details/rebuild", res.StatusCode, res.Header, body)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("start rebuild: %d", res.StatusCode)
	}
	if res, err := http.Get(p.base + "/admin/projections"); err == nil {
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		spec.CheckResponse(t, "GET", "/admin/projections", res.StatusCode, res.Header, body)
	}
	var built time.Time
	waitUntil(t, 2*time.Minute, "the rebuild swaps", func() bool {
		var rebuilding bool
		err := pool.QueryRow(context.Background(), `select exists (select 1 from projection_rebuilds where projection = 'order_details'),
			(select built_at from projection_builds where projection = 'order_details')`).Scan(&rebuilding, &built)
		return err == nil && !rebuilding && built.After(backfilled)
	})
	traffic("traffic after the rebuild")
	stop()
	written, codes := <-writes, <-queries
	if codes[http.StatusOK] == 0 || len(codes) != 1 {
		t.Fatalf("queries during the rebuild answered %v; want only 200s", codes)
	}
	total := seeded + written
	waitUntil(t, 2*time.Minute, "the view catches up", func() bool {
		var n int
		_ = pool.QueryRow(context.Background(), "select count(*) from order_details").Scan(&n)
		return n == total
	})
	live, err := projector.OrderDetails{}.Snapshot(context.Background(), pool, projector.Live)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := projectionsCLI(env, "rebuild", "order_details"); err != nil {
		t.Fatalf("orderflow projections rebuild: %v\n%s", err, out)
	}
	fresh, err := projector.OrderDetails{}.Snapshot(context.Background(), pool, projector.Live)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(live, fresh) {
		t.Fatalf("the view after the live rebuild (%d rows) differs from a fresh rebuild (%d rows)", len(live), len(fresh))
	}
	t.Logf("rebuild during %d live writes; queries answered %v", written, codes)
}

// seedOrders appends n placed orders straight to the event store.
func seedOrders(t *testing.T, pool *pgxpool.Pool, n int) []string {
	t.Helper()
	store, err := eventstore.New(pool, eventstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ids := make([]string, n)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				id := orderflow.NewOrderID()
				ids[i] = id.String()
				data, _ := eventcodec.Encode(orderflow.OrderPlaced{OrderID: id, CustomerID: orderflow.CustomerID(fmt.Sprintf("c-%d", i%4)),
					Lines: []orderflow.OrderLine{{SKU: "SKU-1", Quantity: 1, UnitPriceCents: 100}}, TotalCents: 100, PlacedAt: time.Now()})
				if _, err := store.Append(context.Background(), eventstore.Append{Streams: []eventstore.StreamAppend{{
					StreamID: id.Stream(), Expected: eventstore.NoStream,
					Events: []eventstore.EventData{{Type: orderflow.EventOrderPlaced, SchemaVersion: 1, Data: data}},
				}}}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return ids
}

// Projection lag is on /metrics: orders the relay has not published yet are
// lag for the projections that fold order streams (and not for stock);
// once a relay publishes them and the projections apply them, it is 0.
func TestProjectionLagOnMetrics(t *testing.T) {
	// Not parallel: each of these runs whole orderflow processes; on 2 cores
	// they would starve each other and measure the machine, not the code.
	env, _ := fullEnv(t)
	env["ORDERFLOW_ROLES"] = "command,projector" // no relay: the orders wait in the log
	p := MustStart(t, env)
	const orders = 4
	for range orders {
		postOrder(t, p.base, "c-lag")
	}
	lag := func(projection string) (events, seconds float64) {
		return p.Metric(t, `orderflow_projection_lag_events{projection="`+projection+`"}`),
			p.Metric(t, `orderflow_projection_lag_seconds{projection="`+projection+`"}`)
	}
	waitUntil(t, time.Minute, "the unpublished orders counted as lag", func() bool {
		events, seconds := lag("order_details")
		sagaEvents, _ := lag("saga_timeline")
		stockEvents, stockSeconds := lag("stock")
		return events == orders && seconds > 0 && sagaEvents == orders && stockEvents == 0 && stockSeconds == 0
	})
	relayEnv := maps.Clone(env)
	relayEnv["ORDERFLOW_ROLES"] = "relay"
	MustStart(t, relayEnv)
	waitUntil(t, 2*time.Minute, "no lag once the orders are published and applied", func() bool {
		for _, projection := range []string{"order_details", "orders_by_customer", "daily_sales", "saga_timeline"} {
			if events, seconds := lag(projection); events != 0 || seconds != 0 {
				return false
			}
		}
		return true
	})
}

// The projections CLI while the API serves: status lists every projection;
// rebuild --all rebuilds each one, its progress bar ending at 100% and
// done, while orders keep coming, and every order still reaches the view; a
// name it does not know is refused with the names it knows.
func TestProjectionsCLI(t *testing.T) {
	// Not parallel: each of these runs whole orderflow processes; on 2 cores
	// they would starve each other and measure the machine, not the code.
	env, pool := fullEnv(t)
	p := MustStart(t, env)
	const first = 10
	for i := range first {
		postOrder(t, p.base, fmt.Sprintf("cli-%d", i%2))
	}
	cli := func(args ...string) (string, error) { return projectionsCLI(env, args...) }
	out, err := cli("status")
	if err != nil || !strings.Contains(out, "PROJECTION") {
		t.Fatalf("projections status: %v\n%s", err, out)
	}
	for _, pr := range projector.All() {
		if !strings.Contains(out, pr.Name()) {
			t.Errorf("projections status does not list %s:\n%s", pr.Name(), out)
		}
	}

	ctx, stop := context.WithCancel(context.Background())
	posted := make(chan int, 1)
	go func() { // orders keep coming during the rebuilds
		n := 0
		for ctx.Err() == nil {
			res, err := http.Post(p.base+"/v1/orders", "application/json",
				strings.NewReader(`{"customer_id":"cli-live","lines":[{"sku":"SKU-3","quantity":1,"unit_price_cents":10}]}`))
			if err == nil {
				if res.StatusCode == http.StatusCreated {
					n++
				}
				res.Body.Close()
			}
		}
		posted <- n
	}()
	out, err = cli("rebuild", "--all")
	stop()
	live := <-posted
	if err != nil {
		t.Fatalf("projections rebuild --all: %v\n%s", err, out)
	}
	for _, pr := range projector.All() {
		done := false
		for _, line := range strings.Split(strings.ReplaceAll(out, "\r", "\n"), "\n") {
			if strings.HasPrefix(line, pr.Name()+" ") && strings.Contains(line, "100%") && strings.Contains(line, "ETA done") {
				done = true
			}
		}
		if !done {
			t.Errorf("no finished progress bar for %s:\n%s", pr.Name(), out)
		}
	}
	waitUntil(t, 2*time.Minute, "every order in the rebuilt view", func() bool {
		var n int
		_ = pool.QueryRow(context.Background(), "select count(*) from order_details").Scan(&n)
		return n == first+live
	})

	out, err = cli("rebuild", "nosuch")
	if err == nil || !strings.Contains(out, `unknown projection "nosuch"`) || !strings.Contains(out, "order_details") {
		t.Fatalf("rebuild of an unknown projection: %v\n%s", err, out)
	}
	t.Logf("rebuilt every projection while %d orders came in", live)
}

// projectionsCLI runs `orderflow projections args...` on env's database and
// returns what it printed.
func projectionsCLI(env map[string]string, args ...string) (string, error) {
	cmd := exec.Command(os.Args[0], append([]string{"projections"}, args...)...)
	cmd.Env = append(os.Environ(), "ORDERFLOW_TEST_RUN_MAIN=1", "DATABASE_URL="+env["DATABASE_URL"])
	out, err := cmd.CombinedOutput()
	return string(out), err
}
