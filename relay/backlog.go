package relay

import (
	"context"
	"slices"
	"sync"

	"github.com/orderflow/orderflow/eventstore"
)

// backlog holds the events the tail has read and the publisher has not
// taken yet, in log order. The tail keeps reading while a batch is being
// published, so the next batch is ready the moment the broker acknowledged
// (under saga load a read took 5-20 ms, and the relay used to do it only
// after each publish). It holds back the tail once max events wait: while
// catching up, the tail runs one batch ahead, no more.
type backlog struct {
	max  int
	more chan struct{} // events were added, or the backlog was closed
	room chan struct{} // events were taken

	mu     sync.Mutex
	events []eventstore.Event
	closed bool
}

func newBacklog(max int) *backlog {
	return &backlog{max: max, more: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

// signal wakes whoever waits on ch, or leaves the wake-up for the next wait.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// put adds events, then waits while max or more events wait, until ctx ends.
func (b *backlog) put(ctx context.Context, events []eventstore.Event) error {
	b.mu.Lock()
	b.events = append(b.events, events...)
	b.mu.Unlock()
	signal(b.more)
	for {
		b.mu.Lock()
		full := len(b.events) >= b.max
		b.mu.Unlock()
		if !full {
			return nil
		}
		select {
		case <-b.room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// close says no more events will be put.
func (b *backlog) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	signal(b.more)
}

// take waits for events and returns the oldest, at most max of them. It
// returns false once the backlog is closed and empty, or when ctx ends.
func (b *backlog) take(ctx context.Context) ([]eventstore.Event, bool) {
	for {
		b.mu.Lock()
		if n := min(len(b.events), b.max); n > 0 {
			out := slices.Clone(b.events[:n])
			b.events = b.events[n:]
			b.mu.Unlock()
			signal(b.room)
			return out, true
		}
		closed := b.closed
		b.mu.Unlock()
		if closed {
			return nil, false
		}
		select {
		case <-b.more:
		case <-ctx.Done():
			return nil, false
		}
	}
}
