// Package projector keeps orderflow's read views. Each projection is a pure
// fold from events to view rows (tested without I/O) plus the SQL that loads
// and stores those rows. The engine applies an event and the projection's
// per-stream checkpoint in one transaction, so duplicates are skipped, a gap
// is filled from the event store, and an event that keeps failing parks its
// stream while others flow. Rebuilds replay the event store into shadow
// tables and swap them in atomically.
package projector

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/orderflow/orderflow"
)

// Event is one event as a projection sees it: where it stands in its stream,
// the ids that trace it, and its decoded payload.
type Event struct {
	StreamID      string
	Version       int64
	Type          string
	RecordedAt    time.Time
	EventID       string          // the event's unique id
	CorrelationID string          // the metadata's correlation id; "" if none
	CausationID   string          // the metadata's causation id (the causing event's id); "" if none
	Payload       orderflow.Event // nil when this build does not know the type
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

// Inventory and payment states of a saga as the timeline shows them; the
// empty string means the participant has not acted (yet).
const (
	InventoryReserved  = "reserved"
	InventoryRejected  = "rejected"
	InventoryCommitted = "committed"
	InventoryReleased  = "released"

	PaymentCaptured = "captured"
	PaymentFailed   = "failed"
	PaymentRefunded = "refunded"
)

// SagaStep is one event of an order's saga: an event of its order-,
// reservation- or payment- stream.
type SagaStep struct {
	StreamID      string
	Version       int64
	Type          string
	RecordedAt    time.Time
	EventID       string
	CorrelationID string
	CausationID   string
}

// SagaView is an order's saga as the timeline view holds it. Each field
// comes from one of the order's streams only (Status, Reason, PlacedAt and
// DeadlineAt from order-, Inventory from reservation-, Payment from
// payment-) and UpdatedAt is the latest step's time, so the view does not
// depend on how deliveries of the three streams interleave: they arrive on
// different topics, and a reservation may well be applied before the
// OrderPlaced that caused it.
type SagaView struct {
	OrderID    orderflow.OrderID
	Status     string    // "" until OrderPlaced is applied
	Reason     string    // why it was rejected or cancelled
	PlacedAt   time.Time // zero until OrderPlaced is applied
	DeadlineAt time.Time // zero: no deadline
	UpdatedAt  time.Time // the latest RecordedAt of its steps
	Inventory  string
	Payment    string
	// The versions of the order's streams applied (0: none).
	VersionOrder, VersionReservation, VersionPayment int64
	// Steps are the steps folded into this value: every step when folded
	// from the start, only the new ones when folded onto a stored row.
	Steps []SagaStep
}

// Placed reports whether the view has applied the order's OrderPlaced.
func (v *SagaView) Placed() bool { return v != nil && v.Status != "" }

// FoldSaga applies one event of an order's order-, reservation- or payment-
// stream to its saga (nil: none yet) and returns the new saga, with the
// event appended to Steps. Events of other streams are ignored; unknown
// event types are steps that change no state. The caller sets OrderID.
func FoldSaga(v *SagaView, e Event) *SagaView {
	next := SagaView{}
	if v != nil {
		next = *v
		next.Steps = slices.Clip(next.Steps) // appending must not write into v's array
	}
	switch orderflow.StreamCategory(e.StreamID) + "-" {
	case orderflow.OrderStreamPrefix:
		next.VersionOrder = e.Version
		switch p := e.Payload.(type) {
		case orderflow.OrderPlaced:
			next.Status, next.Reason, next.PlacedAt, next.DeadlineAt = StatusPending, "", p.PlacedAt.UTC(), p.DeadlineAt.UTC()
		case orderflow.OrderConfirmed:
			next.Status, next.Reason = StatusConfirmed, ""
		case orderflow.OrderRejected:
			next.Status, next.Reason = StatusRejected, p.Reason
		case orderflow.OrderCancelled:
			next.Status, next.Reason = StatusCancelled, p.Reason
		}
	case orderflow.ReservationStreamPrefix:
		next.VersionReservation = e.Version
		switch e.Payload.(type) {
		case orderflow.InventoryReserved:
			next.Inventory = InventoryReserved
		case orderflow.InventoryRejected:
			next.Inventory = InventoryRejected
		case orderflow.InventoryCommitted:
			next.Inventory = InventoryCommitted
		case orderflow.InventoryReleased:
			next.Inventory = InventoryReleased
		}
	case orderflow.PaymentStreamPrefix:
		next.VersionPayment = e.Version
		switch e.Payload.(type) {
		case orderflow.PaymentCaptured:
			next.Payment = PaymentCaptured
		case orderflow.PaymentFailed:
			next.Payment = PaymentFailed
		case orderflow.PaymentRefunded:
			next.Payment = PaymentRefunded
		}
	default:
		return &next
	}
	if at := e.RecordedAt.UTC(); at.After(next.UpdatedAt) {
		next.UpdatedAt = at
	}
	next.Steps = append(next.Steps, SagaStep{StreamID: e.StreamID, Version: e.Version, Type: e.Type, RecordedAt: e.RecordedAt.UTC(),
		EventID: e.EventID, CorrelationID: e.CorrelationID, CausationID: e.CausationID})
	return &next
}

// SortSteps orders steps as the timeline shows them: by RecordedAt, then
// stream id and version.
func SortSteps(steps []SagaStep) {
	slices.SortFunc(steps, func(a, b SagaStep) int {
		if c := a.RecordedAt.Compare(b.RecordedAt); c != 0 {
			return c
		}
		if c := strings.Compare(a.StreamID, b.StreamID); c != 0 {
			return c
		}
		return cmp.Compare(a.Version, b.Version)
	})
}
