package query

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// A waiting read re-reads less and less often, and answers at its bound
// even when a re-read would take longer (a pool crowded by other reads).
func TestAwaitVersionSpacesItsReadsAndKeepsItsBound(t *testing.T) {
	t.Parallel()
	a := &API{cfg: Config{MinVersionWait: time.Second, PollInterval: 10 * time.Millisecond}, logger: slog.New(slog.DiscardHandler)}
	version := func(v *int64) int64 { return *v }

	var reads atomic.Int32
	held := int64(1)
	row, behind, err := awaitVersion(context.Background(), a, 2, func(context.Context) (*int64, error) {
		reads.Add(1)
		return &held, nil
	}, version)
	if err != nil || !behind || row == nil || *row != 1 {
		t.Fatalf("never reaching the version: %v, %v, %v; want version 1 and behind", row, behind, err)
	}
	// Every 10 ms for a second would be about 100 reads; spaced out up to
	// 100 ms apart, about 15.
	if n := reads.Load(); n > 25 {
		t.Fatalf("%d reads in a one-second wait, want them spaced out", n)
	}

	// After the first read, every read blocks until its context ends.
	start := time.Now()
	reads.Store(0)
	row, behind, err = awaitVersion(context.Background(), a, 2, func(ctx context.Context) (*int64, error) {
		if reads.Add(1) == 1 {
			return &held, nil
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}, version)
	if err != nil || !behind || row == nil || *row != 1 {
		t.Fatalf("reads stuck past the bound: %v, %v, %v; want the last row read and behind", row, behind, err)
	}
	if took := time.Since(start); took > a.cfg.MinVersionWait+boundGrace+500*time.Millisecond {
		t.Fatalf("answered after %s, want within the bound (%s) and its grace", took, a.cfg.MinVersionWait)
	}
}
