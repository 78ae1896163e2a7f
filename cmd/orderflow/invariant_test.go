package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// The saga's invariants over 1,000 orders on random stock, with 20% of
// payments declined and a provider outage in the middle: every order ends
// confirmed, rejected or cancelled; no SKU ever goes negative; nothing stays
// reserved; on hand = initial + added − confirmed; captured − refunded =
// the confirmed orders' totals.
func TestSagaInvariants(t *testing.T) {
	// Not parallel: each of these runs whole orderflow processes; on 2 cores
	// they would starve each other and measure the machine, not the code.
	env, pool := fullEnv(t)
	for k, v := range map[string]string{
		"ORDERFLOW_PAYMENT_LATENCY": "1ms", "ORDERFLOW_PAYMENT_FAILURE_RATE": "0.2",
		"ORDERFLOW_PAYMENT_BREAKER_FAILURES": "2", "ORDERFLOW_PAYMENT_BREAKER_OPEN_TIMEOUT": "300ms",
		"ORDERFLOW_DEADLINE_INTERVAL": "100ms", "ORDERFLOW_ORDER_DEADLINE": "5m", "ORDERFLOW_LOG_LEVEL": "info",
		"ORDERFLOW_ROLES": "all",
	} {
		env[k] = v
	}
	p := MustStart(t, env)
	rng := rand.New(rand.NewPCG(7, 11))
	const orders, skus = 1000, 8
	added := map[string]int64{}
	for i := range skus {
		sku := fmt.Sprintf("S%d", i)
		qty := 200 + rng.IntN(800) // enough that most orders confirm and some SKUs run out
		p.addStock(t, sku, qty)
		added[sku] += int64(qty)
	}
	bodies := make([]string, orders)
	for i := range bodies {
		var lines []string
		for _, j := range rng.Perm(skus)[:1+rng.IntN(3)] {
			lines = append(lines, fmt.Sprintf(`{"sku":"S%d","quantity":%d,"unit_price_cents":%d}`, j, 1+rng.IntN(3), 100+rng.IntN(900)))
		}
		bodies[i] = fmt.Sprintf(`{"customer_id":"c-%d","lines":[%s]}`, i%50, strings.Join(lines, ","))
	}
	post := func(from, to int) {
		var wg sync.WaitGroup
		work := make(chan int)
		for range 8 {
			wg.Go(func() {
				for i := range work {
					code, body := p.do(t, "POST", "/v1/orders", bodies[i])
					if code != 201 {
						t.Errorf("order %d: %d %s", i, code, body)
						continue
					}
					if i%10 == 0 { // a customer cancels now and then: pending or confirmed, whichever it is by then
						var acc struct {
							OrderID string `json:"order_id"`
						}
						_ = json.Unmarshal(body, &acc)
						if code, body := p.do(t, "POST", "/v1/orders/"+acc.OrderID+"/cancel", ""); code != 200 && code != 409 {
							t.Errorf("cancel %s: %d %s", acc.OrderID, code, body)
						}
					}
				}
			})
		}
		for i := from; i < to; i++ {
			work <- i
		}
		close(work)
		wg.Wait()
	}
	post(0, orders/2)
	if code, _ := p.do(t, "PUT", "/admin/outage", `{"down":true}`); code != 200 {
		t.Fatal("outage on")
	}
	post(orders/2, orders*3/4)
	waitUntil(t, time.Minute, "the payment breaker opens", func() bool {
		return p.Metric(t, `orderflow_breaker_state{name="payment-provider"}`) == 2
	})
	if code, _ := p.do(t, "PUT", "/admin/outage", `{"down":false}`); code != 200 {
		t.Fatal("outage off")
	}
	post(orders*3/4, orders)
	if t.Failed() {
		t.FailNow()
	}

	ctx := context.Background()
	// Every order ends, and every compensation its end calls for is made.
	settle := func() {
		waitUntil(t, 5*time.Minute, "every order ends and settles", func() bool {
			var open int
			err := pool.QueryRow(ctx, `
			with ends as (
				select substr(stream_id, 7) as id, (array_agg(type order by version desc) filter (where type in ('OrderConfirmed','OrderRejected','OrderCancelled')))[1] as final
				from events where stream_id like 'order-%' group by 1),
			res as (select substr(stream_id, 13) as id, (array_agg(type order by version desc))[1] as last from events where stream_id like 'reservation-%' group by 1),
			pay as (select substr(stream_id, 9) as id, (array_agg(type order by version desc))[1] as last from events where stream_id like 'payment-%' group by 1)
			select count(*) from ends
			left join res using (id) left join pay using (id)
			where final is null
			   or (final = 'OrderConfirmed' and (res.last is distinct from 'InventoryCommitted' or pay.last is distinct from 'PaymentCaptured'))
			   or (final <> 'OrderConfirmed' and res.last in ('InventoryReserved', 'InventoryCommitted'))
			   or (final <> 'OrderConfirmed' and pay.last = 'PaymentCaptured')`).Scan(&open)
			return err == nil && open == 0
		})
	}
	settle()
	// Customers cancel some confirmed orders: refunds and restocking.
	confirmed, err := pool.Query(ctx, `select substr(stream_id, 7) from events where type = 'OrderConfirmed' limit 40`)
	if err != nil {
		t.Fatal(err)
	}
	var toCancel []string
	for confirmed.Next() {
		var id string
		_ = confirmed.Scan(&id)
		toCancel = append(toCancel, id)
	}
	confirmed.Close()
	for _, id := range toCancel {
		if code, body := p.do(t, "POST", "/v1/orders/"+id+"/cancel", `{"reason":"changed my mind"}`); code != 200 {
			t.Fatalf("cancel confirmed %s: %d %s", id, code, body)
		}
	}
	settle()

	var ends = map[string]int{}
	const finals = `with finals as (
		select stream_id, (array_agg(type order by version desc) filter (where type in ('OrderConfirmed','OrderRejected','OrderCancelled')))[1] as final
		from events where stream_id like 'order-%' group by stream_id)`
	rows, err := pool.Query(ctx, finals+` select coalesce(final, 'none'), count(*) from finals group by 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var ty string
		var n int
		_ = rows.Scan(&ty, &n)
		ends[ty] = n
	}
	rows.Close()
	if total := ends["OrderConfirmed"] + ends["OrderRejected"] + ends["OrderCancelled"]; total != orders {
		t.Fatalf("%d orders ended (%v), want all %d", total, ends, orders)
	}

	// Stock: replay every SKU stream and check it at every step.
	type move struct {
		Quantity  int64 `json:"quantity"`
		Committed bool  `json:"committed"`
	}
	rows, err = pool.Query(ctx, `select stream_id, type, data from events where stream_id like 'sku-%' order by stream_id, version`)
	if err != nil {
		t.Fatal(err)
	}
	onHand, reserved := map[string]int64{}, map[string]int64{}
	for rows.Next() {
		var stream, ty string
		var data []byte
		if err := rows.Scan(&stream, &ty, &data); err != nil {
			t.Fatal(err)
		}
		var m move
		_ = json.Unmarshal(data, &m)
		sku := strings.TrimPrefix(stream, "sku-")
		switch ty {
		case "StockAdded":
			onHand[sku] += m.Quantity
		case "StockReserved":
			reserved[sku] += m.Quantity
		case "StockReleased":
			if m.Committed {
				onHand[sku] += m.Quantity
			} else {
				reserved[sku] -= m.Quantity
			}
		case "StockCommitted":
			onHand[sku] -= m.Quantity
			reserved[sku] -= m.Quantity
		}
		if onHand[sku] < 0 || reserved[sku] < 0 || onHand[sku]-reserved[sku] < 0 {
			t.Fatalf("%s went negative: on hand %d, reserved %d after %s", sku, onHand[sku], reserved[sku], ty)
		}
	}
	rows.Close()

	// What confirmed orders took, and what they cost.
	confirmedQty, confirmedCents := map[string]int64{}, int64(0)
	rows, err = pool.Query(ctx, finals+` select p.data from events p join finals f on f.stream_id = p.stream_id and f.final = 'OrderConfirmed' where p.type = 'OrderPlaced'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var data []byte
		_ = rows.Scan(&data)
		var placed struct {
			Lines []struct {
				SKU      string `json:"sku"`
				Quantity int64  `json:"quantity"`
			} `json:"lines"`
			TotalCents int64 `json:"total_cents"`
		}
		_ = json.Unmarshal(data, &placed)
		confirmedCents += placed.TotalCents
		for _, l := range placed.Lines {
			confirmedQty[l.SKU] += l.Quantity
		}
	}
	rows.Close()
	for sku, a := range added {
		if reserved[sku] != 0 {
			t.Fatalf("%s still has %d reserved", sku, reserved[sku])
		}
		if onHand[sku] != a-confirmedQty[sku] {
			t.Fatalf("%s on hand %d, want added %d − confirmed %d", sku, onHand[sku], a, confirmedQty[sku])
		}
	}
	var captured, refunded int64
	if err := pool.QueryRow(ctx, `select coalesce(sum((data->>'amount_cents')::bigint) filter (where type = 'PaymentCaptured'), 0),
		coalesce(sum((data->>'amount_cents')::bigint) filter (where type = 'PaymentRefunded'), 0) from events where stream_id like 'payment-%'`).Scan(&captured, &refunded); err != nil {
		t.Fatal(err)
	}
	if captured-refunded != confirmedCents {
		t.Fatalf("captured %d − refunded %d = %d, want the confirmed orders' %d", captured, refunded, captured-refunded, confirmedCents)
	}
	_, state := p.do(t, "GET", "/admin/state", "")
	t.Logf("1000 orders: %v; captured %d, refunded %d; provider %s", ends, captured, refunded, state)
}
