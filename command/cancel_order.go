package command

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/eventstore"
)

// CancelOrder cancels an order. Build it with NewCancelOrder.
type CancelOrder struct {
	OrderID orderflow.OrderID
	Reason  string
}

// NewCancelOrder validates a cancellation: the order id and a reason of at
// most MaxReasonLength characters. It returns a *orderflow.ValidationError.
func NewCancelOrder(orderID, reason string) (CancelOrder, error) {
	v := &orderflow.ValidationError{}
	id, err := orderflow.ParseOrderID("id", orderID)
	v.Merge(err)
	switch {
	case utf8.RuneCountInString(reason) > orderflow.MaxReasonLength:
		v.Add("reason", fmt.Sprintf("must be at most %d characters", orderflow.MaxReasonLength))
	case strings.IndexByte(reason, 0) >= 0: // the event store cannot hold it
		v.Add("reason", "must not contain NUL characters")
	}
	if err := v.Err(); err != nil {
		return CancelOrder{}, err
	}
	return CancelOrder{OrderID: id, Reason: reason}, nil
}

// DecideCancelOrder returns the events that cancel o. It fails with
// orderflow.ErrNotFound if o does not exist and orderflow.ErrConflict if o is
// already cancelled or was rejected. A confirmed order may be cancelled; the
// saga then refunds and releases it.
func DecideCancelOrder(o Order, cmd CancelOrder, now time.Time) ([]orderflow.Event, error) {
	switch {
	case !o.Exists():
		return nil, fmt.Errorf("order %s: %w", cmd.OrderID, orderflow.ErrNotFound)
	case o.Status == StatusCancelled:
		return nil, fmt.Errorf("order %s is already cancelled: %w", cmd.OrderID, orderflow.ErrConflict)
	case o.Status == StatusRejected:
		return nil, fmt.Errorf("order %s was rejected: %w", cmd.OrderID, orderflow.ErrConflict)
	}
	reason := cmd.Reason
	if reason == "" {
		reason = "customer request"
	}
	return []orderflow.Event{orderflow.OrderCancelled{OrderID: o.ID, Reason: reason, CancelledAt: now.UTC()}}, nil
}

// CancelOrderHandler cancels orders.
type CancelOrderHandler struct {
	store EventStore
	now   func() time.Time
}

// NewCancelOrderHandler returns a handler over store.
func NewCancelOrderHandler(store EventStore, now func() time.Time) (*CancelOrderHandler, error) {
	if store == nil || now == nil {
		return nil, errors.New("command: NewCancelOrderHandler: nil dependency")
	}
	return &CancelOrderHandler{store: store, now: now}, nil
}

// Handle cancels the order. Besides DecideCancelOrder's errors it returns
// eventstore.ErrConcurrency if the order changed between read and append.
func (h *CancelOrderHandler) Handle(ctx context.Context, cmd CancelOrder, meta Meta) (Accepted, error) {
	if acc, done, err := replay(ctx, h.store, meta); done {
		return acc, err
	}
	o, err := loadOrder(ctx, h.store, cmd.OrderID)
	if err != nil {
		return Accepted{}, err
	}
	events, err := DecideCancelOrder(o, cmd, h.now())
	if err != nil {
		// A retry of a request still in flight: the first may have
		// cancelled the order between the lookup above and the load, and
		// then its result is the answer, not "already cancelled".
		if acc, done, rerr := replay(ctx, h.store, meta); done && (rerr == nil || errors.Is(rerr, eventstore.ErrCommandIDReused)) {
			return acc, rerr
		}
		return Accepted{}, err // the lookup failing too tells nothing new
	}
	return appendEvents(ctx, h.store, meta, cmd.OrderID.Stream(), eventstore.Exactly(o.Version), events)
}
