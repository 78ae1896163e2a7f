package saga

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/command"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/internal/dbtest"
	"github.com/orderflow/orderflow/paymentprovider"
)

// noProvider is a Provider for reactions that never pay.
type noProvider struct{}

func (noProvider) Charge(context.Context, string, int64, string) (paymentprovider.Charge, error) {
	panic("no charge expected")
}
func (noProvider) Void(context.Context, string) (paymentprovider.Charge, error) {
	panic("no void expected")
}
func (noProvider) Refund(context.Context, string, int64, string) (paymentprovider.Refund, error) {
	panic("no refund expected")
}

// world is participants over a fresh database, with the command handlers
// that make their triggers.
type world struct {
	p     *Participants
	store *eventstore.Store
}

func mustWorld(t *testing.T) world {
	t.Helper()
	pool := dbtest.MustPool(t)
	store, err := eventstore.New(pool, eventstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	p, err := New(store, noProvider{}, pool, time.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return world{p: p, store: store}
}

func (w world) addStock(t *testing.T, sku string, qty int64) {
	t.Helper()
	h, _ := command.NewAddStockHandler(w.store, time.Now)
	add, err := command.NewAddStock(sku, qty)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Handle(context.Background(), add, command.Meta{}); err != nil {
		t.Fatal(err)
	}
}

// place places an order of lines and returns its id and its OrderPlaced.
func (w world) place(t *testing.T, lines ...command.LineInput) (orderflow.OrderID, eventstore.Event) {
	t.Helper()
	ctx := context.Background()
	h, _ := command.NewPlaceOrderHandler(w.store, time.Now, 0)
	cmd, err := command.NewPlaceOrder("c-1", lines)
	if err != nil {
		t.Fatal(err)
	}
	acc, err := h.Handle(ctx, cmd, command.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	placed, err := w.store.ReadStream(ctx, acc.StreamID, 1, 1)
	if err != nil || len(placed) != 1 {
		t.Fatalf("OrderPlaced: %v, %v", placed, err)
	}
	id, err := orderflow.ParseOrderID("id", acc.StreamID[len(orderflow.OrderStreamPrefix):])
	if err != nil {
		t.Fatal(err)
	}
	return id, placed[0]
}

// A settle batch holding a stale commit and then a release of one order
// (the commit queued before a restart, then made by another process, then
// the order cancelled) releases it: every item is decided on what the ones
// before it left, not only the first item of each order.
func TestASettleBatchDecidesEveryItemOfAnOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := mustWorld(t)
	p, store := w.p, w.store
	w.addStock(t, "PEAR", 5)
	id, placed := w.place(t, command.LineInput{SKU: "PEAR", Quantity: 2, UnitPriceCents: 10})
	if err := p.inventory(ctx, placed); err != nil {
		t.Fatal(err)
	}
	reserved, err := p.reservation(ctx, id)
	if err != nil || reserved.Status != ReservationReserved {
		t.Fatalf("reservation %+v, %v; want reserved", reserved, err)
	}
	trigger := func() eventstore.Event { return eventstore.Event{ID: uuid.New(), StreamID: id.Stream()} }
	// Another process commits it.
	if err := p.settle(ctx, trigger(), "inventory:commit", id, DecideCommit); err != nil {
		t.Fatal(err)
	}
	committed, err := p.reservation(ctx, id)
	if err != nil || !committed.Committed {
		t.Fatalf("reservation %+v, %v; want committed", committed, err)
	}
	// Here: the stale commit, read before, then the release.
	if err := p.settleBatch([]orderflow.SKU{"PEAR"}, []toSettle{
		{trigger: trigger(), action: "inventory:commit", id: id, res: reserved, decide: DecideCommit},
		{trigger: trigger(), action: "inventory:release", id: id, res: committed, decide: DecideRelease},
	}); err != nil {
		t.Fatal(err)
	}
	events, err := store.ReadStream(ctx, id.ReservationStream(), 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range events {
		types = append(types, e.Type)
	}
	if !slices.Equal(types, []string{orderflow.EventInventoryReserved, orderflow.EventInventoryCommitted, orderflow.EventInventoryReleased}) {
		t.Fatalf("reservation stream %v; want reserved, committed, released", types)
	}
}

// size returns how many SKU lists have a batcher now.
func (s *skuBatchers[T]) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// The inventory keeps no batcher for an SKU list once its items are
// answered: orders of many lines name lists that are mostly all different,
// and batchers kept for good grew with every order.
func TestSKUBatchersDoNotOutliveTheirItems(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := mustWorld(t)
	p := w.p
	const orders = 20
	for i := range orders + 1 {
		w.addStock(t, "S"+string(rune('A'+i)), 10)
	}
	for i := range orders { // each names its own pair of SKUs
		id, placed := w.place(t, command.LineInput{SKU: "S" + string(rune('A'+i)), Quantity: 1, UnitPriceCents: 10},
			command.LineInput{SKU: "S" + string(rune('A'+i+1)), Quantity: 1, UnitPriceCents: 10})
		if err := p.inventory(ctx, placed); err != nil {
			t.Fatal(err)
		}
		trigger := eventstore.Event{ID: uuid.New(), StreamID: id.Stream()}
		if err := p.settle(ctx, trigger, "inventory:commit", id, DecideCommit); err != nil {
			t.Fatal(err)
		}
	}
	if r, s := p.reservers.size(), p.settlers.size(); r != 0 || s != 0 {
		t.Fatalf("%d reservation and %d settle batchers kept after %d orders were answered; want none", r, s, orders)
	}
}

// A reaction that must fold a stored event this build cannot decode fails
// as malformed, a dead letter, instead of being retried for good while it
// holds its partition's later messages back.
func TestAnUndecodableStoredEventIsMalformed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := mustWorld(t)
	if _, err := w.store.Append(ctx, eventstore.Append{Streams: []eventstore.StreamAppend{{
		StreamID: orderflow.SKU("PLUM").Stream(), Expected: eventstore.NoStream,
		Events: []eventstore.EventData{{Type: orderflow.EventStockAdded, SchemaVersion: 1, Data: []byte(`{"sku":42}`)}},
	}}}); err != nil {
		t.Fatal(err)
	}
	_, placed := w.place(t, command.LineInput{SKU: "PLUM", Quantity: 1, UnitPriceCents: 10})
	if err := w.p.inventory(ctx, placed); !errors.Is(err, ErrMalformed) {
		t.Fatalf("reserving on a SKU stream holding an undecodable event: %v, want ErrMalformed", err)
	}
}

// An order cancelled before its OrderPlaced reached the inventory (its
// deadline passed while the relay was behind) reserves nothing, so an order
// placed after it gets the stock instead of being rejected for stock that
// was free all along.
func TestAnOrderCancelledBeforeTheInventorySawItReservesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := mustWorld(t)
	p := w.p
	w.addStock(t, "FIG", 5)
	cancel, _ := command.NewCancelOrderHandler(w.store, time.Now)
	placeFive := func() (orderflow.OrderID, eventstore.Event) {
		return w.place(t, command.LineInput{SKU: "FIG", Quantity: 5, UnitPriceCents: 10})
	}
	gone, gonePlaced := placeFive()
	c, _ := command.NewCancelOrder(gone.String(), "timeout")
	if _, err := cancel.Handle(ctx, c, command.Meta{}); err != nil {
		t.Fatal(err)
	}
	live, livePlaced := placeFive()
	for _, e := range []eventstore.Event{gonePlaced, livePlaced} {
		if err := p.inventory(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if res, err := p.reservation(ctx, gone); err != nil || res.Version != 0 {
		t.Fatalf("the cancelled order's reservation: %+v, %v; want none", res, err)
	}
	if res, err := p.reservation(ctx, live); err != nil || res.Status != ReservationReserved {
		t.Fatalf("the live order's reservation: %+v, %v; want reserved", res, err)
	}
}

// An order whose own stream cannot be decoded fails alone in its
// reservation batch; the other orders of the batch are reserved.
func TestAMalformedOrderFailsAloneInItsBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := mustWorld(t)
	w.addStock(t, "KIWI", 5)
	line := command.LineInput{SKU: "KIWI", Quantity: 1, UnitPriceCents: 10}
	bad, badPlaced := w.place(t, line)
	good, goodPlaced := w.place(t, line)
	if _, err := w.store.Append(ctx, eventstore.Append{Streams: []eventstore.StreamAppend{{
		StreamID: bad.Stream(), Expected: eventstore.Any,
		Events: []eventstore.EventData{{Type: orderflow.EventOrderCancelled, SchemaVersion: 1, Data: []byte(`{"order_id":42}`)}},
	}}}); err != nil {
		t.Fatal(err)
	}
	var items []toReserve
	for _, e := range []eventstore.Event{badPlaced, goodPlaced} {
		payload, err := decode(e)
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, toReserve{trigger: e, placed: payload.(orderflow.OrderPlaced)})
	}
	errs := w.p.reserveBatch([]orderflow.SKU{"KIWI"}, items)
	if !errors.Is(errs[0], ErrMalformed) || errs[1] != nil {
		t.Fatalf("errors %v; want the malformed order's alone", errs)
	}
	if res, err := w.p.reservation(ctx, good); err != nil || res.Status != ReservationReserved {
		t.Fatalf("the good order's reservation: %+v, %v; want reserved", res, err)
	}
}
