package orderflow

import "time"

// Event type names as stored in the event log and published on Kafka.
const (
	EventOrderPlaced    = "OrderPlaced"
	EventOrderCancelled = "OrderCancelled"
	EventOrderConfirmed = "OrderConfirmed"
	EventOrderRejected  = "OrderRejected"
	EventStockAdded     = "StockAdded"

	// The inventory context: sku- and reservation- streams.
	EventStockReserved      = "StockReserved"
	EventStockReleased      = "StockReleased"
	EventStockCommitted     = "StockCommitted"
	EventInventoryReserved  = "InventoryReserved"
	EventInventoryRejected  = "InventoryRejected"
	EventInventoryReleased  = "InventoryReleased"
	EventInventoryCommitted = "InventoryCommitted"

	// The payment context: payment- streams.
	EventPaymentCaptured = "PaymentCaptured"
	EventPaymentFailed   = "PaymentFailed"
	EventPaymentRefunded = "PaymentRefunded"
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

// OrderPlaced: a customer placed an order; it is pending until the saga ends
// it, or until DeadlineAt, when it is cancelled with reason "timeout".
type OrderPlaced struct {
	OrderID    OrderID
	CustomerID CustomerID
	Lines      []OrderLine
	TotalCents int64
	PlacedAt   time.Time
	DeadlineAt time.Time // zero: no deadline
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

// Reasons an order is cancelled or rejected by the saga.
const (
	ReasonTimeout       = "timeout"
	ReasonPaymentFailed = "payment failed"
	ReasonOutOfStock    = "out of stock"
	ReasonCustomer      = "customer request"
)

// OrderConfirmed: the order's stock is reserved and its payment captured.
type OrderConfirmed struct {
	OrderID     OrderID
	ConfirmedAt time.Time
}

// OrderRejected: the order could not be served (no stock); nothing was reserved.
type OrderRejected struct {
	OrderID    OrderID
	Reason     string
	RejectedAt time.Time
}

// StockReserved: units of a SKU were set aside for an order (sku- stream).
type StockReserved struct {
	SKU      SKU
	OrderID  OrderID
	Quantity int64
}

// StockReleased: units reserved for (or committed to) an order went back
// to the stock available (sku- stream). Committed tells which.
type StockReleased struct {
	SKU       SKU
	OrderID   OrderID
	Quantity  int64
	Committed bool
}

// StockCommitted: reserved units left the stock for a confirmed order (sku- stream).
type StockCommitted struct {
	SKU      SKU
	OrderID  OrderID
	Quantity int64
}

// InventoryReserved: every line of the order is reserved (reservation- stream).
type InventoryReserved struct {
	OrderID    OrderID
	Lines      []OrderLine
	TotalCents int64
}

// InventoryRejected: the order cannot be reserved; nothing was (reservation- stream).
type InventoryRejected struct {
	OrderID OrderID
	Reason  string
	SKU     SKU // the first line short of stock
}

// InventoryReleased: the order's reservation was undone (reservation- stream).
type InventoryReleased struct {
	OrderID OrderID
}

// InventoryCommitted: the order's reservation left the stock (reservation- stream).
type InventoryCommitted struct {
	OrderID OrderID
}

// PaymentCaptured: the provider charged the order's total (payment- stream).
type PaymentCaptured struct {
	OrderID     OrderID
	AmountCents int64
	ChargeID    string
}

// PaymentFailed: the provider declined the charge (payment- stream).
type PaymentFailed struct {
	OrderID OrderID
	Reason  string
}

// PaymentRefunded: a captured charge was given back (payment- stream).
type PaymentRefunded struct {
	OrderID     OrderID
	AmountCents int64
	ChargeID    string
}

func (OrderConfirmed) EventType() string     { return EventOrderConfirmed }
func (OrderRejected) EventType() string      { return EventOrderRejected }
func (StockReserved) EventType() string      { return EventStockReserved }
func (StockReleased) EventType() string      { return EventStockReleased }
func (StockCommitted) EventType() string     { return EventStockCommitted }
func (InventoryReserved) EventType() string  { return EventInventoryReserved }
func (InventoryRejected) EventType() string  { return EventInventoryRejected }
func (InventoryReleased) EventType() string  { return EventInventoryReleased }
func (InventoryCommitted) EventType() string { return EventInventoryCommitted }
func (PaymentCaptured) EventType() string    { return EventPaymentCaptured }
func (PaymentFailed) EventType() string      { return EventPaymentFailed }
func (PaymentRefunded) EventType() string    { return EventPaymentRefunded }

func (OrderConfirmed) SchemaVersion() int     { return 1 }
func (OrderRejected) SchemaVersion() int      { return 1 }
func (StockReserved) SchemaVersion() int      { return 1 }
func (StockReleased) SchemaVersion() int      { return 1 }
func (StockCommitted) SchemaVersion() int     { return 1 }
func (InventoryReserved) SchemaVersion() int  { return 1 }
func (InventoryRejected) SchemaVersion() int  { return 1 }
func (InventoryReleased) SchemaVersion() int  { return 1 }
func (InventoryCommitted) SchemaVersion() int { return 1 }
func (PaymentCaptured) SchemaVersion() int    { return 1 }
func (PaymentFailed) SchemaVersion() int      { return 1 }
func (PaymentRefunded) SchemaVersion() int    { return 1 }
