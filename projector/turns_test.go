package projector_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/projector"
)

// gated holds each batch of its projection until released, saying when
// one enters.
type gated struct {
	projector.Projection
	entered chan<- string
	release <-chan struct{}
}

func (g gated) ApplyBatch(ctx context.Context, tx pgx.Tx, t projector.Tables, events []projector.Event) error {
	g.entered <- g.Name()
	<-g.release
	return g.Projection.ApplyBatch(ctx, tx, t, events)
}

// With MaxLiveBatches 1, a projection's batch waits while another
// projection's runs, counted in orderflow_projection_batches_waiting, and
// runs once that one committed.
func TestLiveBatchesTakeTurns(t *testing.T) {
	t.Parallel()
	f := MustFixture(t)
	engine, err := projector.NewEngine(f.pool, f.store, projector.EngineConfig{MaxLiveBatches: 1}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(engine.Collectors()...)
	waiting := func() float64 {
		t.Helper()
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range families {
			if mf.GetName() == "orderflow_projection_batches_waiting" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no orderflow_projection_batches_waiting gauge")
		return 0
	}
	id := orderflow.NewOrderID()
	f.placeOrder(t, id, time.Now())
	events, err := f.store.ReadStream(context.Background(), id.Stream(), 1, 0)
	if err != nil || len(events) != 1 {
		t.Fatalf("read %v, %v", events, err)
	}
	entered := make(chan string, 2)
	releaseA, releaseB := make(chan struct{}), make(chan struct{})
	var releasedA, releasedB sync.Once
	openA, openB := func() { releasedA.Do(func() { close(releaseA) }) }, func() { releasedB.Do(func() { close(releaseB) }) }
	t.Cleanup(openA) // a failing test lets its transactions end, or closing the pool waits for them
	t.Cleanup(openB)
	a := gated{projector.OrderDetails{}, entered, releaseA}
	b := gated{projector.OrdersByCustomer{}, entered, releaseB}
	done := make(chan error, 2)
	handle := func(p projector.Projection) {
		out, err := engine.HandleBatched(context.Background(), p, events[0])
		if err == nil && out != projector.Applied {
			err = fmt.Errorf("%s: outcome %v, want applied", p.Name(), out)
		}
		done <- err
	}
	go handle(a)
	if got := <-entered; got != a.Name() {
		t.Fatalf("%s entered first", got)
	}
	go handle(b)
	for deadline := time.Now().Add(20 * time.Second); waiting() != 1; {
		select {
		case got := <-entered:
			t.Fatalf("%s's batch ran while %s's held the only turn", got, a.Name())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the second projection's batch never waited for a turn")
		}
		time.Sleep(5 * time.Millisecond)
	}
	openA()
	if got := <-entered; got != b.Name() {
		t.Fatalf("%s entered second", got)
	}
	openB()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if v := waiting(); v != 0 {
		t.Fatalf("%v batches waiting after both ran", v)
	}
}

// failsFirst fails its first batch, which the engine then applies event by
// event; those calls wait until released, saying when one enters.
type failsFirst struct {
	projector.Projection
	calls   *atomic.Int32
	entered chan<- struct{}
	release <-chan struct{}
}

func (f failsFirst) ApplyBatch(ctx context.Context, tx pgx.Tx, t projector.Tables, events []projector.Event) error {
	if f.calls.Add(1) == 1 {
		return errors.New("poison")
	}
	f.entered <- struct{}{}
	<-f.release
	return f.Projection.ApplyBatch(ctx, tx, t, events)
}

// A projection applying a failed batch event by event (which can take long)
// does it without a turn: the other projections' batches run meanwhile.
func TestTheOneByOneFallbackHoldsNoTurn(t *testing.T) {
	t.Parallel()
	f := MustFixture(t)
	engine, err := projector.NewEngine(f.pool, f.store, projector.EngineConfig{MaxLiveBatches: 1}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	id := orderflow.NewOrderID()
	f.placeOrder(t, id, time.Now())
	events, err := f.store.ReadStream(context.Background(), id.Stream(), 1, 0)
	if err != nil || len(events) != 1 {
		t.Fatalf("read %v, %v", events, err)
	}
	entered, release := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open)
	slow := failsFirst{projector.OrderDetails{}, new(atomic.Int32), entered, release}
	done := make(chan error, 1)
	go func() {
		_, err := engine.HandleBatched(context.Background(), slow, events[0])
		done <- err
	}()
	<-entered // in the fallback
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := engine.HandleBatched(ctx, projector.OrdersByCustomer{}, events[0]); err != nil || out != projector.Applied {
		t.Fatalf("another projection's batch while one applied event by event: %v, %v; want applied", out, err)
	}
	open()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
