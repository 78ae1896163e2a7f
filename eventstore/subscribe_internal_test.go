package eventstore

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/dbtest"
)

// A tail whose read was held back by a transaction that had already ended
// reads again at once: no notification will come for the events past it,
// and the poll interval (an hour here) is not waited for. The held-back
// read goes through a repeatable-read snapshot taken while that
// transaction ran.
func TestTailRereadsPastAnEndedTransaction(t *testing.T) {
	t.Parallel()
	pool := dbtest.MustPool(t)
	s, err := New(pool, Config{PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	other, err := pool.Begin(ctx) // writes no events, but holds an id
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback(ctx)
	if _, err := other.Exec(ctx, "select pg_current_xact_id()"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, Append{Streams: []StreamAppend{{StreamID: "order-a", Expected: NoStream,
		Events: []EventData{{Type: "A1", Data: json.RawMessage(`{}`)}}}}}); err != nil {
		t.Fatal(err)
	}
	held, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Rollback(ctx)
	if _, err := held.Exec(ctx, "select 1"); err != nil { // the snapshot: other runs, the append is in
		t.Fatal(err)
	}
	if err := other.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	// The first read finds a quiet log, so the tail opens its listener
	// (and reads again, as after any reconnect); the second is held back
	// by the ended transaction; the rest read what is there now.
	reads := 0
	read := func(ctx context.Context, after Position, limit int) ([]Event, bool, error) {
		reads++
		if reads == 1 {
			return nil, true, nil
		}
		if reads == 2 {
			events, settled, err := s.readAll(ctx, held, after, limit)
			if err == nil && (len(events) != 0 || settled) {
				t.Errorf("the held read = %d events, settled %v; want none, not settled", len(events), settled)
			}
			return events, settled, err
		}
		return s.readAll(ctx, pool, after, limit)
	}
	got := make(chan []Event, 1)
	tailCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- s.tail(tailCtx, Position{}, 10, func(_ context.Context, events []Event) error {
			got <- events
			stop()
			return nil
		}, read)
	}()
	select {
	case events := <-got:
		if len(events) != 1 || events[0].StreamID != "order-a" {
			t.Fatalf("the tail delivered %d events; want order-a's one", len(events))
		}
	case err := <-done:
		t.Fatalf("the tail ended before delivering: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the tail waited instead of reading again past the ended transaction")
	}
}
