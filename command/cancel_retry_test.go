package command_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/command"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/internal/dbtest"
)

// lookupHook is the real store, with after run once, right after the first
// command lookup answered.
type lookupHook struct {
	*eventstore.Store
	once  sync.Once
	after func()
}

func (h *lookupHook) LookupCommand(ctx context.Context, id string) (eventstore.CommandRecord, error) {
	rec, err := h.Store.LookupCommand(ctx, id)
	h.once.Do(h.after)
	return rec, err
}

// A retried cancel whose first request commits between the retry's command
// lookup and its read of the order answers with the first request's result,
// not "already cancelled": a client that timed out and retried with the
// same key learns its cancel worked.
func TestRetriedCancelRacingItsFirstRequestGetsItsResult(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, err := eventstore.New(dbtest.MustPool(t), eventstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	place, err := command.NewPlaceOrderHandler(store, time.Now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := command.NewPlaceOrder("c-1", []command.LineInput{{SKU: "SKU-1", Quantity: 1, UnitPriceCents: 100}})
	if err != nil {
		t.Fatal(err)
	}
	placed, err := place.Handle(ctx, cmd, command.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	cancel, err := command.NewCancelOrder(strings.TrimPrefix(placed.StreamID, orderflow.OrderStreamPrefix), "changed my mind")
	if err != nil {
		t.Fatal(err)
	}
	meta := command.Meta{CommandID: "idem:k", Fingerprint: "fp"}

	var first command.Accepted
	var firstErr error
	hook := &lookupHook{Store: store}
	hook.after = func() { // the first request commits now
		h, err := command.NewCancelOrderHandler(store, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		first, firstErr = h.Handle(ctx, cancel, meta)
	}
	retry, err := command.NewCancelOrderHandler(hook, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	got, err := retry.Handle(ctx, cancel, meta)
	if firstErr != nil {
		t.Fatalf("first cancel: %v", firstErr)
	}
	if err != nil || got != first {
		t.Fatalf("retry answered %+v, %v; want the first's %+v", got, err, first)
	}
}
