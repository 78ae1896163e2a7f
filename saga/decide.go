// Package saga holds the choreographed order saga's participants:
// inventory, payment and order. Each reacts to events from Kafka and appends
// its own events; no orchestrator exists. Decisions are pure functions of
// the streams' folded state, tested without I/O; the participants load,
// decide and append with expected versions and command ids derived from the
// triggering event, so duplicated, late or reordered events never
// double-reserve, double-charge or double-release.
package saga

import (
	"maps"
	"slices"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/eventstore"
)

// Write is what a decision appends to one stream.
type Write struct {
	StreamID string
	Expected eventstore.ExpectedVersion
	Events   []orderflow.Event
}

// Stock is a SKU's stock, folded from its stream.
type Stock struct {
	OnHand   int64
	Reserved int64
	Version  int64
}

// Available is what can still be reserved.
func (s Stock) Available() int64 { return s.OnHand - s.Reserved }

// Apply folds one event of a sku- stream.
func (s Stock) Apply(e orderflow.Event) Stock {
	s.Version++
	switch e := e.(type) {
	case orderflow.StockAdded:
		s.OnHand += e.Quantity
	case orderflow.StockReserved:
		s.Reserved += e.Quantity
	case orderflow.StockReleased:
		if e.Committed {
			s.OnHand += e.Quantity
		} else {
			s.Reserved -= e.Quantity
		}
	case orderflow.StockCommitted:
		s.OnHand -= e.Quantity
		s.Reserved -= e.Quantity
	}
	return s
}

// Reservation states.
const (
	ReservationNone      = ""
	ReservationReserved  = "reserved"
	ReservationRejected  = "rejected"
	ReservationCommitted = "committed"
	ReservationReleased  = "released"
)

// Reservation is an order's reservation, folded from its stream.
type Reservation struct {
	Status     string
	Lines      []orderflow.OrderLine
	TotalCents int64
	Committed  bool // the stock left the warehouse before any release
	Version    int64
}

// Apply folds one event of a reservation- stream.
func (r Reservation) Apply(e orderflow.Event) Reservation {
	r.Version++
	switch e := e.(type) {
	case orderflow.InventoryReserved:
		r.Status, r.Lines, r.TotalCents = ReservationReserved, e.Lines, e.TotalCents
	case orderflow.InventoryRejected:
		r.Status = ReservationRejected
	case orderflow.InventoryCommitted:
		r.Status, r.Committed = ReservationCommitted, true
	case orderflow.InventoryReleased:
		r.Status = ReservationReleased
	}
	return r
}

// DecideReserve reserves every line of a placed order at once, or rejects
// it when a line is short; an order already decided gets nothing more, and
// so does one no longer pending (cancelled, by its deadline say, before its
// OrderPlaced reached the inventory): its stock stays free for live orders,
// and its OrderCancelled finds nothing to release. stocks holds the folded
// state of every SKU the order names.
func DecideReserve(placed orderflow.OrderPlaced, orderStatus string, res Reservation, stocks map[orderflow.SKU]Stock) []Write {
	if res.Version > 0 {
		return nil // reserved or rejected before: a duplicate
	}
	if orderStatus != "pending" {
		return nil
	}
	resStream := placed.OrderID.ReservationStream()
	for _, l := range placed.Lines {
		if stocks[l.SKU].Available() < l.Quantity {
			return []Write{{StreamID: resStream, Expected: eventstore.NoStream, Events: []orderflow.Event{
				orderflow.InventoryRejected{OrderID: placed.OrderID, Reason: orderflow.ReasonOutOfStock, SKU: l.SKU},
			}}}
		}
	}
	writes := make([]Write, 0, len(placed.Lines)+1)
	for _, l := range placed.Lines {
		writes = append(writes, Write{StreamID: l.SKU.Stream(), Expected: eventstore.Exactly(stocks[l.SKU].Version), Events: []orderflow.Event{
			orderflow.StockReserved{SKU: l.SKU, OrderID: placed.OrderID, Quantity: l.Quantity},
		}})
	}
	return append(writes, Write{StreamID: resStream, Expected: eventstore.NoStream, Events: []orderflow.Event{
		orderflow.InventoryReserved{OrderID: placed.OrderID, Lines: placed.Lines, TotalCents: placed.TotalCents},
	}})
}

// DecideReserveBatch decides placed orders in turn, each against the stock
// left by the reservations before it, and returns each order's writes. An
// order already decided, or placed twice in the batch, gets nothing the
// second time. Appended together, the writes of one SKU stream follow each
// other version by version (see MergeWrites).
func DecideReserveBatch(placed []orderflow.OrderPlaced, orderStatus []string, res []Reservation, stocks map[orderflow.SKU]Stock) [][]Write {
	stocks = maps.Clone(stocks)
	seen := make(map[orderflow.OrderID]bool, len(placed))
	out := make([][]Write, len(placed))
	for i, p := range placed {
		if seen[p.OrderID] {
			continue
		}
		seen[p.OrderID] = true
		out[i] = DecideReserve(p, orderStatus[i], res[i], stocks)
		for _, w := range out[i] {
			for _, e := range w.Events {
				if r, ok := e.(orderflow.StockReserved); ok {
					stocks[r.SKU] = stocks[r.SKU].Apply(r)
				}
			}
		}
	}
	return out
}

// MergeWrites joins writes to the same stream into one, keeping the first
// one's expected version and every event in order: writes decided one after
// another (DecideReserveBatch) become one atomic append.
func MergeWrites(writes []Write) []Write {
	var out []Write
	at := map[string]int{}
	for _, w := range writes {
		if i, ok := at[w.StreamID]; ok {
			out[i].Events = append(out[i].Events, w.Events...)
			continue
		}
		at[w.StreamID] = len(out)
		out = append(out, Write{StreamID: w.StreamID, Expected: w.Expected, Events: slices.Clone(w.Events)})
	}
	return out
}

// DecideCommit takes a confirmed order's reserved stock out of the
// warehouse; anything but a live reservation gets nothing.
func DecideCommit(id orderflow.OrderID, res Reservation) []Write {
	if res.Status != ReservationReserved {
		return nil
	}
	var writes []Write
	for _, l := range res.Lines {
		// Taking reserved units out never lowers what is available, so it
		// needs no expected version on the SKU.
		writes = append(writes, Write{StreamID: l.SKU.Stream(), Expected: eventstore.Any, Events: []orderflow.Event{
			orderflow.StockCommitted{SKU: l.SKU, OrderID: id, Quantity: l.Quantity},
		}})
	}
	return append(writes, Write{StreamID: id.ReservationStream(), Expected: eventstore.Exactly(res.Version), Events: []orderflow.Event{
		orderflow.InventoryCommitted{OrderID: id},
	}})
}

// DecideRelease gives back what a cancelled order holds: its reservation,
// or the stock it took if it was committed; released, rejected or unknown
// reservations get nothing.
func DecideRelease(id orderflow.OrderID, res Reservation) []Write {
	if res.Status != ReservationReserved && res.Status != ReservationCommitted {
		return nil
	}
	var writes []Write
	for _, l := range res.Lines {
		writes = append(writes, Write{StreamID: l.SKU.Stream(), Expected: eventstore.Any, Events: []orderflow.Event{
			orderflow.StockReleased{SKU: l.SKU, OrderID: id, Quantity: l.Quantity, Committed: res.Committed},
		}})
	}
	return append(writes, Write{StreamID: id.ReservationStream(), Expected: eventstore.Exactly(res.Version), Events: []orderflow.Event{
		orderflow.InventoryReleased{OrderID: id},
	}})
}

// Payment states.
const (
	PaymentNone     = ""
	PaymentCaptured = "captured"
	PaymentFailed   = "failed"
	PaymentRefunded = "refunded"
)

// Payment is an order's payment, folded from its stream.
type Payment struct {
	Status      string
	AmountCents int64
	ChargeID    string
	Version     int64
}

// Apply folds one event of a payment- stream.
func (p Payment) Apply(e orderflow.Event) Payment {
	p.Version++
	switch e := e.(type) {
	case orderflow.PaymentCaptured:
		p.Status, p.AmountCents, p.ChargeID = PaymentCaptured, e.AmountCents, e.ChargeID
	case orderflow.PaymentFailed:
		p.Status = PaymentFailed
	case orderflow.PaymentRefunded:
		p.Status = PaymentRefunded
	}
	return p
}

// ShouldCharge reports whether a reserved order is to be charged now: it
// has no payment yet and is still pending.
func ShouldCharge(orderStatus string, pay Payment) bool {
	return pay.Version == 0 && orderStatus == "pending"
}

// DecideChargeResult records the provider's answer to a charge.
func DecideChargeResult(id orderflow.OrderID, pay Payment, captured bool, amount int64, chargeID, declineReason string) []Write {
	if pay.Version > 0 {
		return nil
	}
	var e orderflow.Event = orderflow.PaymentFailed{OrderID: id, Reason: declineReason}
	if captured {
		e = orderflow.PaymentCaptured{OrderID: id, AmountCents: amount, ChargeID: chargeID}
	}
	return []Write{{StreamID: id.PaymentStream(), Expected: eventstore.NoStream, Events: []orderflow.Event{e}}}
}

// ShouldRefund reports whether a captured payment is to be given back: its
// order ended cancelled.
func ShouldRefund(orderStatus string, pay Payment) bool {
	return pay.Status == PaymentCaptured && orderStatus == "cancelled"
}

// DecideRefunded records a refund the provider made.
func DecideRefunded(id orderflow.OrderID, pay Payment) []Write {
	if pay.Status != PaymentCaptured {
		return nil
	}
	return []Write{{StreamID: id.PaymentStream(), Expected: eventstore.Exactly(pay.Version), Events: []orderflow.Event{
		orderflow.PaymentRefunded{OrderID: id, AmountCents: pay.AmountCents, ChargeID: pay.ChargeID},
	}}}
}
