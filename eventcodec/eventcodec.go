// Package eventcodec is the JSON form of orderflow's events: the payload
// stored in the event log and published to Kafka. Encode and Decode are the
// only way in and out, so the wire shape of each event is defined once.
package eventcodec

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/orderflow/orderflow"
)

// ErrUnknownEvent: the type or schema version has no decoder.
var ErrUnknownEvent = errors.New("eventcodec: unknown event type or schema version")

type orderLineV1 struct {
	SKU            string `json:"sku"`
	Quantity       int64  `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

type orderPlacedV1 struct {
	OrderID    string        `json:"order_id"`
	CustomerID string        `json:"customer_id"`
	Lines      []orderLineV1 `json:"lines"`
	TotalCents int64         `json:"total_cents"`
	PlacedAt   time.Time     `json:"placed_at"`
}

type orderCancelledV1 struct {
	OrderID     string    `json:"order_id"`
	Reason      string    `json:"reason,omitempty"`
	CancelledAt time.Time `json:"cancelled_at"`
}

type stockAddedV1 struct {
	SKU      string    `json:"sku"`
	Quantity int64     `json:"quantity"`
	AddedAt  time.Time `json:"added_at"`
}

// Encode returns the JSON payload of e.
func Encode(e orderflow.Event) ([]byte, error) {
	var v any
	switch e := e.(type) {
	case orderflow.OrderPlaced:
		lines := make([]orderLineV1, len(e.Lines))
		for i, l := range e.Lines {
			lines[i] = orderLineV1{SKU: string(l.SKU), Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents}
		}
		v = orderPlacedV1{OrderID: e.OrderID.String(), CustomerID: string(e.CustomerID), Lines: lines,
			TotalCents: e.TotalCents, PlacedAt: e.PlacedAt.UTC()}
	case orderflow.OrderCancelled:
		v = orderCancelledV1{OrderID: e.OrderID.String(), Reason: e.Reason, CancelledAt: e.CancelledAt.UTC()}
	case orderflow.StockAdded:
		v = stockAddedV1{SKU: string(e.SKU), Quantity: e.Quantity, AddedAt: e.AddedAt.UTC()}
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
	switch typ {
	case orderflow.EventOrderPlaced:
		var w orderPlacedV1
		if err := json.Unmarshal(data, &w); err != nil {
			return nil, fmt.Errorf("eventcodec: %s: %w", typ, err)
		}
		id, err := orderflow.ParseOrderID("order_id", w.OrderID)
		if err != nil {
			return nil, fmt.Errorf("eventcodec: %s: %w", typ, err)
		}
		lines := make([]orderflow.OrderLine, len(w.Lines))
		for i, l := range w.Lines {
			lines[i] = orderflow.OrderLine{SKU: orderflow.SKU(l.SKU), Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents}
		}
		return orderflow.OrderPlaced{OrderID: id, CustomerID: orderflow.CustomerID(w.CustomerID), Lines: lines,
			TotalCents: w.TotalCents, PlacedAt: w.PlacedAt}, nil
	case orderflow.EventOrderCancelled:
		var w orderCancelledV1
		if err := json.Unmarshal(data, &w); err != nil {
			return nil, fmt.Errorf("eventcodec: %s: %w", typ, err)
		}
		id, err := orderflow.ParseOrderID("order_id", w.OrderID)
		if err != nil {
			return nil, fmt.Errorf("eventcodec: %s: %w", typ, err)
		}
		return orderflow.OrderCancelled{OrderID: id, Reason: w.Reason, CancelledAt: w.CancelledAt}, nil
	case orderflow.EventStockAdded:
		var w stockAddedV1
		if err := json.Unmarshal(data, &w); err != nil {
			return nil, fmt.Errorf("eventcodec: %s: %w", typ, err)
		}
		return orderflow.StockAdded{SKU: orderflow.SKU(w.SKU), Quantity: w.Quantity, AddedAt: w.AddedAt}, nil
	}
	return nil, fmt.Errorf("%w: %s v%d", ErrUnknownEvent, typ, sv)
}
