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
		o.Status = StatusPending
	case orderflow.OrderCancelled:
		o.Status = StatusCancelled
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
