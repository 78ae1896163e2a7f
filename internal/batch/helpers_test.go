package batch

import (
	"runtime"
	"testing"
	"time"
)

// pending counts the calls waiting for a batch.
func pending[T, R any](b *Batcher[T, R]) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}

// waitFor yields until cond holds, failing after a few seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		runtime.Gosched()
	}
}
