package saga_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/command"
	"github.com/orderflow/orderflow/eventcodec"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/saga"
)

// Deadlines fire once however many schedulers run, hold no transaction open
// while they append, and a claim whose scheduler died is taken again after
// the lease, while a live claim is left alone.
func TestDeadlinesFireOnceAndSurviveADeadScheduler(t *testing.T) {
	t.Parallel()
	w := MustWorld(t, nil)
	ctx := context.Background()
	placedAt := time.Now()
	var ids []orderflow.OrderID
	for range 30 {
		id := orderflow.NewOrderID()
		cmd, err := command.NewPlaceOrder("c-1", []command.LineInput{{SKU: "A", Quantity: 1, UnitPriceCents: 100}})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range command.DecidePlaceOrder(id, cmd, placedAt, time.Minute) {
			data, _ := eventcodec.Encode(e)
			_, err := w.store.Append(ctx, eventstore.Append{Streams: []eventstore.StreamAppend{{StreamID: id.Stream(), Expected: eventstore.NoStream,
				Events: []eventstore.EventData{{Type: e.EventType(), SchemaVersion: 1, Data: data}}}}})
			if err != nil {
				t.Fatal(err)
			}
			recorded, err := w.store.ReadStream(ctx, id.Stream(), 1, 0)
			if err != nil || len(recorded) != 1 {
				t.Fatalf("read back %s: %v %v", id, recorded, err)
			}
			// Only the order participant's reaction: the orders stay pending.
			for _, r := range w.saga.Reactions() {
				if r.Name == "order-on-order" {
					if err := r.Handle(ctx, recorded[0]); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		ids = append(ids, id)
	}
	// Two orders were claimed by schedulers: one died an hour ago, one is
	// firing right now.
	later := placedAt.Add(time.Hour)
	dead, live := ids[0], ids[1]
	if _, err := w.pool.Exec(ctx, `update saga_deadlines set claimed_at = $2 where order_id = $1`, dead, later.Add(-2*saga.DeadlineLease)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.pool.Exec(ctx, `update saga_deadlines set claimed_at = $2 where order_id = $1`, live, later); err != nil {
		t.Fatal(err)
	}

	schedulers := make([]*saga.Participants, 3)
	for i := range schedulers {
		p, err := saga.New(w.store, w.provider, w.pool, func() time.Time { return later }, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		schedulers[i] = p
	}
	var (
		mu    sync.Mutex
		fired int
		wg    sync.WaitGroup
	)
	for _, p := range schedulers {
		wg.Go(func() {
			for {
				n, err := p.FireDeadlines(ctx, 4)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				fired += n
				mu.Unlock()
				if n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	if fired != len(ids)-1 {
		t.Fatalf("fired %d deadlines, want %d (all but the one claimed by a live scheduler)", fired, len(ids)-1)
	}
	for _, id := range ids {
		events, err := w.store.ReadStream(ctx, id.Stream(), 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		var types []string
		for _, e := range events {
			types = append(types, e.Type)
		}
		want := []string{orderflow.EventOrderPlaced, orderflow.EventOrderCancelled}
		if id == live {
			want = want[:1]
		}
		if len(types) != len(want) || types[0] != want[0] || (len(want) == 2 && types[1] != want[1]) {
			t.Fatalf("order %s (dead claim %v, live claim %v): events %v, want %v", id, id == dead, id == live, types, want)
		}
	}
}
