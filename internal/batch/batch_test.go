package batch

import (
	"context"
	"sync"
	"testing"
)

// Calls made while a batch runs form the next batch, capped at max, and
// every call gets its own item's result.
func TestCallsWaitingForABatchRunTogether(t *testing.T) {
	release := make(chan struct{})
	var (
		mu      sync.Mutex
		batches [][]int
	)
	b := New(3, func(items []int) []int {
		mu.Lock()
		batches = append(batches, append([]int(nil), items...))
		first := len(batches) == 1
		mu.Unlock()
		if first {
			<-release // hold the first batch while the others queue
		}
		out := make([]int, len(items))
		for i, v := range items {
			out[i] = v * 10
		}
		return out
	})
	results := make([]int, 6)
	var wg sync.WaitGroup
	wg.Go(func() { results[0], _ = b.Do(context.Background(), 0) })
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(batches) == 1 })
	for i := 1; i < 6; i++ {
		wg.Go(func() { results[i], _ = b.Do(context.Background(), i) })
	}
	waitFor(t, func() bool { return pending(b) == 5 })
	close(release)
	wg.Wait()
	for i, r := range results {
		if r != i*10 {
			t.Fatalf("result of item %d = %d, want %d", i, r, i*10)
		}
	}
	if len(batches) != 3 || len(batches[0]) != 1 || len(batches[1]) != 3 || len(batches[2]) != 2 {
		t.Fatalf("batches = %v, want sizes 1, 3 (the cap), 2", batches)
	}
}

func TestDoReturnsWhenItsContextEnds(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	b := New(10, func(items []int) []int { <-release; return items })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Do(ctx, 1); err != context.Canceled {
		t.Fatalf("Do with an ended context = %v, want context.Canceled", err)
	}
}
