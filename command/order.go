package command

import (
	"time"

	"github.com/orderflow/orderflow"
)

// OrderStatus is where an order stands in its life.
type OrderStatus string

// Order statuses.
const (
	StatusPending   OrderStatus = "pending"
	StatusConfirmed OrderStatus = "confirmed"
	StatusRejected  OrderStatus = "rejected"
	StatusCancelled OrderStatus = "cancelled"
)

// Order is the state of the order aggregate, folded from its events. The
// zero Order is one that does not exist.
type Order struct {
	ID         orderflow.OrderID
	CustomerID orderflow.CustomerID
	Status     OrderStatus
	Lines      []orderflow.OrderLine
	TotalCents int64
	PlacedAt   time.Time
	DeadlineAt time.Time
	Version    int64 // events folded so far
}

// Exists reports whether the order was placed.
func (o Order) Exists() bool { return o.Version > 0 }

// Apply folds one event into the order. Events it does not know leave the
// state as it was (apart from the version), so later event types cannot break
// older logic.
func (o Order) Apply(e orderflow.Event) Order {
	o.Version++
	switch e := e.(type) {
	case orderflow.OrderPlaced:
		o.ID, o.CustomerID, o.Lines, o.TotalCents, o.PlacedAt = e.OrderID, e.CustomerID, e.Lines, e.TotalCents, e.PlacedAt
		o.DeadlineAt, o.Status = e.DeadlineAt, StatusPending
	case orderflow.OrderCancelled:
		o.Status = StatusCancelled
	case orderflow.OrderConfirmed:
		o.Status = StatusConfirmed
	case orderflow.OrderRejected:
		o.Status = StatusRejected
	}
	return o
}

// FoldOrder folds a stream's events, in version order, into an Order.
func FoldOrder(events []orderflow.Event) Order {
	var o Order
	for _, e := range events {
		o = o.Apply(e)
	}
	return o
}

// DecideConfirm confirms a pending order once its payment is captured. An
// order that is no longer pending (cancelled meanwhile, say) stays as it is:
// no events, no error; the payment participant refunds a capture it no
// longer needs.
func DecideConfirm(o Order, now time.Time) []orderflow.Event {
	if o.Status != StatusPending {
		return nil
	}
	return []orderflow.Event{orderflow.OrderConfirmed{OrderID: o.ID, ConfirmedAt: now.UTC()}}
}

// DecideReject rejects a pending order the inventory could not serve.
func DecideReject(o Order, reason string, now time.Time) []orderflow.Event {
	if o.Status != StatusPending {
		return nil
	}
	return []orderflow.Event{orderflow.OrderRejected{OrderID: o.ID, Reason: reason, RejectedAt: now.UTC()}}
}

// DecideSagaCancel cancels a pending order for the saga (payment failed,
// deadline passed); an order that is no longer pending stays as it is.
func DecideSagaCancel(o Order, reason string, now time.Time) []orderflow.Event {
	if o.Status != StatusPending {
		return nil
	}
	return []orderflow.Event{orderflow.OrderCancelled{OrderID: o.ID, Reason: reason, CancelledAt: now.UTC()}}
}
