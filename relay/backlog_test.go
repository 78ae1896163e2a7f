package relay_test

import (
	"context"
	"testing"

	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/internal/dbtest"
	"github.com/orderflow/orderflow/relay"
)

// Backlog counts the events past the relay's checkpoint (those of the
// streams asked for, when asked), with the age of the oldest; past the last
// event, nothing.
func TestBacklog(t *testing.T) {
	t.Parallel()
	pool := dbtest.MustPool(t)
	store, err := eventstore.New(pool, eventstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	for i, stream := range []string{"order-a", "order_b", "sku-x", "order-a"} {
		if _, err := store.Append(ctx, eventstore.Append{Streams: []eventstore.StreamAppend{{StreamID: stream, Expected: eventstore.Any, Events: []eventstore.EventData{ev(i)}}}}); err != nil {
			t.Fatal(err)
		}
	}
	want := func(events int64, aged bool, streams ...string) {
		t.Helper()
		n, seconds, err := relay.Backlog(ctx, pool, "backlog-test", streams...)
		if err != nil {
			t.Fatal(err)
		}
		if n != events || (seconds > 0) != aged {
			t.Fatalf("Backlog(%q) = %d events, %v s; want %d, aged %v", streams, n, seconds, events, aged)
		}
	}
	want(4, true)                  // no checkpoint: the whole log
	want(2, true, `order-%`)       // order_b is not order-…
	want(3, true, `order-%`, `s%`) // either pattern
	want(0, false, `payment-%`)    // none of those
	if _, err := pool.Exec(ctx, `insert into relay_checkpoints (name, tx_id, seq)
		select 'backlog-test', tx_id, seq from events order by tx_id desc, seq desc limit 1`); err != nil {
		t.Fatal(err)
	}
	want(0, false)
}
