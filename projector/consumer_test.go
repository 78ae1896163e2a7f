package projector_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/projector"
)

// prefixed is a projection following other streams than p does.
type prefixed struct {
	projector.Projection
	prefixes []string
}

func (p prefixed) Prefixes() []string { return p.prefixes }

func TestSubscriptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    projector.Projection
		want []projector.Subscription
	}{
		{
			name: "one topic keeps the projection's name and group",
			p:    projector.OrderDetails{},
			want: []projector.Subscription{{Handler: "order_details", Topic: "pfx.order", ConsumerGroup: "orderflow.projection.order_details"}},
		},
		{
			name: "sku- streams are the inventory context's",
			p:    projector.StockLevels{},
			want: []projector.Subscription{{Handler: "stock", Topic: "pfx.inventory", ConsumerGroup: "orderflow.projection.stock"}},
		},
		{
			name: "several prefixes of one context are one topic",
			p:    prefixed{Projection: projector.StockLevels{}, prefixes: []string{orderflow.SKUStreamPrefix, orderflow.ReservationStreamPrefix}},
			want: []projector.Subscription{{Handler: "stock", Topic: "pfx.inventory", ConsumerGroup: "orderflow.projection.stock"}},
		},
		{
			name: "several topics: a handler and group per topic",
			p:    projector.SagaTimeline{},
			want: []projector.Subscription{
				{Handler: "orderflow.projection.saga_timeline.order", Topic: "pfx.order", ConsumerGroup: "orderflow.projection.saga_timeline.order"},
				{Handler: "orderflow.projection.saga_timeline.inventory", Topic: "pfx.inventory", ConsumerGroup: "orderflow.projection.saga_timeline.inventory"},
				{Handler: "orderflow.projection.saga_timeline.payment", Topic: "pfx.payment", ConsumerGroup: "orderflow.projection.saga_timeline.payment"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := projector.Subscriptions(tt.p, "pfx"); !slices.Equal(got, tt.want) {
				t.Fatalf("Subscriptions =\n%+v\nwant\n%+v", got, tt.want)
			}
			var topics []string
			for _, s := range tt.want {
				topics = append(topics, s.Topic)
			}
			if got := projector.Topics(tt.p, "pfx"); !slices.Equal(got, topics) {
				t.Fatalf("Topics = %v, want %v", got, topics)
			}
		})
	}

	// Handlers of one router and consumer groups need unique names.
	handlers, groups := map[string]bool{}, map[string]bool{}
	for _, p := range projector.All() {
		for _, s := range projector.Subscriptions(p, "pfx") {
			if handlers[s.Handler] || groups[s.ConsumerGroup] {
				t.Fatalf("%s: handler %q or group %q is not unique", p.Name(), s.Handler, s.ConsumerGroup)
			}
			handlers[s.Handler], groups[s.ConsumerGroup] = true, true
		}
	}
}

func TestSagaTimelineWants(t *testing.T) {
	t.Parallel()
	id := orderflow.NewOrderID()
	p := projector.SagaTimeline{}
	for stream, want := range map[string]bool{
		id.Stream(): true, id.ReservationStream(): true, id.PaymentStream(): true,
		orderflow.SKU("A").Stream(): false, "orderx": false,
	} {
		if got := projector.Wants(p, stream); got != want {
			t.Errorf("Wants(%s) = %v, want %v", stream, got, want)
		}
	}
}

// Status counts the lag over every prefix a projection follows, and takes
// a prefix literally.
func TestStatusFollowsEveryPrefix(t *testing.T) {
	t.Parallel()
	f := MustFixture(t)
	ctx := context.Background()
	id := orderflow.NewOrderID()
	f.appendEvent(t, id.Stream(), orderflow.OrderPlaced{OrderID: id, CustomerID: "c", PlacedAt: sagaT0})
	f.appendEvent(t, id.ReservationStream(), orderflow.InventoryReserved{OrderID: id})
	f.appendEvent(t, id.PaymentStream(), orderflow.PaymentCaptured{OrderID: id})
	f.appendEvent(t, id.PaymentStream(), orderflow.PaymentRefunded{OrderID: id})
	f.appendEvent(t, orderflow.SKU("A").Stream(), orderflow.StockAdded{SKU: "A", Quantity: 1, AddedAt: sagaT0})
	p := projector.SagaTimeline{}
	st, err := f.engine.Status(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if st.LagEvents != 4 || st.Streams != 0 {
		t.Fatalf("before applying: lag %d events over %d streams, want 4 over 0", st.LagEvents, st.Streams)
	}
	// "_" matches any one character in LIKE: "orde_-" must not match "order-".
	literal := prefixed{Projection: p, prefixes: []string{"orde_-", "pay%"}}
	if st, err := f.engine.Status(ctx, literal); err != nil || st.LagEvents != 0 {
		t.Fatalf("prefixes with LIKE wildcards: lag %d, %v; want 0", st.LagEvents, err)
	}
	for _, e := range f.readLog(t) {
		if _, err := f.engine.Handle(ctx, p, e); err != nil {
			t.Fatal(err)
		}
	}
	if st, err = f.engine.Status(ctx, p); err != nil || st.LagEvents != 0 || st.Streams != 3 {
		t.Fatalf("after applying: %+v, %v; want no lag over 3 streams", st, err)
	}
}

// The projector runs one handler per topic, so an order's three streams are
// applied concurrently: none of them may lose what another applied.
func TestSagaTimelineConcurrentStreams(t *testing.T) {
	t.Parallel()
	f := MustFixture(t)
	ctx := context.Background()
	for i := range 40 {
		id := orderflow.NewOrderID()
		at := sagaT0.Add(time.Duration(i) * time.Minute)
		f.appendEvent(t, id.Stream(), orderflow.OrderPlaced{OrderID: id, CustomerID: "c", PlacedAt: at, DeadlineAt: at.Add(time.Hour)})
		f.appendEvent(t, id.ReservationStream(), orderflow.InventoryReserved{OrderID: id})
		f.appendEvent(t, id.PaymentStream(), orderflow.PaymentCaptured{OrderID: id})
		f.appendEvent(t, id.Stream(), orderflow.OrderConfirmed{OrderID: id, ConfirmedAt: at})
		f.appendEvent(t, id.ReservationStream(), orderflow.InventoryCommitted{OrderID: id})
	}
	log := f.readLog(t)
	byContext := map[string][]eventstore.Event{}
	for _, e := range log {
		c := orderflow.StreamCategory(e.StreamID)
		byContext[c] = append(byContext[c], e)
	}
	p := projector.SagaTimeline{}
	var wg sync.WaitGroup
	errs := make(chan error, len(byContext))
	for _, events := range byContext {
		wg.Go(func() {
			for _, e := range events {
				if out, err := f.engine.Handle(ctx, p, e); err != nil || out != projector.Applied {
					errs <- fmt.Errorf("handle %s@%d: %v, %v", e.StreamID, e.Version, out, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sameRows(t, "concurrent live vs pure fold", snapshot(t, f, p), p.Model(decodeAll(t, log)))
}
