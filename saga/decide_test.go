package saga_test

import (
	"testing"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/saga"
)

func types(writes []saga.Write) []string {
	var out []string
	for _, w := range writes {
		for _, e := range w.Events {
			out = append(out, w.StreamID[:3]+":"+e.EventType())
		}
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func stock(events ...orderflow.Event) saga.Stock {
	var s saga.Stock
	for _, e := range events {
		s = s.Apply(e)
	}
	return s
}

func reservation(events ...orderflow.Event) saga.Reservation {
	var r saga.Reservation
	for _, e := range events {
		r = r.Apply(e)
	}
	return r
}

func payment(events ...orderflow.Event) saga.Payment {
	var p saga.Payment
	for _, e := range events {
		p = p.Apply(e)
	}
	return p
}

func TestStockFold(t *testing.T) {
	t.Parallel()
	id := orderflow.NewOrderID()
	s := stock(
		orderflow.StockAdded{SKU: "A", Quantity: 10},
		orderflow.StockReserved{SKU: "A", OrderID: id, Quantity: 4},
		orderflow.StockCommitted{SKU: "A", OrderID: id, Quantity: 3},
		orderflow.StockReleased{SKU: "A", OrderID: id, Quantity: 1},
		orderflow.StockReleased{SKU: "A", OrderID: id, Quantity: 3, Committed: true},
	)
	if s.OnHand != 10 || s.Reserved != 0 || s.Version != 5 || s.Available() != 10 {
		t.Fatalf("stock = %+v", s)
	}
}

func TestDecideReserve(t *testing.T) {
	t.Parallel()
	id := orderflow.NewOrderID()
	placed := orderflow.OrderPlaced{OrderID: id, TotalCents: 500, Lines: []orderflow.OrderLine{{SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 3}}}
	plenty := map[orderflow.SKU]saga.Stock{"A": stock(orderflow.StockAdded{SKU: "A", Quantity: 5}), "B": stock(orderflow.StockAdded{SKU: "B", Quantity: 3})}
	shortB := map[orderflow.SKU]saga.Stock{"A": plenty["A"], "B": stock(orderflow.StockAdded{SKU: "B", Quantity: 5}, orderflow.StockReserved{SKU: "B", Quantity: 3})}
	tests := []struct {
		name   string
		status string
		res    saga.Reservation
		stocks map[orderflow.SKU]saga.Stock
		want   []string
	}{
		{"every line available", "pending", saga.Reservation{}, plenty, []string{"sku:StockReserved", "sku:StockReserved", "res:InventoryReserved"}},
		{"one line short", "pending", saga.Reservation{}, shortB, []string{"res:InventoryRejected"}},
		{"unknown SKU", "pending", saga.Reservation{}, map[orderflow.SKU]saga.Stock{"A": plenty["A"]}, []string{"res:InventoryRejected"}},
		{"already reserved (duplicate)", "pending", reservation(orderflow.InventoryReserved{OrderID: id}), plenty, nil},
		{"already rejected (duplicate)", "pending", reservation(orderflow.InventoryRejected{OrderID: id}), plenty, nil},
		{"cancelled before the inventory saw it", "cancelled", saga.Reservation{}, plenty, nil},
		{"cancelled, one line short", "cancelled", saga.Reservation{}, shortB, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			writes := saga.DecideReserve(placed, tt.status, tt.res, tt.stocks)
			if got := types(writes); !equal(got, tt.want) {
				t.Fatalf("writes %v, want %v", got, tt.want)
			}
			for _, w := range writes {
				if w.StreamID == id.ReservationStream() && w.Expected != eventstore.NoStream {
					t.Fatalf("reservation stream must be new, expected %d", w.Expected)
				}
				if w.StreamID == orderflow.SKU("A").Stream() && w.Expected != eventstore.Exactly(plenty["A"].Version) {
					t.Fatalf("a reservation must expect the SKU's version it checked, got %d", w.Expected)
				}
			}
		})
	}
}

// A batch of placed orders is decided in turn: each sees the stock the ones
// before it reserved, an order placed twice is reserved once, an order
// decided before or cancelled already gets nothing, and merged the batch is one write per stream
// expecting the SKU's version before the batch.
func TestDecideReserveBatch(t *testing.T) {
	t.Parallel()
	a, b, c, done := orderflow.NewOrderID(), orderflow.NewOrderID(), orderflow.NewOrderID(), orderflow.NewOrderID()
	place := func(id orderflow.OrderID, qty int64) orderflow.OrderPlaced {
		return orderflow.OrderPlaced{OrderID: id, Lines: []orderflow.OrderLine{{SKU: "A", Quantity: qty}}}
	}
	stocks := map[orderflow.SKU]saga.Stock{"A": stock(orderflow.StockAdded{SKU: "A", Quantity: 5})} // version 1
	gone := orderflow.NewOrderID()
	placed := []orderflow.OrderPlaced{place(a, 3), place(done, 1), place(gone, 2), place(a, 3), place(b, 3), place(c, 2)}
	statuses := []string{"pending", "pending", "cancelled", "pending", "pending", "pending"}
	res := []saga.Reservation{{}, reservation(orderflow.InventoryReserved{OrderID: done}), {}, {}, {}, {}}
	decided := saga.DecideReserveBatch(placed, statuses, res, stocks)
	want := [][]string{
		{"sku:StockReserved", "res:InventoryReserved"}, // a: 3 of 5
		nil,                       // done: decided before
		nil,                       // gone: cancelled already, takes none of the 2 left
		nil,                       // a again: once only
		{"res:InventoryRejected"}, // b: 3 > the 2 left
		{"sku:StockReserved", "res:InventoryReserved"}, // c: the last 2
	}
	for i := range placed {
		if got := types(decided[i]); !equal(got, want[i]) {
			t.Fatalf("order %d: writes %v, want %v", i, got, want[i])
		}
	}
	if stocks["A"].Reserved != 0 {
		t.Fatal("DecideReserveBatch changed the caller's stocks")
	}
	var all []saga.Write
	for _, w := range decided {
		all = append(all, w...)
	}
	merged := saga.MergeWrites(all)
	if len(merged) != 4 { // SKU A, and the reservation streams of a, b and c
		t.Fatalf("merged into %d writes, want 4: %+v", len(merged), merged)
	}
	sku := merged[0]
	if sku.StreamID != orderflow.SKU("A").Stream() || sku.Expected != eventstore.Exactly(1) || len(sku.Events) != 2 {
		t.Fatalf("merged SKU write = %+v, want 2 reservations expecting version 1", sku)
	}
}

func TestDecideCommitAndRelease(t *testing.T) {
	t.Parallel()
	id := orderflow.NewOrderID()
	lines := []orderflow.OrderLine{{SKU: "A", Quantity: 2}}
	reserved := reservation(orderflow.InventoryReserved{OrderID: id, Lines: lines})
	committed := reservation(orderflow.InventoryReserved{OrderID: id, Lines: lines}, orderflow.InventoryCommitted{OrderID: id})
	released := reservation(orderflow.InventoryReserved{OrderID: id, Lines: lines}, orderflow.InventoryReleased{OrderID: id})
	rejected := reservation(orderflow.InventoryRejected{OrderID: id})
	tests := []struct {
		name          string
		res           saga.Reservation
		commit        []string
		release       []string
		releaseCommit bool
	}{
		{"nothing reserved", saga.Reservation{}, nil, nil, false},
		{"reserved", reserved, []string{"sku:StockCommitted", "res:InventoryCommitted"}, []string{"sku:StockReleased", "res:InventoryReleased"}, false},
		{"committed", committed, nil, []string{"sku:StockReleased", "res:InventoryReleased"}, true},
		{"released already", released, nil, nil, false},
		{"rejected", rejected, nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := types(saga.DecideCommit(id, tt.res)); !equal(got, tt.commit) {
				t.Fatalf("commit writes %v, want %v", got, tt.commit)
			}
			release := saga.DecideRelease(id, tt.res)
			if got := types(release); !equal(got, tt.release) {
				t.Fatalf("release writes %v, want %v", got, tt.release)
			}
			if len(release) > 0 {
				if r := release[0].Events[0].(orderflow.StockReleased); r.Committed != tt.releaseCommit || r.Quantity != 2 {
					t.Fatalf("release %+v", r)
				}
				if release[1].Expected != eventstore.Exactly(tt.res.Version) {
					t.Fatalf("release must expect the reservation's version")
				}
			}
		})
	}
}

func TestPaymentDecisions(t *testing.T) {
	t.Parallel()
	id := orderflow.NewOrderID()
	captured := payment(orderflow.PaymentCaptured{OrderID: id, AmountCents: 700, ChargeID: "ch"})
	failed := payment(orderflow.PaymentFailed{OrderID: id})
	refunded := payment(orderflow.PaymentCaptured{OrderID: id, AmountCents: 700, ChargeID: "ch"}, orderflow.PaymentRefunded{OrderID: id})
	tests := []struct {
		name          string
		order         string
		pay           saga.Payment
		charge, refnd bool
	}{
		{"pending, unpaid", "pending", saga.Payment{}, true, false},
		{"cancelled before charging", "cancelled", saga.Payment{}, false, false},
		{"pending, captured", "pending", captured, false, false},
		{"confirmed, captured", "confirmed", captured, false, false},
		{"cancelled after capture", "cancelled", captured, false, true},
		{"cancelled, refunded already", "cancelled", refunded, false, false},
		{"cancelled, payment failed", "cancelled", failed, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := saga.ShouldCharge(tt.order, tt.pay); got != tt.charge {
				t.Fatalf("ShouldCharge = %v", got)
			}
			if got := saga.ShouldRefund(tt.order, tt.pay); got != tt.refnd {
				t.Fatalf("ShouldRefund = %v", got)
			}
		})
	}
	if got := types(saga.DecideChargeResult(id, saga.Payment{}, true, 700, "ch", "")); !equal(got, []string{"pay:PaymentCaptured"}) {
		t.Fatalf("captured: %v", got)
	}
	if got := types(saga.DecideChargeResult(id, saga.Payment{}, false, 700, "", "declined")); !equal(got, []string{"pay:PaymentFailed"}) {
		t.Fatalf("declined: %v", got)
	}
	if got := saga.DecideChargeResult(id, captured, true, 700, "ch", ""); got != nil {
		t.Fatalf("a second result is recorded: %v", types(got))
	}
	if got := types(saga.DecideRefunded(id, captured)); !equal(got, []string{"pay:PaymentRefunded"}) {
		t.Fatalf("refunded: %v", got)
	}
	if got := saga.DecideRefunded(id, refunded); got != nil {
		t.Fatalf("refunded twice: %v", types(got))
	}
}
