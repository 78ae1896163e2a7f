package saga_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/command"
	"github.com/orderflow/orderflow/eventcodec"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/internal/dbtest"
	"github.com/orderflow/orderflow/paymentprovider"
	"github.com/orderflow/orderflow/relay"
	"github.com/orderflow/orderflow/saga"
)

// FakeProvider is an idempotent payment provider that declines the orders
// listed in Decline and counts what reached it.
type FakeProvider struct {
	mu       sync.Mutex
	During   func() // if set, called (once, then cleared) inside the next Charge, before it answers
	Decline  map[string]bool
	charges  map[string]paymentprovider.Charge // by idempotency key
	refunds  map[string]paymentprovider.Refund
	Captured int64
	Refunded int64
}

var _ saga.Provider = (*FakeProvider)(nil)

func (f *FakeProvider) Charge(_ context.Context, orderID string, amount int64, key string) (paymentprovider.Charge, error) {
	f.mu.Lock()
	during := f.During
	f.During = nil
	f.mu.Unlock()
	if during != nil {
		during()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.charges[key]; ok {
		return c, nil
	}
	c := paymentprovider.Charge{ID: "ch-" + orderID, Status: paymentprovider.StatusCaptured}
	if f.Decline[orderID] {
		c = paymentprovider.Charge{Status: paymentprovider.StatusDeclined, DeclineReason: "card_declined"}
	} else {
		f.Captured += amount
	}
	f.charges[key] = c
	return c, nil
}

// Void returns the charge made under key, or voids key, as the provider's
// POST /v1/voids does: every later charge under it is declined.
func (f *FakeProvider) Void(_ context.Context, key string) (paymentprovider.Charge, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.charges[key]; ok {
		return c, nil
	}
	c := paymentprovider.Charge{ID: "void-" + key, Status: paymentprovider.StatusDeclined, DeclineReason: paymentprovider.VoidedDeclineReason}
	f.charges[key] = c
	return c, nil
}

func (f *FakeProvider) Refund(_ context.Context, chargeID string, amount int64, key string) (paymentprovider.Refund, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.refunds[key]; ok {
		return r, nil
	}
	r := paymentprovider.Refund{ID: "rf-" + chargeID, ChargeID: chargeID, AmountCents: amount, Status: paymentprovider.StatusRefunded}
	f.Refunded += amount
	f.refunds[key] = r
	return r, nil
}

type world struct {
	pool     *pgxpool.Pool
	store    *eventstore.Store
	provider *FakeProvider
	saga     *saga.Participants
	api      *command.PlaceOrderHandler
	cancel   *command.CancelOrderHandler
	stock    *command.AddStockHandler
}

func MustWorld(t *testing.T, decline map[string]bool) *world {
	t.Helper()
	pool := dbtest.MustPool(t)
	store, err := eventstore.New(pool, eventstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	provider := &FakeProvider{Decline: decline, charges: map[string]paymentprovider.Charge{}, refunds: map[string]paymentprovider.Refund{}}
	p, err := saga.New(store, provider, pool, time.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	w := &world{pool: pool, store: store, provider: provider, saga: p}
	w.api, _ = command.NewPlaceOrderHandler(store, time.Now, 0)
	w.cancel, _ = command.NewCancelOrderHandler(store, time.Now)
	w.stock, _ = command.NewAddStockHandler(store, time.Now)
	return w
}

// deliver feeds every event of the log, in the log's order, to the saga's
// reactions for its topic, times times each, until no reaction appends
// anything new. It plays the relay and Kafka.
func (w *world) deliver(t *testing.T, times int) {
	t.Helper()
	ctx := context.Background()
	var pos eventstore.Position
	seen := 0
	deadline := time.Now().Add(time.Minute)
	for {
		events, err := w.store.ReadAll(ctx, pos, 500)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) == 0 {
			var total int
			if err := w.pool.QueryRow(ctx, "select count(*) from events").Scan(&total); err != nil {
				t.Fatal(err)
			}
			if total == seen {
				return // every event delivered, and the reactions appended nothing more
			}
			if time.Now().After(deadline) {
				t.Fatalf("delivered %d of %d events within a minute", seen, total)
			}
			time.Sleep(10 * time.Millisecond) // an append still open holds the horizon
			continue
		}
		seen += len(events)
		for _, e := range events {
			for _, r := range w.saga.Reactions() {
				// As the consumers do: only its topic, only its types (so a
				// type missing from Types fails these tests).
				if r.Context != relay.ContextOf(e.StreamID) || !slices.Contains(r.Types, e.Type) {
					continue
				}
				for range times {
					if err := r.Handle(ctx, e); err != nil {
						t.Fatalf("%s on %s@%d: %v", r.Name, e.StreamID, e.Version, err)
					}
				}
			}
		}
		pos = events[len(events)-1].Position
	}
}

// history returns every stream's event types, in order.
func (w *world) history(t *testing.T, streams []string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, s := range streams {
		events, err := w.store.ReadStream(context.Background(), s, 1, 0)
		if err != nil {
			continue
		}
		for _, e := range events {
			out[s] = append(out[s], e.Type)
		}
	}
	return out
}

// scenario runs the same orders in w and returns the streams to compare.
func scenario(t *testing.T, w *world, ids []orderflow.OrderID, times int) []string {
	t.Helper()
	ctx := context.Background()
	for _, sku := range []string{"A", "B"} {
		cmd, _ := command.NewAddStock(sku, 5)
		if _, err := w.stock.Handle(ctx, cmd, command.Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	streams := []string{"sku-A", "sku-B"}
	for i, id := range ids {
		// Orders with fixed ids, so two worlds can be compared stream by stream.
		cmd, err := command.NewPlaceOrder(fmt.Sprintf("c-%d", i), []command.LineInput{{SKU: []string{"A", "B"}[i%2], Quantity: int64(1 + i%3), UnitPriceCents: 100}})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range command.DecidePlaceOrder(id, cmd, time.Now(), 0) {
			data, _ := eventcodec.Encode(e)
			if _, err := w.store.Append(ctx, eventstore.Append{Streams: []eventstore.StreamAppend{{StreamID: id.Stream(), Expected: eventstore.NoStream,
				Events: []eventstore.EventData{{Type: e.EventType(), SchemaVersion: 1, Data: data}}}}}); err != nil {
				t.Fatal(err)
			}
		}
		streams = append(streams, id.Stream(), id.ReservationStream(), id.PaymentStream())
	}
	w.deliver(t, times)
	// A customer cancels the first order after it settled.
	cancel, _ := command.NewCancelOrder(ids[0].String(), "")
	if _, err := w.cancel.Handle(ctx, cancel, command.Meta{}); err != nil {
		t.Fatal(err)
	}
	w.deliver(t, times)
	return streams
}

// Every event delivered twice (and every reaction run twice) ends in the
// same state as single delivery: nothing reserved, charged or released twice.
func TestEveryEventDeliveredTwice(t *testing.T) {
	t.Parallel()
	ids := make([]orderflow.OrderID, 8)
	decline := map[string]bool{}
	for i := range ids {
		ids[i] = orderflow.NewOrderID()
		if i == 3 {
			decline[ids[i].String()] = true
		}
	}
	once, twice := MustWorld(t, decline), MustWorld(t, decline)
	streams := scenario(t, once, ids, 1)
	scenario(t, twice, ids, 2)
	a, b := once.history(t, streams), twice.history(t, streams)
	for _, s := range streams {
		if !slices.Equal(a[s], b[s]) {
			t.Fatalf("%s:\n once  %v\n twice %v", s, a[s], b[s])
		}
	}
	if once.provider.Captured != twice.provider.Captured || once.provider.Refunded != twice.provider.Refunded {
		t.Fatalf("money moved differently: once %d/%d, twice %d/%d", once.provider.Captured, once.provider.Refunded, twice.provider.Captured, twice.provider.Refunded)
	}
	// The scenario reached every outcome: confirmed, rejected (stock ran out),
	// cancelled after a decline, refunded after a customer cancel.
	var ends []string
	for _, id := range ids {
		h := a[id.Stream()]
		ends = append(ends, h[len(h)-1])
	}
	for _, want := range []string{"OrderConfirmed", "OrderRejected", "OrderCancelled"} {
		if !slices.Contains(ends, want) {
			t.Fatalf("no order ended %s: %v", want, ends)
		}
	}
	if !slices.Contains(a[ids[0].PaymentStream()], "PaymentRefunded") {
		t.Fatalf("the cancelled confirmed order was not refunded: %v", a[ids[0].PaymentStream()])
	}
	t.Logf("end states: %s", strings.Join(ends, ", "))
}

// deliverLate hands the events of type typ in stream to every reaction that
// takes them, out of the log's order: the relay and Kafka late.
func (w *world) deliverLate(t *testing.T, stream, typ string) int {
	t.Helper()
	ctx := context.Background()
	events, err := w.store.ReadStream(ctx, stream, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range events {
		if e.Type != typ {
			continue
		}
		n++
		for _, r := range w.saga.Reactions() {
			if r.Context == relay.ContextOf(e.StreamID) && slices.Contains(r.Types, e.Type) {
				if err := r.Handle(ctx, e); err != nil {
					t.Fatalf("%s on late %s@%d: %v", r.Name, e.StreamID, e.Version, err)
				}
			}
		}
	}
	return n
}

// Reordered and late events around a customer's cancellation while the
// order waits for its payment. Whatever happens, the order stays cancelled,
// its reservation is released, and no money is kept:
//   - the payment participant sees the cancellation before the reservation
//     reaches it: it charges nothing and records that (PaymentFailed);
//   - the cancellation comes while the provider is charging: the refund on
//     OrderCancelled finds no capture yet, and the capture, recorded after
//     the order was cancelled, is refunded when it reaches the participant
//     (a late PaymentCaptured leads to a refund);
//   - an earlier attempt charged but its answer was lost, then the order was
//     cancelled: the participant voids the charge's key, finds the capture,
//     records it, and it is refunded like a late capture.
func TestLateEventsAfterACancellationKeepNoMoney(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		duringPay  bool // cancel inside the provider's charge, not before the reservation reaches payment
		lostCharge bool // an earlier attempt charged, its answer lost, before the cancel
		payment    []string
		kept       int64 // captured
	}{
		{"cancel seen before the charge", false, false, []string{orderflow.EventPaymentFailed}, 0},
		{"cancel during the charge", true, false, []string{orderflow.EventPaymentCaptured, orderflow.EventPaymentRefunded}, 600},
		{"cancel after a charge whose answer was lost", false, true, []string{orderflow.EventPaymentCaptured, orderflow.EventPaymentRefunded}, 600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := MustWorld(t, nil)
			ctx := context.Background()
			stock, _ := command.NewAddStock("A", 5)
			if _, err := w.stock.Handle(ctx, stock, command.Meta{}); err != nil {
				t.Fatal(err)
			}
			place, err := command.NewPlaceOrder("c-late", []command.LineInput{{SKU: "A", Quantity: 2, UnitPriceCents: 300}})
			if err != nil {
				t.Fatal(err)
			}
			acc, err := w.api.Handle(ctx, place, command.Meta{})
			if err != nil {
				t.Fatal(err)
			}
			id := orderOf(t, acc)
			if w.deliverLate(t, id.Stream(), orderflow.EventOrderPlaced) != 1 { // inventory reserves
				t.Fatal("no OrderPlaced")
			}
			cancelOrder := func() {
				cancel, _ := command.NewCancelOrder(id.String(), "changed my mind")
				if _, err := w.cancel.Handle(ctx, cancel, command.Meta{}); err != nil {
					t.Error(err)
					return
				}
				w.deliverLate(t, id.Stream(), orderflow.EventOrderCancelled) // payment: nothing captured yet
			}
			if tc.lostCharge { // the provider captured; the participant never heard
				if _, err := w.provider.Charge(ctx, id.String(), 600, "charge:"+id.String()); err != nil {
					t.Fatal(err)
				}
			}
			if tc.duringPay {
				w.provider.During = cancelOrder
			} else {
				cancelOrder()
			}
			if w.deliverLate(t, id.ReservationStream(), orderflow.EventInventoryReserved) != 1 { // payment, late
				t.Fatal("the order was not reserved")
			}
			w.deliverLate(t, id.PaymentStream(), orderflow.EventPaymentCaptured) // a late capture, if any
			if w.provider.Refunded != tc.kept {                                  // the capture itself led to the refund
				t.Fatalf("after the late capture: refunded %d, want %d", w.provider.Refunded, tc.kept)
			}
			w.deliver(t, 2) // and everything again, in order, twice

			h := w.history(t, []string{id.Stream(), id.ReservationStream(), id.PaymentStream()})
			if order := h[id.Stream()]; order[len(order)-1] != orderflow.EventOrderCancelled || slices.Contains(order, orderflow.EventOrderConfirmed) {
				t.Fatalf("order stream %v: want it to end cancelled, never confirmed", order)
			}
			if !slices.Contains(h[id.ReservationStream()], orderflow.EventInventoryReleased) {
				t.Fatalf("reservation stream %v: not released", h[id.ReservationStream()])
			}
			if pay := h[id.PaymentStream()]; !slices.Equal(pay, tc.payment) {
				t.Fatalf("payment stream %v, want %v", pay, tc.payment)
			}
			if w.provider.Captured != tc.kept || w.provider.Refunded != tc.kept {
				t.Fatalf("captured %d, refunded %d; want %d both", w.provider.Captured, w.provider.Refunded, tc.kept)
			}
		})
	}
}
