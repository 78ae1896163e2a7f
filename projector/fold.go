// Package projector keeps orderflow's read views. Each projection is a pure
// fold from events to view rows (tested without I/O) plus the SQL that loads
// and stores those rows. The engine applies an event and the projection's
// per-stream checkpoint in one transaction, so duplicates are skipped, a gap
// is filled from the event store, and an event that keeps failing parks its
// stream while others flow. Rebuilds replay the event store into shadow
// tables and swap them in atomically.
package projector

import (
	"time"

	"github.com/orderflow/orderflow"
)

// Event is one event as a projection sees it: where it stands in its stream
// and its decoded payload.
type Event struct {
	StreamID   string
	Version    int64
	Type       string
	RecordedAt time.Time
	Payload    orderflow.Event // nil when this build does not know the type
}

// OrderView is a row of the order details view.
type OrderView struct {
	OrderID      orderflow.OrderID
	CustomerID   orderflow.CustomerID
	Status       string
	Lines        []orderflow.OrderLine
	TotalCents   int64
	PlacedAt     time.Time
	UpdatedAt    time.Time
	CancelReason string
	Version      int64 // the order stream's version applied
}

// Order statuses as the views show them.
const (
	StatusPending   = "pending"
	StatusConfirmed = "confirmed"
	StatusRejected  = "rejected"
	StatusCancelled = "cancelled"
)

// FoldOrder applies one event of an order stream to its view row (nil: no
// row yet) and returns the new row. Unknown events only advance the version.
func FoldOrder(v *OrderView, e Event) *OrderView {
	next := OrderView{}
	if v != nil {
		next = *v
	}
	next.Version = e.Version
	switch p := e.Payload.(type) {
	case orderflow.OrderPlaced:
		next.OrderID, next.CustomerID, next.Lines, next.TotalCents = p.OrderID, p.CustomerID, p.Lines, p.TotalCents
		next.PlacedAt, next.UpdatedAt, next.Status = p.PlacedAt.UTC(), p.PlacedAt.UTC(), StatusPending
	case orderflow.OrderCancelled:
		next.Status, next.CancelReason, next.UpdatedAt = StatusCancelled, p.Reason, p.CancelledAt.UTC()
	case orderflow.OrderConfirmed:
		next.Status, next.UpdatedAt = StatusConfirmed, p.ConfirmedAt.UTC()
	case orderflow.OrderRejected:
		next.Status, next.CancelReason, next.UpdatedAt = StatusRejected, p.Reason, p.RejectedAt.UTC()
	}
	return &next
}

// StockView is a row of the stock per SKU view.
type StockView struct {
	SKU       orderflow.SKU
	OnHand    int64
	Reserved  int64
	UpdatedAt time.Time
	Version   int64
}

// FoldStock applies one event of a SKU stream to its row.
func FoldStock(v *StockView, e Event) *StockView {
	next := StockView{}
	if v != nil {
		next = *v
	}
	next.Version = e.Version
	switch p := e.Payload.(type) {
	case orderflow.StockAdded:
		next.SKU, next.OnHand, next.UpdatedAt = p.SKU, next.OnHand+p.Quantity, p.AddedAt.UTC()
	case orderflow.StockReserved:
		next.SKU, next.Reserved, next.UpdatedAt = p.SKU, next.Reserved+p.Quantity, e.RecordedAt.UTC()
	case orderflow.StockReleased:
		next.SKU, next.UpdatedAt = p.SKU, e.RecordedAt.UTC()
		if p.Committed {
			next.OnHand += p.Quantity
		} else {
			next.Reserved -= p.Quantity
		}
	case orderflow.StockCommitted:
		next.SKU, next.OnHand, next.Reserved, next.UpdatedAt = p.SKU, next.OnHand-p.Quantity, next.Reserved-p.Quantity, e.RecordedAt.UTC()
	}
	return &next
}

// SalesOrder is what the daily sales projection remembers of one order, so
// a later event of the order can be attributed to the day it was placed.
type SalesOrder struct {
	Day        time.Time // UTC midnight of the day it was placed
	TotalCents int64
	Status     string
	Version    int64
}

// DaySales is a row of the daily sales view, or a change to one.
type DaySales struct {
	Day             time.Time
	OrdersPlaced    int64
	PlacedCents     int64
	OrdersCancelled int64
	CancelledCents  int64
}

// Add returns the sum of two rows of the same day.
func (d DaySales) Add(o DaySales) DaySales {
	d.OrdersPlaced += o.OrdersPlaced
	d.PlacedCents += o.PlacedCents
	d.OrdersCancelled += o.OrdersCancelled
	d.CancelledCents += o.CancelledCents
	return d
}

// FoldSales applies one event of an order stream: it returns the order's
// new state and the change to its day's row (zero Day: no change).
func FoldSales(o *SalesOrder, e Event) (*SalesOrder, DaySales) {
	next := SalesOrder{}
	if o != nil {
		next = *o
	}
	next.Version = e.Version
	var delta DaySales
	switch p := e.Payload.(type) {
	case orderflow.OrderPlaced:
		at := p.PlacedAt.UTC()
		next.Day = time.Date(at.Year(), at.Month(), at.Day(), 0, 0, 0, 0, time.UTC)
		next.TotalCents, next.Status = p.TotalCents, StatusPending
		delta = DaySales{Day: next.Day, OrdersPlaced: 1, PlacedCents: p.TotalCents}
	case orderflow.OrderCancelled:
		if next.Status != StatusCancelled && !next.Day.IsZero() {
			delta = DaySales{Day: next.Day, OrdersCancelled: 1, CancelledCents: next.TotalCents}
		}
		next.Status = StatusCancelled
	}
	return &next, delta
}
