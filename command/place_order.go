package command

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/eventstore"
)

// LineInput is one order line as a client sent it, before validation.
type LineInput struct {
	SKU            string
	Quantity       int64
	UnitPriceCents int64
}

// PlaceOrder places a new order for a customer. Build it with NewPlaceOrder.
type PlaceOrder struct {
	CustomerID orderflow.CustomerID
	Lines      []orderflow.OrderLine
}

// NewPlaceOrder validates a client's order and returns the command, or a
// *orderflow.ValidationError listing every problem: customer id format, 1 to
// MaxOrderLines lines, SKU format, no SKU twice, quantity 1..MaxLineQuantity,
// unit price 0..MaxUnitPriceCents.
func NewPlaceOrder(customerID string, lines []LineInput) (PlaceOrder, error) {
	v := &orderflow.ValidationError{}
	cid, err := orderflow.ParseCustomerID("customer_id", customerID)
	v.Merge(err)
	switch {
	case len(lines) == 0:
		v.Add("lines", "must hold at least one line")
	case len(lines) > orderflow.MaxOrderLines:
		v.Add("lines", fmt.Sprintf("must hold at most %d lines, got %d", orderflow.MaxOrderLines, len(lines)))
	}
	out := make([]orderflow.OrderLine, 0, len(lines))
	seen := make(map[orderflow.SKU]int, len(lines))
	for i, l := range lines {
		if i >= orderflow.MaxOrderLines {
			break
		}
		field := func(name string) string { return fmt.Sprintf("lines[%d].%s", i, name) }
		sku, err := orderflow.ParseSKU(field("sku"), l.SKU)
		v.Merge(err)
		if err == nil {
			if j, dup := seen[sku]; dup {
				v.Add(field("sku"), fmt.Sprintf("SKU %s is already on line %d; put the quantity on one line", sku, j))
			}
			seen[sku] = i
		}
		if l.Quantity < 1 || l.Quantity > orderflow.MaxLineQuantity {
			v.Add(field("quantity"), fmt.Sprintf("must be between 1 and %d", orderflow.MaxLineQuantity))
		}
		if l.UnitPriceCents < 0 || l.UnitPriceCents > orderflow.MaxUnitPriceCents {
			v.Add(field("unit_price_cents"), fmt.Sprintf("must be between 0 and %d", orderflow.MaxUnitPriceCents))
		}
		out = append(out, orderflow.OrderLine{SKU: sku, Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents})
	}
	if err := v.Err(); err != nil {
		return PlaceOrder{}, err
	}
	return PlaceOrder{CustomerID: cid, Lines: out}, nil
}

// DecidePlaceOrder returns the events that place cmd as order id at now,
// due to end by now+deadline (no deadline when it is 0). cmd must come from
// NewPlaceOrder.
func DecidePlaceOrder(id orderflow.OrderID, cmd PlaceOrder, now time.Time, deadline time.Duration) []orderflow.Event {
	var total int64
	for _, l := range cmd.Lines {
		total += l.Quantity * l.UnitPriceCents // bounded: 50 × 10^4 × 10^8 < 2^63
	}
	placed := orderflow.OrderPlaced{OrderID: id, CustomerID: cmd.CustomerID, Lines: cmd.Lines, TotalCents: total, PlacedAt: now.UTC()}
	if deadline > 0 {
		placed.DeadlineAt = placed.PlacedAt.Add(deadline)
	}
	return []orderflow.Event{placed}
}

// PlaceOrderHandler places orders.
type PlaceOrderHandler struct {
	store    EventStore
	now      func() time.Time
	deadline time.Duration
}

// NewPlaceOrderHandler returns a handler appending to store; orders it
// places are due to end within deadline (0: never).
func NewPlaceOrderHandler(store EventStore, now func() time.Time, deadline time.Duration) (*PlaceOrderHandler, error) {
	if store == nil || now == nil {
		return nil, errors.New("command: NewPlaceOrderHandler: nil dependency")
	}
	if deadline < 0 {
		return nil, errors.New("command: NewPlaceOrderHandler: negative deadline")
	}
	return &PlaceOrderHandler{store: store, now: now, deadline: deadline}, nil
}

// Handle places the order under a new id and returns where its stream stands.
// With meta.CommandID set, a retry of the same command returns the first
// result and a different command under the same id fails with
// eventstore.ErrCommandIDReused.
func (h *PlaceOrderHandler) Handle(ctx context.Context, cmd PlaceOrder, meta Meta) (Accepted, error) {
	if acc, done, err := replay(ctx, h.store, meta); done {
		return acc, err
	}
	id := orderflow.NewOrderID()
	events := DecidePlaceOrder(id, cmd, h.now(), h.deadline)
	return appendEvents(ctx, h.store, meta, id.Stream(), eventstore.NoStream, events)
}
