// Package batch runs concurrent calls together: the calls that arrive while
// a batch runs wait, and the next batch takes them all. Under load the
// batches grow by themselves; alone, a call runs at once in a batch of one.
// No goroutine outlives the work: one runs while calls wait and exits when
// none do.
package batch

import (
	"context"
	"sync"
)

// Batcher gathers items for run, which gets at most max of them at a time
// and returns one result per item, in their order.
type Batcher[T, R any] struct {
	run func(items []T) []R
	max int

	mu      sync.Mutex
	pending []*call[T, R]
	running bool
}

type call[T, R any] struct {
	item T
	res  R
	done chan struct{}
}

// New returns a Batcher running run over batches of at most max items.
func New[T, R any](max int, run func(items []T) []R) *Batcher[T, R] {
	return &Batcher[T, R]{run: run, max: max}
}

// Do adds item to the next batch and returns its result, or ctx's error if
// ctx ends first (the batch still runs the item).
func (b *Batcher[T, R]) Do(ctx context.Context, item T) (R, error) {
	c := &call[T, R]{item: item, done: make(chan struct{})}
	b.mu.Lock()
	b.pending = append(b.pending, c)
	if !b.running {
		b.running = true
		go b.loop()
	}
	b.mu.Unlock()
	select {
	case <-c.done:
		return c.res, nil
	case <-ctx.Done():
		var zero R
		return zero, ctx.Err()
	}
}

// loop runs batches until no call waits.
func (b *Batcher[T, R]) loop() {
	for {
		b.mu.Lock()
		n := min(len(b.pending), b.max)
		if n == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		calls := b.pending[:n:n]
		b.pending = b.pending[n:]
		b.mu.Unlock()

		items := make([]T, n)
		for i, c := range calls {
			items[i] = c.item
		}
		results := b.run(items)
		for i, c := range calls {
			c.res = results[i]
			close(c.done)
		}
	}
}
