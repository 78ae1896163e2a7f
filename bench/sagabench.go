package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// sagaSection measures issue 5's figures: time from POST /v1/orders to
// OrderConfirmed at 200 and 500 orders/s, and the most sagas completed per
// second, with every role in one orderflow process.
func sagaSection(ctx context.Context, log *slog.Logger, cfg config, m machine) (body string, err error) {
	dir, err := os.MkdirTemp("", "orderflow-bench-saga")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	bin, err := buildOrderflow(ctx, dir)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Saga: order to confirmation\n\n%s\n", m.markdown())
	t := table{header: []string{"Load", "SKUs", "Orders", "Confirmed", "p50", "p90", "p99", "max", "Sagas/s", "Check"}}
	where := table{header: []string{"Step", "Waits p50 / p99", "Takes p50 / p99"}}
	var problems []string
	for _, point := range []struct {
		name  string
		rate  int // 0: saturation, closed loop
		skus  int
		roles string
		env   []string
	}{
		{"200 orders/s", 200, sagaCatalog, allRoles, nil}, {"500 orders/s", 500, sagaCatalog, allRoles, nil},
		{"saturation (64 clients)", 0, sagaCatalog, allRoles, nil},
		{"200 orders/s, one hot SKU", 200, 1, allRoles, nil}, {"500 orders/s, one hot SKU", 500, 1, allRoles, nil},
		{"500 orders/s, the saga's roles only", 500, sagaCatalog, sagaRoles, nil},
		{"200 orders/s, views taking turns", 200, sagaCatalog, allRoles, []string{takingTurns}},
		{"500 orders/s, views taking turns", 500, sagaCatalog, allRoles, []string{takingTurns}},
	} {
		row, hops, probs, err := sagaPoint(ctx, log, cfg, bin, dir, point.rate, point.skus, point.roles, point.env...)
		if err != nil {
			return "", err
		}
		if point.rate == 500 && point.skus == sagaCatalog && point.roles == allRoles && point.env == nil {
			for _, h := range hops {
				where.add(h...)
			}
		}
		t.add(append([]string{point.name, fmt.Sprint(point.skus)}, append(row, validity(probs))...)...)
		problems = append(problems, probs...)
	}
	b.WriteString(t.String() + "\n")
	b.WriteString(problemList("saga", problems))
	b.WriteString(`- Latency: from the moment an order was due to be sent (open loop, so a
  slow system is charged for the orders it delays) to the recorded time of
  its OrderConfirmed event. The saga crosses the relay and Kafka three times:
  OrderPlaced → inventory → InventoryReserved → payment (the payment-provider
  role over HTTP, 20 ms simulated latency) → PaymentCaptured → order.
- Start: each point runs on a fresh database and process, and its load starts
  once a probe order has been confirmed (every consumer group has joined),
  so the figures are steady state, not start-up.
- Sagas/s: orders confirmed per second of the measured window; at saturation
  64 clients post as fast as they are answered.
- One process runs every role (command, query, relay, projector, saga,
  payment-provider) on this machine, beside PostgreSQL and the Kafka broker;
  in "the saga's roles only" only the roles on the saga's path (command,
  relay, saga, payment-provider), as when the projector and query API run
  on other machines. The projector's five views update for every saga
  event, and on 2 cores that work competes with the saga's own for the CPU
  (PostgreSQL's above all).
- "Views taking turns": every role, with ` + "`" + takingTurns + "`" + `: the
  five projections run one view transaction at a time, so each gathers more
  events into fewer transactions while it waits, and the projector takes
  less of the machine. What it costs the views is in the projections
  section (command to view with the same setting).
  Check: every order placed was confirmed (stock is ample; the provider
  declines nothing) and nothing failed.
`)
	b.WriteString("\n### Where the time goes at 500 orders/s (100 SKUs)\n\n" + where.String() + "\n")
	b.WriteString(`- From orderflow's own histograms over the whole point (warm-up included):
  ` + "`orderflow_eventstore_append_seconds`" + ` and
  ` + "`orderflow_eventstore_append_transaction_seconds`" + `,
  ` + "`orderflow_relay_delay_seconds`" + ` (from the start of the event's append
  transaction, its recorded time), and per reaction
  ` + "`orderflow_saga_trigger_age_seconds`" + ` (from the trigger's append to the
  reaction starting: the relay, Kafka and the consumer's queue) and
  ` + "`orderflow_saga_reaction_seconds`" + ` (the reaction: reads, provider call,
  append). Quantiles are interpolated inside the buckets (..., 25, 50, 100,
  250, 500 ms, ...): read them as bounds.

`)
	return b.String(), nil
}

// The roles of the orderflow process a point runs: every one, or only those
// on the saga's path (no query API, no projector: the views are not on the
// way from an order to its confirmation).
const (
	allRoles  = "command,query,relay,projector,saga,payment-provider"
	sagaRoles = "command,relay,saga,payment-provider"
)

// sagaCatalog is how many SKUs the orders of the main points spread over.
const sagaCatalog = 100

// sagaPoint runs one load point on a fresh database and topics: orders of
// one line each, for a SKU drawn from skus of them.
// takingTurns is the setting of the points where the views take turns.
const takingTurns = "ORDERFLOW_PROJECTOR_MAX_BATCHES=1"

func sagaPoint(ctx context.Context, log *slog.Logger, cfg config, bin, dir string, rate, skus int, roles string, env ...string) (row []string, hops [][]string, problems []string, err error) {
	db, err := createDatabase(ctx, cfg.databaseURL, false)
	if err != nil {
		return nil, nil, nil, err
	}
	defer func() { err = errors.Join(err, db.drop(context.WithoutCancel(ctx))) }()
	c, err := startOrderflow(ctx, log, bin, db.url, dir,
		append(append(db.kafkaEnv(cfg.kafkaBrokers), "ORDERFLOW_ROLES="+roles,
			"ORDERFLOW_ORDER_DEADLINE=10m", "ORDERFLOW_LOG_LEVEL=warn"), env...)...)
	if err != nil {
		return nil, nil, nil, err
	}
	defer func() {
		if stopErr := c.stop(); stopErr != nil {
			problems = append(problems, stopErr.Error())
		}
	}()
	client := newLoadClient(256)
	post := func(path, body string) (int, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+path, bytes.NewBufferString(body))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return res.StatusCode, b, err
	}
	for sku := range skus {
		if code, body, err := post(fmt.Sprintf("/v1/inventory/SKU-%d/stock", sku), `{"quantity":1000000}`); err != nil || code != 200 {
			return nil, nil, nil, fmt.Errorf("add stock: %d %s %v", code, body, err)
		}
	}
	// Steady state, not start-up: the load starts once one order has gone
	// through the whole saga (every consumer group has joined and got its
	// partitions).
	if code, body, err := post("/v1/orders", `{"customer_id":"probe","lines":[{"sku":"SKU-0","quantity":1,"unit_price_cents":1}]}`); err != nil || code != 201 {
		return nil, nil, nil, fmt.Errorf("probe order: %d %s %v", code, body, err)
	}
	for ready := time.Now().Add(time.Minute); ; {
		var n int
		if err := queryRow(ctx, db.url, `select count(*) from events where type = 'OrderConfirmed'`, &n); err == nil && n > 0 {
			break
		}
		if time.Now().After(ready) {
			return nil, nil, nil, errors.New("the probe order was not confirmed within a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}

	var (
		mu    sync.Mutex
		sent  = map[string]time.Time{} // order id → when it was due
		fails errorTally
	)
	placeAt := func(due time.Time, n int) {
		code, body, err := post("/v1/orders", fmt.Sprintf(`{"customer_id":"c-%d","lines":[{"sku":"SKU-%d","quantity":1,"unit_price_cents":1999}]}`, n%100, (n*7919)%skus))
		var acc struct {
			OrderID string `json:"order_id"`
		}
		if err == nil && code == 201 {
			err = json.Unmarshal(body, &acc)
		} else if err == nil {
			err = fmt.Errorf("status %d: %s", code, body)
		}
		if err != nil {
			if ctx.Err() == nil {
				fails.add(err)
			}
			return
		}
		mu.Lock()
		sent[acc.OrderID] = due
		mu.Unlock()
	}
	start := time.Now().Add(cfg.warmup)
	end := start.Add(cfg.duration)
	var wg sync.WaitGroup
	if rate > 0 {
		interval := time.Second / time.Duration(rate)
		for i := 0; ; i++ {
			due := time.Now().Truncate(0)
			if i > 0 {
				due = start.Add(-cfg.warmup).Add(time.Duration(i) * interval)
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
			}
			if due.After(end) || ctx.Err() != nil {
				break
			}
			wg.Go(func() { placeAt(due, i) })
		}
	} else {
		for w := range 64 {
			wg.Go(func() {
				for n := w; time.Now().Before(end) && ctx.Err() == nil; n += 64 {
					placeAt(time.Now(), n)
				}
			})
		}
	}
	wg.Wait()
	problems = append(problems, fails.problems()...)

	// Wait until every placed order is confirmed, then read the times.
	pool, err := pgxpool.New(ctx, db.url)
	if err != nil {
		return nil, nil, nil, err
	}
	defer pool.Close()
	deadline := time.Now().Add(3 * time.Minute)
	var confirmed int
	for time.Now().Before(deadline) {
		// Not counting the probe order.
		if err := pool.QueryRow(ctx, `select count(*) - 1 from events where type = 'OrderConfirmed'`).Scan(&confirmed); err == nil && confirmed >= len(sent) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if confirmed < len(sent) {
		problems = append(problems, fmt.Sprintf("only %d of %d orders confirmed within 3 minutes", confirmed, len(sent)))
	}
	rows, err := pool.Query(ctx, `select substr(stream_id, 7), recorded_at from events where type = 'OrderConfirmed'`)
	if err != nil {
		return nil, nil, nil, err
	}
	var lat []time.Duration
	inWindow := 0
	for rows.Next() {
		var id string
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			rows.Close()
			return nil, nil, nil, err
		}
		due, ok := sent[id]
		if !ok || due.Before(start) { // warm-up orders do not count
			continue
		}
		lat = append(lat, at.Sub(due))
		if !at.After(end) {
			inWindow++
		}
	}
	rows.Close()
	l := summarise(lat)
	measured := 0
	for _, due := range sent {
		if !due.Before(start) {
			measured++
		}
	}
	hops, err = sagaHops(ctx, c.url)
	if err != nil {
		problems = append(problems, err.Error())
	}
	return []string{fmt.Sprint(measured), fmt.Sprint(len(lat)), ms(l.pct(0.50)), ms(l.pct(0.90)), ms(l.pct(0.99)), ms(l.max()),
		perSecond(float64(inWindow) / cfg.duration.Seconds())}, hops, problems, nil
}

// sagaHops reads from the process's own histograms where a saga's time
// goes: the relay's delay, and for each reaction on the path to
// confirmation how long its trigger waited and how long it took.
func sagaHops(ctx context.Context, base string) ([][]string, error) {
	relay, err := scrapeHistogram(ctx, base, `orderflow_relay_delay_seconds_bucket{`)
	if err != nil {
		return nil, err
	}
	appendTime, err := scrapeHistogram(ctx, base, `orderflow_eventstore_append_seconds_bucket{`)
	if err != nil {
		return nil, err
	}
	txTime, err := scrapeHistogram(ctx, base, `orderflow_eventstore_append_transaction_seconds_bucket{`)
	if err != nil {
		return nil, err
	}
	out := [][]string{
		{"append: call → committed (every append: the API's and the reactions')", "—", ms(appendTime.quantile(0.5)) + " / " + ms(appendTime.quantile(0.99))},
		{"append transaction (one batch of appends, to its commit)", "—", ms(txTime.quantile(0.5)) + " / " + ms(txTime.quantile(0.99))},
		{"relay: transaction start → broker ack (every event)", ms(relay.quantile(0.5)) + " / " + ms(relay.quantile(0.99)), "—"},
	}
	for _, r := range []struct{ name, what string }{
		{"inventory", "inventory (reserves on OrderPlaced; also commits on OrderConfirmed)"},
		{"payment-on-inventory", "payment (charges on InventoryReserved; provider 20 ms)"},
		{"order-on-payment", "order (confirms on PaymentCaptured)"},
	} {
		wait, err := scrapeHistogram(ctx, base, `orderflow_saga_trigger_age_seconds_bucket{reaction="`+r.name+`",`)
		if err != nil {
			return nil, err
		}
		took, err := scrapeHistogram(ctx, base, `orderflow_saga_reaction_seconds_bucket{reaction="`+r.name+`",`)
		if err != nil {
			return nil, err
		}
		out = append(out, []string{r.what, ms(wait.quantile(0.5)) + " / " + ms(wait.quantile(0.99)), ms(took.quantile(0.5)) + " / " + ms(took.quantile(0.99))})
	}
	return out, nil
}
