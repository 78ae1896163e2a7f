package projector_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/projector"
)

var sagaT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// step is an event of an order's saga, recorded sec seconds after sagaT0.
func step(stream string, version int64, sec int, payload orderflow.Event) projector.Event {
	e := projector.Event{StreamID: stream, Version: version, RecordedAt: sagaT0.Add(time.Duration(sec) * time.Second),
		EventID: fmt.Sprintf("e-%s-%d", stream[:3], version), CorrelationID: "corr", CausationID: "cause", Payload: payload}
	if payload != nil {
		e.Type = payload.EventType()
	} else {
		e.Type = "SomethingNew"
	}
	return e
}

// sagaOf folds events from nothing.
func sagaOf(id orderflow.OrderID, events []projector.Event) *projector.SagaView {
	v := &projector.SagaView{OrderID: id}
	for _, e := range events {
		v = projector.FoldSaga(v, e)
	}
	return v
}

// sagaState is the view without its steps, to compare states.
func sagaState(v *projector.SagaView) string {
	cp := *v
	cp.Steps = nil
	return fmt.Sprintf("%+v", cp)
}

func TestFoldSaga(t *testing.T) {
	t.Parallel()
	id := orderflow.NewOrderID()
	o, r, p := id.Stream(), id.ReservationStream(), id.PaymentStream()
	placed := orderflow.OrderPlaced{OrderID: id, CustomerID: "c", TotalCents: 100, PlacedAt: sagaT0, DeadlineAt: sagaT0.Add(time.Hour)}
	tests := []struct {
		name   string
		events []projector.Event
		want   projector.SagaView
	}{
		{
			name:   "placed: pending with its deadline",
			events: []projector.Event{step(o, 1, 0, placed)},
			want: projector.SagaView{Status: projector.StatusPending, PlacedAt: sagaT0, DeadlineAt: sagaT0.Add(time.Hour),
				UpdatedAt: sagaT0, VersionOrder: 1},
		},
		{
			name:   "placed without a deadline",
			events: []projector.Event{step(o, 1, 0, orderflow.OrderPlaced{OrderID: id, PlacedAt: sagaT0})},
			want:   projector.SagaView{Status: projector.StatusPending, PlacedAt: sagaT0, UpdatedAt: sagaT0, VersionOrder: 1},
		},
		{
			name: "confirmed: reserved, captured, confirmed, committed",
			events: []projector.Event{
				step(o, 1, 0, placed), step(r, 1, 1, orderflow.InventoryReserved{OrderID: id}),
				step(p, 1, 2, orderflow.PaymentCaptured{OrderID: id, AmountCents: 100}),
				step(o, 2, 3, orderflow.OrderConfirmed{OrderID: id, ConfirmedAt: sagaT0}),
				step(r, 2, 4, orderflow.InventoryCommitted{OrderID: id}),
			},
			want: projector.SagaView{Status: projector.StatusConfirmed, PlacedAt: sagaT0, DeadlineAt: sagaT0.Add(time.Hour),
				UpdatedAt: sagaT0.Add(4 * time.Second), Inventory: projector.InventoryCommitted, Payment: projector.PaymentCaptured,
				VersionOrder: 2, VersionReservation: 2, VersionPayment: 1},
		},
		{
			name: "rejected: out of stock",
			events: []projector.Event{
				step(o, 1, 0, placed), step(r, 1, 1, orderflow.InventoryRejected{OrderID: id, Reason: orderflow.ReasonOutOfStock, SKU: "A"}),
				step(o, 2, 2, orderflow.OrderRejected{OrderID: id, Reason: orderflow.ReasonOutOfStock}),
			},
			want: projector.SagaView{Status: projector.StatusRejected, Reason: orderflow.ReasonOutOfStock, PlacedAt: sagaT0,
				DeadlineAt: sagaT0.Add(time.Hour), UpdatedAt: sagaT0.Add(2 * time.Second), Inventory: projector.InventoryRejected,
				VersionOrder: 2, VersionReservation: 1},
		},
		{
			name: "cancelled: payment failed, reservation released",
			events: []projector.Event{
				step(o, 1, 0, placed), step(r, 1, 1, orderflow.InventoryReserved{OrderID: id}),
				step(p, 1, 2, orderflow.PaymentFailed{OrderID: id, Reason: "declined"}),
				step(o, 2, 3, orderflow.OrderCancelled{OrderID: id, Reason: orderflow.ReasonPaymentFailed}),
				step(r, 2, 4, orderflow.InventoryReleased{OrderID: id}),
			},
			want: projector.SagaView{Status: projector.StatusCancelled, Reason: orderflow.ReasonPaymentFailed, PlacedAt: sagaT0,
				DeadlineAt: sagaT0.Add(time.Hour), UpdatedAt: sagaT0.Add(4 * time.Second), Inventory: projector.InventoryReleased,
				Payment: projector.PaymentFailed, VersionOrder: 2, VersionReservation: 2, VersionPayment: 1},
		},
		{
			name: "cancelled on timeout after capture: refunded",
			events: []projector.Event{
				step(o, 1, 0, placed), step(r, 1, 1, orderflow.InventoryReserved{OrderID: id}),
				step(p, 1, 2, orderflow.PaymentCaptured{OrderID: id}),
				step(o, 2, 3, orderflow.OrderCancelled{OrderID: id, Reason: orderflow.ReasonTimeout}),
				step(r, 2, 4, orderflow.InventoryReleased{OrderID: id}), step(p, 2, 5, orderflow.PaymentRefunded{OrderID: id}),
			},
			want: projector.SagaView{Status: projector.StatusCancelled, Reason: orderflow.ReasonTimeout, PlacedAt: sagaT0,
				DeadlineAt: sagaT0.Add(time.Hour), UpdatedAt: sagaT0.Add(5 * time.Second), Inventory: projector.InventoryReleased,
				Payment: projector.PaymentRefunded, VersionOrder: 2, VersionReservation: 2, VersionPayment: 2},
		},
		{
			name:   "reservation before OrderPlaced: not placed yet",
			events: []projector.Event{step(r, 1, 1, orderflow.InventoryReserved{OrderID: id})},
			want:   projector.SagaView{UpdatedAt: sagaT0.Add(time.Second), Inventory: projector.InventoryReserved, VersionReservation: 1},
		},
		{
			name:   "an unknown event type is a step that changes no state",
			events: []projector.Event{step(o, 1, 0, placed), step(p, 1, 7, nil)},
			want: projector.SagaView{Status: projector.StatusPending, PlacedAt: sagaT0, DeadlineAt: sagaT0.Add(time.Hour),
				UpdatedAt: sagaT0.Add(7 * time.Second), VersionOrder: 1, VersionPayment: 1},
		},
		{
			name:   "updated_at is the latest step, whatever the order applied",
			events: []projector.Event{step(p, 1, 9, orderflow.PaymentCaptured{OrderID: id}), step(o, 1, 0, placed)},
			want: projector.SagaView{Status: projector.StatusPending, PlacedAt: sagaT0, DeadlineAt: sagaT0.Add(time.Hour),
				UpdatedAt: sagaT0.Add(9 * time.Second), Payment: projector.PaymentCaptured, VersionOrder: 1, VersionPayment: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := sagaOf(id, tt.events)
			tt.want.OrderID = id
			if g, w := sagaState(got), sagaState(&tt.want); g != w {
				t.Fatalf("state =\n%s\nwant\n%s", g, w)
			}
			if len(got.Steps) != len(tt.events) {
				t.Fatalf("%d steps, want one per event (%d)", len(got.Steps), len(tt.events))
			}
			for i, e := range tt.events {
				s := got.Steps[i]
				want := projector.SagaStep{StreamID: e.StreamID, Version: e.Version, Type: e.Type, RecordedAt: e.RecordedAt,
					EventID: e.EventID, CorrelationID: e.CorrelationID, CausationID: e.CausationID}
				if s != want {
					t.Fatalf("step %d = %+v, want %+v", i, s, want)
				}
			}
		})
	}
}

func TestFoldSagaIgnoresOtherStreams(t *testing.T) {
	t.Parallel()
	id := orderflow.NewOrderID()
	v := sagaOf(id, []projector.Event{step(id.Stream(), 1, 0, orderflow.OrderPlaced{OrderID: id, PlacedAt: sagaT0})})
	got := projector.FoldSaga(v, step(orderflow.SKU("A").Stream(), 4, 5, orderflow.StockReserved{SKU: "A", OrderID: id, Quantity: 1}))
	if sagaState(got) != sagaState(v) || len(got.Steps) != 1 {
		t.Fatalf("a sku- stream event changed the saga: %+v", got)
	}
}

// The three streams of an order reach the view through different topics:
// any interleaving that keeps each stream in order folds to the same state
// and the same steps.
func TestFoldSagaIgnoresInterleaving(t *testing.T) {
	t.Parallel()
	id := orderflow.NewOrderID()
	o, r, p := id.Stream(), id.ReservationStream(), id.PaymentStream()
	streams := [][]projector.Event{
		{step(o, 1, 0, orderflow.OrderPlaced{OrderID: id, PlacedAt: sagaT0, DeadlineAt: sagaT0.Add(time.Minute)}),
			step(o, 2, 3, orderflow.OrderCancelled{OrderID: id, Reason: orderflow.ReasonTimeout})},
		{step(r, 1, 1, orderflow.InventoryReserved{OrderID: id}), step(r, 2, 4, orderflow.InventoryReleased{OrderID: id})},
		{step(p, 1, 2, orderflow.PaymentCaptured{OrderID: id}), step(p, 2, 5, orderflow.PaymentRefunded{OrderID: id})},
	}
	var inOrder []projector.Event
	for _, s := range streams {
		inOrder = append(inOrder, s...)
	}
	want := sagaOf(id, inOrder)
	projector.SortSteps(want.Steps)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		queues := slices.Clone(streams)
		var delivered []projector.Event
		for len(queues) > 0 {
			i := rng.IntN(len(queues))
			delivered = append(delivered, queues[i][0])
			if queues[i] = queues[i][1:]; len(queues[i]) == 0 {
				queues = slices.Delete(queues, i, i+1)
			}
		}
		got := sagaOf(id, delivered)
		projector.SortSteps(got.Steps)
		if sagaState(got) != sagaState(want) || !slices.Equal(got.Steps, want.Steps) {
			t.Fatalf("delivered as %v:\n%+v\nwant\n%+v", delivered, got, want)
		}
	}
}

// Folding onto a view never changes the view folded onto.
func TestFoldSagaDoesNotShareSteps(t *testing.T) {
	t.Parallel()
	id := orderflow.NewOrderID()
	base := sagaOf(id, []projector.Event{step(id.Stream(), 1, 0, orderflow.OrderPlaced{OrderID: id, PlacedAt: sagaT0})})
	base.Steps = slices.Grow(base.Steps, 4) // room to append in place
	a := projector.FoldSaga(base, step(id.ReservationStream(), 1, 1, orderflow.InventoryReserved{OrderID: id}))
	b := projector.FoldSaga(base, step(id.PaymentStream(), 1, 1, orderflow.PaymentFailed{OrderID: id}))
	if len(base.Steps) != 1 || a.Steps[1].StreamID != id.ReservationStream() || b.Steps[1].StreamID != id.PaymentStream() {
		t.Fatalf("folds share steps: base %v, a %v, b %v", base.Steps, a.Steps, b.Steps)
	}
}

func TestSortSteps(t *testing.T) {
	t.Parallel()
	at := sagaT0
	steps := []projector.SagaStep{
		{StreamID: "reservation-x", Version: 2, RecordedAt: at.Add(time.Second)},
		{StreamID: "payment-x", Version: 1, RecordedAt: at.Add(time.Second)},
		{StreamID: "order-x", Version: 2, RecordedAt: at.Add(time.Second)},
		{StreamID: "order-x", Version: 1, RecordedAt: at.Add(time.Second)},
		{StreamID: "reservation-x", Version: 1, RecordedAt: at},
	}
	projector.SortSteps(steps)
	var got []string
	for _, s := range steps {
		got = append(got, fmt.Sprintf("%s@%d", s.StreamID, s.Version))
	}
	want := []string{"reservation-x@1", "order-x@1", "order-x@2", "payment-x@1", "reservation-x@2"}
	if !slices.Equal(got, want) {
		t.Fatalf("sorted = %v, want %v", got, want)
	}
}
