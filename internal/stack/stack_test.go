package stack_test

import (
	"sync"
	"testing"

	"github.com/orderflow/orderflow/internal/stack"
)

// deep uses about n KiB of stack over n frames, as a handler's calls do.
//
//go:noinline
func deep(n int) byte {
	var frame [1 << 10]byte
	frame[n%len(frame)] = byte(n)
	if n == 0 {
		return frame[0]
	}
	return deep(n-1) + frame[n%len(frame)]
}

// A goroutine whose work needs 40 KiB of stack, started for every item as
// watermill does for every message: growing it step by step as the calls
// deepen, against reserving it first.
func BenchmarkGoroutineStack(b *testing.B) {
	for _, tc := range []struct {
		name    string
		reserve bool
	}{{"grown by the calls", false}, {"reserved first", true}} {
		b.Run(tc.name, func(b *testing.B) {
			var wg sync.WaitGroup
			for b.Loop() {
				wg.Go(func() {
					if tc.reserve {
						stack.Reserve()
					}
					deep(40)
				})
				wg.Wait()
			}
		})
	}
}

// Reserve leaves the goroutine working, however deep its calls go.
func TestReserve(t *testing.T) {
	t.Parallel()
	done := make(chan byte)
	go func() {
		stack.Reserve()
		done <- deep(200) // past Size: the stack still grows
	}()
	<-done
}
