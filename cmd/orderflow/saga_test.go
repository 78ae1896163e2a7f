package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/query"
)

// sagaEnv runs every role in one process with a fast, controllable payment
// provider and short deadlines.
func sagaEnv(t *testing.T, extra map[string]string) *process {
	t.Helper()
	env, _ := fullEnv(t)
	env["ORDERFLOW_ROLES"] = "all"
	env["ORDERFLOW_PAYMENT_LATENCY"] = "2ms"
	env["ORDERFLOW_PAYMENT_BREAKER_FAILURES"] = "2"
	env["ORDERFLOW_PAYMENT_BREAKER_OPEN_TIMEOUT"] = "300ms"
	env["ORDERFLOW_DEADLINE_INTERVAL"] = "100ms"
	env["ORDERFLOW_ORDER_DEADLINE"] = "60s"
	for k, v := range extra {
		env[k] = v
	}
	return MustStart(t, env)
}

func (p *process) do(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, p.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func (p *process) addStock(t *testing.T, sku string, qty int) {
	t.Helper()
	if code, body := p.do(t, "POST", "/v1/inventory/"+sku+"/stock", fmt.Sprintf(`{"quantity":%d}`, qty)); code != 200 {
		t.Fatalf("add stock: %d %s", code, body)
	}
}

// place places an order of lines "SKU:qty" at 100 cents a unit.
func (p *process) place(t *testing.T, customer string, lines ...string) string {
	t.Helper()
	var parts []string
	for _, l := range lines {
		sku, qty, _ := strings.Cut(l, ":")
		parts = append(parts, fmt.Sprintf(`{"sku":%q,"quantity":%s,"unit_price_cents":100}`, sku, qty))
	}
	code, body := p.do(t, "POST", "/v1/orders", fmt.Sprintf(`{"customer_id":%q,"lines":[%s]}`, customer, strings.Join(parts, ",")))
	var acc struct {
		OrderID string `json:"order_id"`
	}
	if code != 201 || json.Unmarshal(body, &acc) != nil {
		t.Fatalf("place order: %d %s", code, body)
	}
	return acc.OrderID
}

// types returns the event types of a stream from the audit trail.
func (p *process) types(t *testing.T, stream string) []string {
	t.Helper()
	code, body := p.do(t, "GET", "/v1/streams/"+stream+"/events?limit=1000", "")
	if code == 404 {
		return nil
	}
	var page struct {
		Events []struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		} `json:"events"`
	}
	if code != 200 || json.Unmarshal(body, &page) != nil {
		t.Fatalf("audit trail of %s: %d %s", stream, code, body)
	}
	var out []string
	for _, e := range page.Events {
		out = append(out, e.Type)
	}
	return out
}

var terminal = []string{"OrderConfirmed", "OrderRejected", "OrderCancelled"}

// awaitEnd waits until the order's stream ends in a terminal event, and for
// the compensations that follow it, and returns the order's final event.
func (p *process) awaitEnd(t *testing.T, id string, timeout time.Duration) string {
	t.Helper()
	var last string
	waitUntil(t, timeout, "order "+id+" ends", func() bool {
		types := p.types(t, "order-"+id)
		for _, ty := range types {
			if slices.Contains(terminal, ty) {
				last = ty
			}
		}
		return last != ""
	})
	return last
}

// settled waits until the reservation and payment streams of an order
// reached the wanted final events (nil: the stream must not exist).
func (p *process) settled(t *testing.T, id string, reservation, payment []string) {
	t.Helper()
	waitUntil(t, time.Minute, "order "+id+" compensations", func() bool {
		return slices.Equal(p.types(t, "reservation-"+id), reservation) && slices.Equal(p.types(t, "payment-"+id), payment)
	})
}

type skuLevels struct{ onHand, reserved int64 }

func (p *process) sku(t *testing.T, sku string) skuLevels {
	t.Helper()
	code, body := p.do(t, "GET", "/v1/streams/sku-"+sku+"/events?limit=1000", "")
	if code != 200 {
		t.Fatalf("sku %s: %d", sku, code)
	}
	var page struct {
		Events []struct {
			Type string `json:"type"`
			Data struct {
				Quantity  int64 `json:"quantity"`
				Committed bool  `json:"committed"`
			} `json:"data"`
		} `json:"events"`
	}
	_ = json.Unmarshal(body, &page)
	var l skuLevels
	for _, e := range page.Events {
		switch e.Type {
		case "StockAdded":
			l.onHand += e.Data.Quantity
		case "StockReserved":
			l.reserved += e.Data.Quantity
		case "StockReleased":
			if e.Data.Committed {
				l.onHand += e.Data.Quantity
			} else {
				l.reserved -= e.Data.Quantity
			}
		case "StockCommitted":
			l.onHand -= e.Data.Quantity
			l.reserved -= e.Data.Quantity
		}
	}
	return l
}

func TestSagaEndToEnd(t *testing.T) {
	// Not parallel: each of these runs whole orderflow processes; on 2 cores
	// they would starve each other and measure the machine, not the code.
	p := sagaEnv(t, nil)
	p.addStock(t, "APPLE", 10)
	p.addStock(t, "PEAR", 1)

	t.Run("happy path confirms", func(t *testing.T) {
		id := p.place(t, "c-1", "APPLE:2")
		if end := p.awaitEnd(t, id, time.Minute); end != "OrderConfirmed" {
			t.Fatalf("order ended %s", end)
		}
		p.settled(t, id, []string{"InventoryReserved", "InventoryCommitted"}, []string{"PaymentCaptured"})
		p.timeline(t, id)
	})
	t.Run("out of stock rejects and reserves nothing", func(t *testing.T) {
		before := p.sku(t, "PEAR")
		id := p.place(t, "c-2", "APPLE:1", "PEAR:5")
		if end := p.awaitEnd(t, id, time.Minute); end != "OrderRejected" {
			t.Fatalf("order ended %s", end)
		}
		p.settled(t, id, []string{"InventoryRejected"}, nil)
		if after := p.sku(t, "PEAR"); after != before {
			t.Fatalf("PEAR moved from %+v to %+v", before, after)
		}
	})
	t.Run("customer cancel after confirmation refunds and releases", func(t *testing.T) {
		id := p.place(t, "c-3", "APPLE:3")
		if end := p.awaitEnd(t, id, time.Minute); end != "OrderConfirmed" {
			t.Fatalf("order ended %s", end)
		}
		p.settled(t, id, []string{"InventoryReserved", "InventoryCommitted"}, []string{"PaymentCaptured"})
		onHand := p.sku(t, "APPLE").onHand
		if code, body := p.do(t, "POST", "/v1/orders/"+id+"/cancel", `{"reason":"changed my mind"}`); code != 200 {
			t.Fatalf("cancel: %d %s", code, body)
		}
		p.settled(t, id, []string{"InventoryReserved", "InventoryCommitted", "InventoryReleased"}, []string{"PaymentCaptured", "PaymentRefunded"})
		if got := p.sku(t, "APPLE").onHand; got != onHand+3 {
			t.Fatalf("APPLE on hand %d after the release, want %d", got, onHand+3)
		}
	})
	t.Run("provider outage: orders wait, then confirm", func(t *testing.T) {
		if code, body := p.do(t, "PUT", "/admin/outage", `{"down":true}`); code != 200 {
			t.Fatalf("outage on: %d %s", code, body)
		}
		ids := []string{p.place(t, "c-4", "APPLE:1"), p.place(t, "c-5", "APPLE:1")}
		waitUntil(t, time.Minute, "the payment breaker opens", func() bool {
			return p.Metric(t, `orderflow_breaker_state{name="payment-provider"}`) == 2
		})
		for _, id := range ids {
			if got := p.types(t, "order-"+id); !slices.Equal(got, []string{"OrderPlaced"}) {
				t.Fatalf("order %s during the outage: %v, want only OrderPlaced (waiting)", id, got)
			}
		}
		if code, _ := p.do(t, "PUT", "/admin/outage", `{"down":false}`); code != 200 {
			t.Fatal("outage off")
		}
		for _, id := range ids {
			if end := p.awaitEnd(t, id, time.Minute); end != "OrderConfirmed" {
				t.Fatalf("order %s ended %s after the outage", id, end)
			}
			p.settled(t, id, []string{"InventoryReserved", "InventoryCommitted"}, []string{"PaymentCaptured"})
		}
	})
	if t.Failed() {
		return
	}
	final := p.sku(t, "APPLE")
	// 10 added; confirmed and kept: 2 (happy) + 1 + 1 (outage); 3 cancelled
	// after confirmation came back; the rejected order reserved nothing.
	if final.onHand != 10-4 || final.reserved != 0 {
		t.Fatalf("APPLE at the end: %+v, want on hand 6, reserved 0", final)
	}
}

func TestSagaPaymentDeclinedCancelsAndReleases(t *testing.T) {
	// Not parallel: each of these runs whole orderflow processes; on 2 cores
	// they would starve each other and measure the machine, not the code.
	p := sagaEnv(t, map[string]string{"ORDERFLOW_PAYMENT_FAILURE_RATE": "1"})
	p.addStock(t, "PLUM", 5)
	id := p.place(t, "c-1", "PLUM:2")
	if end := p.awaitEnd(t, id, time.Minute); end != "OrderCancelled" {
		t.Fatalf("order ended %s", end)
	}
	p.settled(t, id, []string{"InventoryReserved", "InventoryReleased"}, []string{"PaymentFailed"})
	if l := p.sku(t, "PLUM"); l.onHand != 5 || l.reserved != 0 {
		t.Fatalf("PLUM after the release: %+v", l)
	}
}

func TestSagaOutageLongerThanDeadlineCancelsAndCompensates(t *testing.T) {
	// Not parallel: each of these runs whole orderflow processes; on 2 cores
	// they would starve each other and measure the machine, not the code.
	// The deadline outlasts the first saga through a fresh process (its
	// consumer groups joining: up to 10 s here).
	p := sagaEnv(t, map[string]string{"ORDERFLOW_ORDER_DEADLINE": "20s"})
	p.addStock(t, "FIG", 5)
	// Every consumer group joined first: an order whose OrderPlaced reaches
	// the inventory only after its deadline cancelled it reserves nothing,
	// and so has nothing to compensate.
	if end := p.awaitEnd(t, p.place(t, "c-0", "FIG:1"), time.Minute); end != "OrderConfirmed" {
		t.Fatalf("the warm-up order ended %s", end)
	}
	if code, _ := p.do(t, "PUT", "/admin/outage", `{"down":true}`); code != 200 {
		t.Fatal("outage on")
	}
	id := p.place(t, "c-1", "FIG:2")
	if end := p.awaitEnd(t, id, time.Minute); end != "OrderCancelled" {
		t.Fatalf("order ended %s", end)
	}
	// Compensated during the outage: the stock is released. Whether the
	// charge held by the outage went through cannot be known while the
	// provider is down, so the payment stays open until it answers.
	p.settled(t, id, []string{"InventoryReserved", "InventoryReleased"}, nil)
	if code, _ := p.do(t, "PUT", "/admin/outage", `{"down":false}`); code != 200 {
		t.Fatal("outage off")
	}
	// Back, the provider voids the order's charge key: it was never charged,
	// and now never can be.
	p.settled(t, id, []string{"InventoryReserved", "InventoryReleased"}, []string{"PaymentFailed"})
	next := p.place(t, "c-2", "FIG:1") // the saga works again after the outage
	if end := p.awaitEnd(t, next, time.Minute); end != "OrderConfirmed" {
		t.Fatalf("the next order ended %s", end)
	}
	code, state := p.do(t, "GET", "/admin/state", "")
	if code != 200 || !strings.Contains(string(state), `"charges":2`) {
		t.Fatalf("provider state after the outage: %d %s; want two charges, the warm-up order's and the next order's", code, state)
	}
	_, body := p.do(t, "GET", "/v1/streams/order-"+id+"/events", "")
	if !strings.Contains(string(body), `"reason":"timeout"`) {
		t.Fatalf("cancellation reason is not timeout: %s", body)
	}
}

// timeline waits for GET /v1/orders/{id}/saga to show the confirmed saga:
// the order's, the reservation's and the payment's steps, under the order's
// correlation id, each participant's step caused by an earlier step.
func (p *process) timeline(t *testing.T, id string) {
	t.Helper()
	var saga query.Saga
	waitUntil(t, time.Minute, "the confirmed saga in its timeline", func() bool {
		code, body := p.do(t, "GET", "/v1/orders/"+id+"/saga", "")
		saga = query.Saga{}
		return code == 200 && json.Unmarshal(body, &saga) == nil && saga.Status == "confirmed"
	})
	var types []string
	seen := map[string]bool{}
	for _, s := range saga.Steps {
		types = append(types, s.Type)
		if s.CorrelationID != saga.Steps[0].CorrelationID || s.CorrelationID == "" {
			t.Errorf("step %s has correlation id %q, the saga's is %q", s.Type, s.CorrelationID, saga.Steps[0].CorrelationID)
		}
		if s.CausationID != "" && !seen[s.CausationID] {
			t.Errorf("step %s was caused by %s, no earlier step of the saga", s.Type, s.CausationID)
		}
		seen[s.EventID] = true
	}
	for _, want := range []string{"OrderPlaced", "InventoryReserved", "PaymentCaptured", "OrderConfirmed"} {
		if !slices.Contains(types, want) {
			t.Errorf("timeline %v lacks %s", types, want)
		}
	}
	if saga.Inventory == "" || saga.Payment == "" {
		t.Errorf("timeline %+v: inventory %q, payment %q", saga, saga.Inventory, saga.Payment)
	}
}
