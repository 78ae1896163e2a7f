package projector_test

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow/projector"
)

// A rebuild's rate counts only what this run read: a resumed rebuild does
// not take the events of the interrupted run for its own.
func TestProgressRateOfAResumedRebuild(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	pr := projector.Progress{Read: 1_000, Resumed: 900, Total: 2_000, Started: t0}
	if got := pr.Rate(t0.Add(2 * time.Second)); got != 50 {
		t.Fatalf("rate = %v events/s, want 50 (100 events this run, in 2 s)", got)
	}
	if eta, ok := pr.ETA(t0.Add(2 * time.Second)); !ok || eta != 20*time.Second {
		t.Fatalf("ETA = %v, %v; want 20s (1,000 events left at 50/s)", eta, ok)
	}
	if _, ok := pr.ETA(t0); ok {
		t.Fatal("an ETA before any time passed")
	}
}

// One rebuild of a projection at a time, across processes (two engines
// here, each taking its own connection, as two processes would): a second
// rebuild started while one runs is refused at once. The first, interrupted
// after some of its transactions, resumes where it stopped when run again
// (by the other "process"), and the result equals the pure fold.
func TestRebuildRunsOnceAtATimeAndResumes(t *testing.T) {
	t.Parallel()
	f := MustFixture(t)
	log := f.randomHistory(t, rand.New(rand.NewPCG(7, 42)), 40)
	p := projector.OrderDetails{}
	small := projector.EngineConfig{RebuildChunk: 10, RebuildTxEvents: 20} // many transactions
	engine := func() *projector.Engine {
		en, err := projector.NewEngine(f.pool, f.store, small, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return en
	}
	first, second := engine(), engine()

	ctx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	started, proceed := make(chan projector.Progress), make(chan struct{})
	release := sync.OnceFunc(func() { close(proceed) })
	defer release() // on a failure too, so the first rebuild does not wait forever
	var once sync.Once
	firstErr := make(chan error, 1)
	go func() {
		firstErr <- first.Rebuild(ctx, p, f.store, func(pr projector.Progress) {
			if pr.Read > 0 && !pr.Done {
				once.Do(func() {
					started <- pr // a transaction has committed
					<-proceed
					interrupt()
				})
			}
		})
	}()
	var applied projector.Progress
	select {
	case applied = <-started:
	case err := <-firstErr:
		t.Fatalf("the first rebuild ended before its first report: %v", err)
	}
	// Bounded: a second rebuild let through would wait on the first.
	secondCtx, cancelSecond := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancelSecond()
	if err := second.Rebuild(secondCtx, p, f.store, nil); !errors.Is(err, projector.ErrRebuildRunning) {
		t.Fatalf("a second rebuild while one runs: %v, want ErrRebuildRunning", err)
	}
	// A projector starting meanwhile leaves that rebuild to its process
	// instead of failing its start (and every projection's consumers).
	if err := second.Backfill(secondCtx, f.store, []projector.Projection{p}); err != nil {
		t.Fatalf("a start-up backfill while another process rebuilds: %v, want it to leave that projection", err)
	}
	release()
	if err := <-firstErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("the interrupted rebuild returned %v, want context.Canceled", err)
	}

	var reports []projector.Progress
	if err := second.Rebuild(context.Background(), p, f.store, func(pr projector.Progress) { reports = append(reports, pr) }); err != nil {
		t.Fatalf("resuming: %v", err)
	}
	if len(reports) == 0 || reports[0].Resumed < applied.Read || reports[0].Read != reports[0].Resumed {
		t.Fatalf("resumed at %+v; want it to start from the %d events the interrupted run applied", reports, applied.Read)
	}
	if last := reports[len(reports)-1]; !last.Done || last.Read != int64(len(log)) {
		t.Fatalf("last report %+v; want done after reading all %d events", last, len(log))
	}
	sameRows(t, "resumed rebuild vs pure fold", snapshot(t, f, p), p.Model(decodeAll(t, log)))
}
