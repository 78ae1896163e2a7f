package saga_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
	ids := placeDated(t, w, 30, placedAt)
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

// An order's deadline is recorded by the append that places it, with no
// consumer running: concurrent placements each get theirs, a retried
// command records nothing new, an append that fails records nothing, and
// an order without a deadline has none. The scheduler then cancels the
// pending ones though no reaction ever saw their OrderPlaced.
func TestDeadlineIsRecordedWhenTheOrderIsPlaced(t *testing.T) {
	t.Parallel()
	w := MustWorld(t, nil)
	ctx := context.Background()
	placedAt := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	place, err := command.NewPlaceOrderHandler(w.store, func() time.Time { return placedAt }, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := command.NewPlaceOrder("c-1", []command.LineInput{{SKU: "A", Quantity: 1, UnitPriceCents: 100}})
	if err != nil {
		t.Fatal(err)
	}
	deadlineOf := func(id orderflow.OrderID) (due time.Time, ok bool) {
		t.Helper()
		err := w.pool.QueryRow(ctx, `select due_at from saga_deadlines where order_id = $1`, id).Scan(&due)
		if errors.Is(err, pgx.ErrNoRows) {
			return time.Time{}, false
		}
		if err != nil {
			t.Fatal(err)
		}
		return due, true
	}
	countDeadlines := func() int {
		t.Helper()
		var n int
		if err := w.pool.QueryRow(ctx, `select count(*) from saga_deadlines`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Placed concurrently, so appended in shared batches.
	ids := make([]orderflow.OrderID, 40)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			acc, err := place.Handle(ctx, cmd, command.Meta{CommandID: fmt.Sprintf("place-%d", i), Fingerprint: "f"})
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = orderOf(t, acc)
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, id := range ids {
		if due, ok := deadlineOf(id); !ok || !due.Equal(placedAt.Add(30*time.Second)) {
			t.Fatalf("deadline of %s: %v %v, want %v", id, due, ok, placedAt.Add(30*time.Second))
		}
	}
	// A retry of a command that placed an order records nothing new.
	acc, err := place.Handle(ctx, cmd, command.Meta{CommandID: "place-0", Fingerprint: "f"})
	if err != nil || acc.StreamID != ids[0].Stream() {
		t.Fatalf("retry of place-0: %v %v, want order %s", acc.StreamID, err, ids[0])
	}
	if n := countDeadlines(); n != len(ids) {
		t.Fatalf("%d deadlines after a retry, want %d", n, len(ids))
	}

	// An append that fails as a whole (its other stream's expected version
	// does not hold) records no deadline.
	failed := orderflow.NewOrderID()
	data, err := eventcodec.Encode(command.DecidePlaceOrder(failed, cmd, placedAt, time.Minute)[0])
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.store.Append(ctx, eventstore.Append{Streams: []eventstore.StreamAppend{
		{StreamID: failed.Stream(), Expected: eventstore.NoStream,
			Events: []eventstore.EventData{{Type: orderflow.EventOrderPlaced, SchemaVersion: 1, Data: data}}},
		{StreamID: ids[0].Stream(), Expected: eventstore.NoStream,
			Events: []eventstore.EventData{{Type: orderflow.EventOrderPlaced, SchemaVersion: 1, Data: data}}},
	}})
	if !errors.Is(err, eventstore.ErrConcurrency) {
		t.Fatalf("append over an existing stream: %v, want a concurrency error", err)
	}
	if _, ok := deadlineOf(failed); ok {
		t.Fatal("a failed append recorded its order's deadline")
	}

	// No deadline configured: none recorded.
	undated, err := command.NewPlaceOrderHandler(w.store, func() time.Time { return placedAt }, 0)
	if err != nil {
		t.Fatal(err)
	}
	acc, err = undated.Handle(ctx, cmd, command.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := deadlineOf(orderOf(t, acc)); ok {
		t.Fatal("an order placed without a deadline has one")
	}

	// Past the deadline the scheduler cancels every dated order.
	p, err := saga.New(w.store, w.provider, w.pool, func() time.Time { return placedAt.Add(time.Minute) }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := p.FireDeadlines(ctx, 100); err != nil || n != len(ids) {
		t.Fatalf("fired %d deadlines (%v), want %d", n, err, len(ids))
	}
	for _, id := range ids {
		events, err := w.store.ReadStream(ctx, id.Stream(), 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != 2 || events[1].Type != orderflow.EventOrderCancelled {
			t.Fatalf("order %s after its deadline: %d events, last %s; want OrderPlaced, OrderCancelled", id, len(events), events[len(events)-1].Type)
		}
	}
}

// placeDated places n one-line orders at placedAt, each due a minute later,
// by appending what the command decides (no API), and returns their ids.
func placeDated(t *testing.T, w *world, n int, placedAt time.Time) []orderflow.OrderID {
	t.Helper()
	var ids []orderflow.OrderID
	for range n {
		id := orderflow.NewOrderID()
		cmd, err := command.NewPlaceOrder("c-1", []command.LineInput{{SKU: "A", Quantity: 1, UnitPriceCents: 100}})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range command.DecidePlaceOrder(id, cmd, placedAt, time.Minute) {
			data, _ := eventcodec.Encode(e)
			if _, err := w.store.Append(context.Background(), eventstore.Append{Streams: []eventstore.StreamAppend{{StreamID: id.Stream(), Expected: eventstore.NoStream,
				Events: []eventstore.EventData{{Type: e.EventType(), SchemaVersion: 1, Data: data}}}}}); err != nil {
				t.Fatal(err)
			}
		}
		ids = append(ids, id)
	}
	return ids
}

// orderOf returns the order a placement accepted.
func orderOf(t *testing.T, acc command.Accepted) orderflow.OrderID {
	t.Helper()
	id, err := orderflow.ParseOrderID("id", strings.TrimPrefix(acc.StreamID, orderflow.OrderStreamPrefix))
	if err != nil {
		t.Error(err)
	}
	return id
}

// A deadline that cannot fire (its order's stream holds an event that does
// not decode) holds back no other: the rest of its batch fires, and its
// error is reported.
func TestAFailingDeadlineHoldsBackNoOther(t *testing.T) {
	t.Parallel()
	w := MustWorld(t, nil)
	ctx := context.Background()
	placedAt := time.Now()
	ids := placeDated(t, w, 3, placedAt)
	// The first to come due cannot be read.
	bad := ids[0]
	if _, err := w.store.Append(ctx, eventstore.Append{Streams: []eventstore.StreamAppend{{StreamID: bad.Stream(), Expected: eventstore.Exactly(1),
		Events: []eventstore.EventData{{Type: orderflow.EventOrderCancelled, SchemaVersion: 1, Data: []byte(`{"order_id": 12}`)}}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.pool.Exec(ctx, `update saga_deadlines set due_at = due_at - interval '1 second' where order_id = $1`, bad); err != nil {
		t.Fatal(err)
	}
	p, err := saga.New(w.store, w.provider, w.pool, func() time.Time { return placedAt.Add(time.Hour) }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	n, err := p.FireDeadlines(ctx, 100)
	if n != 2 || err == nil || !strings.Contains(err.Error(), bad.String()) {
		t.Fatalf("fired %d deadlines (%v), want the 2 readable ones and an error naming %s", n, err, bad)
	}
	for _, id := range ids[1:] {
		events, err := w.store.ReadStream(ctx, id.Stream(), 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != 2 || events[1].Type != orderflow.EventOrderCancelled {
			t.Fatalf("order %s after its deadline: %d events; want OrderPlaced, OrderCancelled", id, len(events))
		}
	}
}
