package orderflow

import "time"

// Event type names as stored in the event log and published on Kafka.
const (
	EventOrderPlaced    = "OrderPlaced"
	EventOrderCancelled = "OrderCancelled"
	EventStockAdded     = "StockAdded"
)

// Event is implemented by every event payload.
type Event interface {
	// EventType returns the stored type name.
	EventType() string
	// SchemaVersion returns the version of the payload's shape.
	SchemaVersion() int
}

// OrderLine is one line of an order.
type OrderLine struct {
	SKU            SKU
	Quantity       int64
	UnitPriceCents int64
}

// OrderPlaced: a customer placed an order; it is pending until the saga ends it.
type OrderPlaced struct {
	OrderID    OrderID
	CustomerID CustomerID
	Lines      []OrderLine
	TotalCents int64
	PlacedAt   time.Time
}

// OrderCancelled: the order was cancelled, by the customer or by the saga.
type OrderCancelled struct {
	OrderID     OrderID
	Reason      string
	CancelledAt time.Time
}

// StockAdded: units of a SKU were added to the stock on hand.
type StockAdded struct {
	SKU      SKU
	Quantity int64
	AddedAt  time.Time
}

func (OrderPlaced) EventType() string    { return EventOrderPlaced }
func (OrderCancelled) EventType() string { return EventOrderCancelled }
func (StockAdded) EventType() string     { return EventStockAdded }

func (OrderPlaced) SchemaVersion() int    { return 1 }
func (OrderCancelled) SchemaVersion() int { return 1 }
func (StockAdded) SchemaVersion() int     { return 1 }
