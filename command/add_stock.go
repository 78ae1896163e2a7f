package command

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/eventstore"
)

// AddStock adds units of a SKU to the stock on hand. Build it with NewAddStock.
type AddStock struct {
	SKU      orderflow.SKU
	Quantity int64
}

// NewAddStock validates the SKU and a quantity of 1..MaxStockAddition, or
// returns a *orderflow.ValidationError.
func NewAddStock(sku string, quantity int64) (AddStock, error) {
	v := &orderflow.ValidationError{}
	s, err := orderflow.ParseSKU("sku", sku)
	v.Merge(err)
	if quantity < 1 || quantity > orderflow.MaxStockAddition {
		v.Add("quantity", fmt.Sprintf("must be between 1 and %d", orderflow.MaxStockAddition))
	}
	if err := v.Err(); err != nil {
		return AddStock{}, err
	}
	return AddStock{SKU: s, Quantity: quantity}, nil
}

// DecideAddStock returns the events that add the stock.
func DecideAddStock(cmd AddStock, now time.Time) []orderflow.Event {
	return []orderflow.Event{orderflow.StockAdded{SKU: cmd.SKU, Quantity: cmd.Quantity, AddedAt: now.UTC()}}
}

// AddStockHandler adds stock.
type AddStockHandler struct {
	store EventStore
	now   func() time.Time
}

// NewAddStockHandler returns a handler appending to store.
func NewAddStockHandler(store EventStore, now func() time.Time) (*AddStockHandler, error) {
	if store == nil || now == nil {
		return nil, errors.New("command: NewAddStockHandler: nil dependency")
	}
	return &AddStockHandler{store: store, now: now}, nil
}

// Handle appends the addition. Additions commute, so it appends at any
// version and never conflicts; reservations check the stream's version.
func (h *AddStockHandler) Handle(ctx context.Context, cmd AddStock, meta Meta) (Accepted, error) {
	if acc, done, err := replay(ctx, h.store, meta); done {
		return acc, err
	}
	return appendEvents(ctx, h.store, meta, cmd.SKU.Stream(), eventstore.Any, DecideAddStock(cmd, h.now()))
}
