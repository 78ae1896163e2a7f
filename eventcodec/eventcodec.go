// Package eventcodec is the JSON form of orderflow's events: the payload
// stored in the event log and published to Kafka. Encode and Decode are the
// only way in and out, so the wire shape of each event is defined once.
//
// The JSON goes through github.com/goccy/go-json, a drop-in for
// encoding/json that decodes an OrderPlaced payload about four times faster
// with half the allocations (2.8 µs → 0.63 µs on the bench machine):
// decoding events is most of the CPU a rebuild and a consumer spend in Go.
// The event store's metadata and the views' stored lines use it too; the
// HTTP APIs keep encoding/json, whose errors their 400 responses quote.
package eventcodec

import (
	"errors"
	"fmt"
	"time"

	json "github.com/goccy/go-json"

	"github.com/orderflow/orderflow"
)

// ErrUnknownEvent: the type or schema version has no decoder.
var ErrUnknownEvent = errors.New("eventcodec: unknown event type or schema version")

type lineV1 struct {
	SKU            string `json:"sku"`
	Quantity       int64  `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

func linesOut(lines []orderflow.OrderLine) []lineV1 {
	out := make([]lineV1, len(lines))
	for i, l := range lines {
		out[i] = lineV1{SKU: string(l.SKU), Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents}
	}
	return out
}

func linesIn(lines []lineV1) []orderflow.OrderLine {
	out := make([]orderflow.OrderLine, len(lines))
	for i, l := range lines {
		out[i] = orderflow.OrderLine{SKU: orderflow.SKU(l.SKU), Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents}
	}
	return out
}

type orderPlacedV1 struct {
	OrderID    string     `json:"order_id"`
	CustomerID string     `json:"customer_id"`
	Lines      []lineV1   `json:"lines"`
	TotalCents int64      `json:"total_cents"`
	PlacedAt   time.Time  `json:"placed_at"`
	DeadlineAt *time.Time `json:"deadline_at,omitempty"`
}

type orderCancelledV1 struct {
	OrderID     string    `json:"order_id"`
	Reason      string    `json:"reason,omitempty"`
	CancelledAt time.Time `json:"cancelled_at"`
}

type orderConfirmedV1 struct {
	OrderID     string    `json:"order_id"`
	ConfirmedAt time.Time `json:"confirmed_at"`
}

type orderRejectedV1 struct {
	OrderID    string    `json:"order_id"`
	Reason     string    `json:"reason"`
	RejectedAt time.Time `json:"rejected_at"`
}

type stockAddedV1 struct {
	SKU      string    `json:"sku"`
	Quantity int64     `json:"quantity"`
	AddedAt  time.Time `json:"added_at"`
}

type stockMoveV1 struct {
	SKU       string `json:"sku"`
	OrderID   string `json:"order_id"`
	Quantity  int64  `json:"quantity"`
	Committed bool   `json:"committed,omitempty"`
}

type inventoryV1 struct {
	OrderID    string   `json:"order_id"`
	Lines      []lineV1 `json:"lines,omitempty"`
	TotalCents int64    `json:"total_cents,omitempty"`
	Reason     string   `json:"reason,omitempty"`
	SKU        string   `json:"sku,omitempty"`
}

type paymentV1 struct {
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents,omitempty"`
	ChargeID    string `json:"charge_id,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// Encode returns the JSON payload of e.
func Encode(e orderflow.Event) ([]byte, error) {
	var v any
	switch e := e.(type) {
	case orderflow.OrderPlaced:
		w := orderPlacedV1{OrderID: e.OrderID.String(), CustomerID: string(e.CustomerID), Lines: linesOut(e.Lines),
			TotalCents: e.TotalCents, PlacedAt: e.PlacedAt.UTC()}
		if !e.DeadlineAt.IsZero() {
			d := e.DeadlineAt.UTC()
			w.DeadlineAt = &d
		}
		v = w
	case orderflow.OrderCancelled:
		v = orderCancelledV1{OrderID: e.OrderID.String(), Reason: e.Reason, CancelledAt: e.CancelledAt.UTC()}
	case orderflow.OrderConfirmed:
		v = orderConfirmedV1{OrderID: e.OrderID.String(), ConfirmedAt: e.ConfirmedAt.UTC()}
	case orderflow.OrderRejected:
		v = orderRejectedV1{OrderID: e.OrderID.String(), Reason: e.Reason, RejectedAt: e.RejectedAt.UTC()}
	case orderflow.StockAdded:
		v = stockAddedV1{SKU: string(e.SKU), Quantity: e.Quantity, AddedAt: e.AddedAt.UTC()}
	case orderflow.StockReserved:
		v = stockMoveV1{SKU: string(e.SKU), OrderID: e.OrderID.String(), Quantity: e.Quantity}
	case orderflow.StockReleased:
		v = stockMoveV1{SKU: string(e.SKU), OrderID: e.OrderID.String(), Quantity: e.Quantity, Committed: e.Committed}
	case orderflow.StockCommitted:
		v = stockMoveV1{SKU: string(e.SKU), OrderID: e.OrderID.String(), Quantity: e.Quantity}
	case orderflow.InventoryReserved:
		v = inventoryV1{OrderID: e.OrderID.String(), Lines: linesOut(e.Lines), TotalCents: e.TotalCents}
	case orderflow.InventoryRejected:
		v = inventoryV1{OrderID: e.OrderID.String(), Reason: e.Reason, SKU: string(e.SKU)}
	case orderflow.InventoryReleased:
		v = inventoryV1{OrderID: e.OrderID.String()}
	case orderflow.InventoryCommitted:
		v = inventoryV1{OrderID: e.OrderID.String()}
	case orderflow.PaymentCaptured:
		v = paymentV1{OrderID: e.OrderID.String(), AmountCents: e.AmountCents, ChargeID: e.ChargeID}
	case orderflow.PaymentFailed:
		v = paymentV1{OrderID: e.OrderID.String(), Reason: e.Reason}
	case orderflow.PaymentRefunded:
		v = paymentV1{OrderID: e.OrderID.String(), AmountCents: e.AmountCents, ChargeID: e.ChargeID}
	default:
		return nil, fmt.Errorf("%w: %T", ErrUnknownEvent, e)
	}
	return json.Marshal(v)
}

// Decode returns the event of type typ and schema version sv from its JSON
// payload. It returns ErrUnknownEvent for a type or version it does not know.
func Decode(typ string, sv int, data []byte) (orderflow.Event, error) {
	if sv != 1 {
		return nil, fmt.Errorf("%w: %s v%d", ErrUnknownEvent, typ, sv)
	}
	e, err := decodeV1(typ, data)
	if err != nil && !errors.Is(err, ErrUnknownEvent) {
		return nil, fmt.Errorf("eventcodec: %s: %w", typ, err)
	}
	return e, err
}

func decodeV1(typ string, data []byte) (orderflow.Event, error) {
	unmarshal := func(v any) error { return json.Unmarshal(data, v) }
	order := func(s string) (orderflow.OrderID, error) { return orderflow.ParseOrderID("order_id", s) }
	switch typ {
	case orderflow.EventOrderPlaced:
		var w orderPlacedV1
		if err := unmarshal(&w); err != nil {
			return nil, err
		}
		id, err := order(w.OrderID)
		if err != nil {
			return nil, err
		}
		e := orderflow.OrderPlaced{OrderID: id, CustomerID: orderflow.CustomerID(w.CustomerID), Lines: linesIn(w.Lines),
			TotalCents: w.TotalCents, PlacedAt: w.PlacedAt}
		if w.DeadlineAt != nil {
			e.DeadlineAt = *w.DeadlineAt
		}
		return e, nil
	case orderflow.EventOrderCancelled:
		var w orderCancelledV1
		if err := unmarshal(&w); err != nil {
			return nil, err
		}
		id, err := order(w.OrderID)
		return orderflow.OrderCancelled{OrderID: id, Reason: w.Reason, CancelledAt: w.CancelledAt}, err
	case orderflow.EventOrderConfirmed:
		var w orderConfirmedV1
		if err := unmarshal(&w); err != nil {
			return nil, err
		}
		id, err := order(w.OrderID)
		return orderflow.OrderConfirmed{OrderID: id, ConfirmedAt: w.ConfirmedAt}, err
	case orderflow.EventOrderRejected:
		var w orderRejectedV1
		if err := unmarshal(&w); err != nil {
			return nil, err
		}
		id, err := order(w.OrderID)
		return orderflow.OrderRejected{OrderID: id, Reason: w.Reason, RejectedAt: w.RejectedAt}, err
	case orderflow.EventStockAdded:
		var w stockAddedV1
		if err := unmarshal(&w); err != nil {
			return nil, err
		}
		return orderflow.StockAdded{SKU: orderflow.SKU(w.SKU), Quantity: w.Quantity, AddedAt: w.AddedAt}, nil
	case orderflow.EventStockReserved, orderflow.EventStockReleased, orderflow.EventStockCommitted:
		var w stockMoveV1
		if err := unmarshal(&w); err != nil {
			return nil, err
		}
		id, err := order(w.OrderID)
		if err != nil {
			return nil, err
		}
		sku := orderflow.SKU(w.SKU)
		switch typ {
		case orderflow.EventStockReserved:
			return orderflow.StockReserved{SKU: sku, OrderID: id, Quantity: w.Quantity}, nil
		case orderflow.EventStockReleased:
			return orderflow.StockReleased{SKU: sku, OrderID: id, Quantity: w.Quantity, Committed: w.Committed}, nil
		}
		return orderflow.StockCommitted{SKU: sku, OrderID: id, Quantity: w.Quantity}, nil
	case orderflow.EventInventoryReserved, orderflow.EventInventoryRejected, orderflow.EventInventoryReleased, orderflow.EventInventoryCommitted:
		var w inventoryV1
		if err := unmarshal(&w); err != nil {
			return nil, err
		}
		id, err := order(w.OrderID)
		if err != nil {
			return nil, err
		}
		switch typ {
		case orderflow.EventInventoryReserved:
			return orderflow.InventoryReserved{OrderID: id, Lines: linesIn(w.Lines), TotalCents: w.TotalCents}, nil
		case orderflow.EventInventoryRejected:
			return orderflow.InventoryRejected{OrderID: id, Reason: w.Reason, SKU: orderflow.SKU(w.SKU)}, nil
		case orderflow.EventInventoryReleased:
			return orderflow.InventoryReleased{OrderID: id}, nil
		}
		return orderflow.InventoryCommitted{OrderID: id}, nil
	case orderflow.EventPaymentCaptured, orderflow.EventPaymentFailed, orderflow.EventPaymentRefunded:
		var w paymentV1
		if err := unmarshal(&w); err != nil {
			return nil, err
		}
		id, err := order(w.OrderID)
		if err != nil {
			return nil, err
		}
		switch typ {
		case orderflow.EventPaymentCaptured:
			return orderflow.PaymentCaptured{OrderID: id, AmountCents: w.AmountCents, ChargeID: w.ChargeID}, nil
		case orderflow.EventPaymentFailed:
			return orderflow.PaymentFailed{OrderID: id, Reason: w.Reason}, nil
		}
		return orderflow.PaymentRefunded{OrderID: id, AmountCents: w.AmountCents, ChargeID: w.ChargeID}, nil
	}
	return nil, fmt.Errorf("%w: %s v1", ErrUnknownEvent, typ)
}
