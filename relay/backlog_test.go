package relay

import (
	"context"
	"testing"
	"time"

	"github.com/orderflow/orderflow/eventstore"
)

func seqs(from, n int) []eventstore.Event {
	out := make([]eventstore.Event, n)
	for i := range out {
		out[i].Position.Seq = int64(from + i)
	}
	return out
}

// Events come out in the order they went in, at most max at a time; put
// returns at once below max and waits at max until some are taken; take
// returns false once the backlog is closed and drained, or when its
// context ends.
func TestBacklog(t *testing.T) {
	ctx := context.Background()
	b := newBacklog(5)
	if err := b.put(ctx, seqs(0, 3)); err != nil {
		t.Fatal(err)
	}
	putDone := make(chan error, 1)
	go func() { putDone <- b.put(ctx, seqs(3, 4)) }() // 7 waiting: put waits
	select {
	case err := <-putDone:
		t.Fatalf("put returned (%v) with 7 events waiting, max 5", err)
	case <-time.After(20 * time.Millisecond): // it stays blocked; nothing to await but its absence
	}
	var got []int64
	for len(got) < 7 {
		events, ok := b.take(ctx)
		if !ok || len(events) > 5 {
			t.Fatalf("take = %d events, %v; want 1 to 5, true", len(events), ok)
		}
		for _, e := range events {
			got = append(got, e.Position.Seq)
		}
	}
	if err := <-putDone; err != nil {
		t.Fatalf("put after the take: %v", err)
	}
	for i, s := range got {
		if s != int64(i) {
			t.Fatalf("taken in order %v; want 0..6", got)
		}
	}

	b.close()
	if events, ok := b.take(ctx); ok {
		t.Fatalf("take after close on an empty backlog = %d events, true", len(events))
	}

	full := newBacklog(1)
	cctx, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	if err := full.put(cctx, seqs(0, 2)); err != context.Canceled {
		t.Fatalf("put on a full backlog when its context ends: %v; want context.Canceled", err)
	}
	empty := newBacklog(1)
	ectx, ecancel := context.WithCancel(ctx)
	ecancel()
	if _, ok := empty.take(ectx); ok {
		t.Fatal("take on an empty backlog with an ended context returned true")
	}
}
