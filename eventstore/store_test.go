package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/internal/dbtest"
)

func MustStore(tb testing.TB) (*eventstore.Store, *pgxpool.Pool) {
	tb.Helper()
	pool := dbtest.MustPool(tb)
	s, err := eventstore.New(pool, eventstore.Config{PollInterval: 50 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s, pool
}

func ev(typ string, n int) eventstore.EventData {
	return eventstore.EventData{Type: typ, Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))}
}

func one(stream string, exp eventstore.ExpectedVersion, events ...eventstore.EventData) eventstore.Append {
	return eventstore.Append{Streams: []eventstore.StreamAppend{{StreamID: stream, Expected: exp, Events: events}}}
}

func mustAppend(tb testing.TB, s *eventstore.Store, a eventstore.Append) eventstore.Result {
	tb.Helper()
	res, err := s.Append(context.Background(), a)
	if err != nil {
		tb.Fatalf("append: %v", err)
	}
	return res
}

func countEvents(tb testing.TB, pool *pgxpool.Pool) int {
	tb.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), "select count(*) from events").Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestAppendAndReadStream(t *testing.T) {
	t.Parallel()
	s, _ := MustStore(t)
	ctx := context.Background()

	res := mustAppend(t, s, one("order-1", eventstore.NoStream, ev("A", 1), ev("B", 2)))
	if v, ok := res.Version("order-1"); !ok || v != 2 {
		t.Fatalf("version after first append = %d, %v; want 2", v, ok)
	}
	res = mustAppend(t, s, one("order-1", eventstore.Exactly(2), ev("C", 3)))
	if v, _ := res.Version("order-1"); v != 3 {
		t.Fatalf("version after second append = %d; want 3", v)
	}
	mustAppend(t, s, one("order-1", eventstore.Any, ev("D", 4)))

	events, err := s.ReadStream(ctx, "order-1", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A", "B", "C", "D"}
	if len(events) != len(want) {
		t.Fatalf("read %d events, want %d", len(events), len(want))
	}
	for i, e := range events {
		if e.Type != want[i] || e.Version != int64(i+1) || e.StreamID != "order-1" {
			t.Fatalf("event %d = %s v%d of %s; want %s v%d", i, e.Type, e.Version, e.StreamID, want[i], i+1)
		}
	}
	tail, err := s.ReadStream(ctx, "order-1", 3, 1)
	if err != nil || len(tail) != 1 || tail[0].Type != "C" {
		t.Fatalf("ReadStream from 3 limit 1 = %v, %v; want [C]", tail, err)
	}
	if after, err := s.ReadStream(ctx, "order-1", 9, 0); err != nil || len(after) != 0 {
		t.Fatalf("ReadStream past the end = %v, %v; want empty, nil", after, err)
	}
	if _, err := s.ReadStream(ctx, "order-none", 1, 0); !errors.Is(err, eventstore.ErrNotFound) {
		t.Fatalf("ReadStream of a missing stream: err = %v; want ErrNotFound", err)
	}
	if _, err := s.ReadStream(ctx, "order-none", 5, 0); !errors.Is(err, eventstore.ErrNotFound) {
		t.Fatalf("ReadStream of a missing stream from 5: err = %v; want ErrNotFound", err)
	}
}

// Reads running at once share queries; each still gets exactly its own
// stream's events from its version, up to its limit, or ErrNotFound.
func TestConcurrentReads(t *testing.T) {
	t.Parallel()
	s, _ := MustStore(t)
	ctx := context.Background()
	const streams = 12
	for i := range streams {
		var events []eventstore.EventData
		for v := range i + 1 {
			events = append(events, ev(fmt.Sprintf("E%d", v+1), v+1))
		}
		mustAppend(t, s, one(fmt.Sprintf("order-%d", i), eventstore.NoStream, events...))
	}
	rng := rand.New(rand.NewPCG(7, 7))
	type read struct {
		stream      int // streams and beyond: missing
		from, limit int
		got         []eventstore.Event
		err         error
	}
	reads := make([]read, 300)
	for i := range reads {
		reads[i] = read{stream: rng.IntN(streams + 2), from: rng.IntN(15), limit: rng.IntN(4)}
	}
	var wg sync.WaitGroup
	for i := range reads {
		r := &reads[i]
		wg.Go(func() { r.got, r.err = s.ReadStream(ctx, fmt.Sprintf("order-%d", r.stream), int64(r.from), r.limit) })
	}
	wg.Wait()
	for _, r := range reads {
		name := fmt.Sprintf("order-%d", r.stream)
		if r.stream >= streams {
			if !errors.Is(r.err, eventstore.ErrNotFound) {
				t.Fatalf("read of missing %s from %d: %v, %v; want ErrNotFound", name, r.from, r.got, r.err)
			}
			continue
		}
		first, last := max(r.from, 1), r.stream+1 // the stream holds versions 1..stream+1
		if r.limit > 0 {
			last = min(last, first+r.limit-1)
		}
		if r.err != nil || len(r.got) != max(0, last-first+1) {
			t.Fatalf("read %s from %d limit %d: %d events, %v; want versions %d..%d", name, r.from, r.limit, len(r.got), r.err, first, last)
		}
		for k, e := range r.got {
			if e.StreamID != name || e.Version != int64(first+k) || e.Type != fmt.Sprintf("E%d", first+k) {
				t.Fatalf("read %s from %d: event %d is %s v%d %s", name, r.from, k, e.StreamID, e.Version, e.Type)
			}
		}
	}
}

func TestExpectedVersionConflicts(t *testing.T) {
	t.Parallel()
	s, pool := MustStore(t)
	mustAppend(t, s, one("sku-a", eventstore.NoStream, ev("A", 1)))

	tests := []struct {
		name   string
		exp    eventstore.ExpectedVersion
		actual int64
	}{
		{"no stream on an existing stream", eventstore.NoStream, 1},
		{"stale version", eventstore.Exactly(0), 1},
		{"future version", eventstore.Exactly(5), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Append(context.Background(), one("sku-a", tt.exp, ev("X", 9)))
			var ce *eventstore.ConflictError
			if !errors.Is(err, eventstore.ErrConcurrency) || !errors.As(err, &ce) {
				t.Fatalf("err = %v; want a ConflictError", err)
			}
			if ce.StreamID != "sku-a" || ce.Actual != tt.actual || ce.Expected != tt.exp {
				t.Fatalf("conflict = %+v; want stream sku-a expected %d actual %d", ce, tt.exp, tt.actual)
			}
		})
	}
	if n := countEvents(t, pool); n != 1 {
		t.Fatalf("%d events stored after refused appends; want 1", n)
	}
	if _, err := s.Append(context.Background(), one("sku-b", eventstore.Exactly(3), ev("X", 1))); !errors.Is(err, eventstore.ErrConcurrency) {
		t.Fatalf("exact version on a missing stream: err = %v; want ErrConcurrency", err)
	}
}

func TestConcurrentAppendsAtSameVersionOneWins(t *testing.T) {
	t.Parallel()
	s, pool := MustStore(t)
	mustAppend(t, s, one("order-hot", eventstore.NoStream, ev("Placed", 0)))

	const writers = 32
	for round := range 5 {
		var (
			wg        sync.WaitGroup
			mu        sync.Mutex
			wins      int
			conflicts int
			others    []error
		)
		start := make(chan struct{})
		expected := eventstore.Exactly(int64(round + 1))
		for i := range writers {
			wg.Go(func() {
				<-start
				_, err := s.Append(context.Background(), one("order-hot", expected, ev("Changed", i)))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, eventstore.ErrConcurrency):
					conflicts++
				default:
					others = append(others, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if wins != 1 || conflicts != writers-1 || len(others) > 0 {
			t.Fatalf("round %d: %d wins, %d conflicts, other errors %v; want 1 win and %d conflicts",
				round, wins, conflicts, others, writers-1)
		}
	}
	if n := countEvents(t, pool); n != 6 {
		t.Fatalf("%d events stored; want 6", n)
	}
}

func TestMultiStreamAppendIsAllOrNothing(t *testing.T) {
	t.Parallel()
	s, pool := MustStore(t)
	ctx := context.Background()
	mustAppend(t, s, one("sku-a", eventstore.NoStream, ev("StockAdded", 1)))
	mustAppend(t, s, one("sku-b", eventstore.NoStream, ev("StockAdded", 1), ev("StockAdded", 2)))

	stale := eventstore.Append{Streams: []eventstore.StreamAppend{
		{StreamID: "sku-a", Expected: eventstore.Exactly(1), Events: []eventstore.EventData{ev("StockReserved", 1)}},
		{StreamID: "sku-b", Expected: eventstore.Exactly(1), Events: []eventstore.EventData{ev("StockReserved", 1)}}, // is at 2
		{StreamID: "reservation-1", Expected: eventstore.NoStream, Events: []eventstore.EventData{ev("InventoryReserved", 1)}},
	}}
	_, err := s.Append(ctx, stale)
	var ce *eventstore.ConflictError
	if !errors.As(err, &ce) || ce.StreamID != "sku-b" || ce.Actual != 2 {
		t.Fatalf("err = %v; want a conflict on sku-b at 2", err)
	}
	if n := countEvents(t, pool); n != 3 {
		t.Fatalf("%d events stored after the refused multi-stream append; want 3", n)
	}

	stale.Streams[1].Expected = eventstore.Exactly(2)
	res := mustAppend(t, s, stale)
	for stream, want := range map[string]int64{"sku-a": 2, "sku-b": 3, "reservation-1": 1} {
		if v, ok := res.Version(stream); !ok || v != want {
			t.Fatalf("version of %s = %d, %v; want %d", stream, v, ok, want)
		}
	}
	// All three streams were written by one transaction.
	var txs int
	if err := pool.QueryRow(ctx, `select count(distinct tx_id) from events where type in ('StockReserved', 'InventoryReserved')`).Scan(&txs); err != nil {
		t.Fatal(err)
	}
	if txs != 1 {
		t.Fatalf("multi-stream append used %d transactions; want 1", txs)
	}
}

func TestIdempotentCommands(t *testing.T) {
	t.Parallel()
	s, pool := MustStore(t)
	ctx := context.Background()
	a := one("order-idem", eventstore.NoStream, ev("Placed", 1), ev("Noted", 2))
	a.CommandID, a.Fingerprint = "cmd-1", "fp-1"

	first := mustAppend(t, s, a)
	// A retry, even one whose expected version no longer holds, answers from the first.
	again, err := s.Append(ctx, a)
	if !errors.Is(err, eventstore.ErrDuplicateCommand) {
		t.Fatalf("second append: err = %v; want ErrDuplicateCommand", err)
	}
	if v1, _ := first.Version("order-idem"); func() int64 { v, _ := again.Version("order-idem"); return v }() != v1 {
		t.Fatalf("duplicate result %+v differs from first %+v", again, first)
	}
	// Concurrent retries of a new command: one set of events.
	b := one("order-idem-2", eventstore.Any, ev("Placed", 1))
	b.CommandID, b.Fingerprint = "cmd-2", "fp-2"
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			_, err := s.Append(ctx, b)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	oks := 0
	for err := range errs {
		switch {
		case err == nil:
			oks++
		case errors.Is(err, eventstore.ErrDuplicateCommand):
		default:
			t.Fatalf("concurrent retry: %v", err)
		}
	}
	if oks != 1 {
		t.Fatalf("%d concurrent retries appended; want 1", oks)
	}

	reused := one("order-other", eventstore.Any, ev("Placed", 1))
	reused.CommandID, reused.Fingerprint = "cmd-1", "fp-other"
	if _, err := s.Append(ctx, reused); !errors.Is(err, eventstore.ErrCommandIDReused) {
		t.Fatalf("reused command id: err = %v; want ErrCommandIDReused", err)
	}
	if n := countEvents(t, pool); n != 3 {
		t.Fatalf("%d events stored; want 3 (2 + 1)", n)
	}
}

func TestInvalidAppendsStoreNothing(t *testing.T) {
	t.Parallel()
	s, pool := MustStore(t)
	tests := []struct {
		name string
		a    eventstore.Append
	}{
		{"no streams", eventstore.Append{}},
		{"empty stream id", one("", eventstore.Any, ev("A", 1))},
		{"no events", one("order-x", eventstore.Any)},
		{"no type", one("order-x", eventstore.Any, eventstore.EventData{Data: json.RawMessage(`{}`)})},
		{"data not JSON", one("order-x", eventstore.Any, eventstore.EventData{Type: "A", Data: json.RawMessage(`{`)})},
		{"bad expected version", one("order-x", eventstore.ExpectedVersion(-7), ev("A", 1))},
		{"stream named twice", eventstore.Append{Streams: []eventstore.StreamAppend{
			{StreamID: "order-x", Expected: eventstore.Any, Events: []eventstore.EventData{ev("A", 1)}},
			{StreamID: "order-x", Expected: eventstore.Any, Events: []eventstore.EventData{ev("A", 1)}},
		}}},
		// Text PostgreSQL cannot hold would fail the whole batch the append
		// rides in, and json.Marshal would store invalid UTF-8 altered.
		{"NUL in stream id", one("order-\x00", eventstore.Any, ev("A", 1))},
		{"invalid UTF-8 in stream id", one("order-\xff", eventstore.Any, ev("A", 1))},
		{"NUL in type", one("order-x", eventstore.Any, ev("A\x00", 1))},
		{"NUL escaped in data", one("order-x", eventstore.Any, eventstore.EventData{Type: "A", Data: json.RawMessage(`{"r":"a\u0000b"}`)})},
		{"NUL escaped after an escaped backslash", one("order-x", eventstore.Any, eventstore.EventData{Type: "A", Data: json.RawMessage(`{"r":"\\\u0000"}`)})},
		{"invalid UTF-8 in data", one("order-x", eventstore.Any, eventstore.EventData{Type: "A", Data: json.RawMessage("{\"r\":\"\xff\"}")})},
		{"NUL in metadata", one("order-x", eventstore.Any, eventstore.EventData{Type: "A", Data: json.RawMessage(`{}`),
			Metadata: eventstore.Metadata{CorrelationID: "c\x00"}})},
		{"NUL in command id", eventstore.Append{CommandID: "cmd\x00", Streams: []eventstore.StreamAppend{
			{StreamID: "order-x", Expected: eventstore.Any, Events: []eventstore.EventData{ev("A", 1)}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Append(context.Background(), tt.a); !errors.Is(err, eventstore.ErrInvalidAppend) {
				t.Fatalf("err = %v; want ErrInvalidAppend", err)
			}
		})
	}
	if n := countEvents(t, pool); n != 0 {
		t.Fatalf("%d events stored; want 0", n)
	}
	// A backslash before "u0000" that is itself escaped is text, not NUL.
	text := json.RawMessage(`{"r":"\\u0000"}`)
	mustAppend(t, s, one("order-x", eventstore.Any, eventstore.EventData{Type: "A", Data: text}))
	got, err := s.ReadStream(context.Background(), "order-x", 1, 0)
	var data struct{ R string }
	if err != nil || len(got) != 1 || json.Unmarshal(got[0].Data, &data) != nil || data.R != `\u0000` {
		t.Fatalf("read %v, %v; want the one event with data %s", got, err, text)
	}
}

// A read of a stream id PostgreSQL cannot hold finds nothing, and fails no
// other read: concurrent reads share one query, which such an id would fail
// for all of them.
func TestUnstorableStreamIDFailsNoOtherRead(t *testing.T) {
	t.Parallel()
	s, _ := MustStore(t)
	mustAppend(t, s, one("order-good", eventstore.NoStream, ev("A", 1)))
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Go(func() {
			switch i % 4 {
			case 0:
				if _, err := s.ReadStream(context.Background(), "order-\x00", 1, 0); !errors.Is(err, eventstore.ErrNotFound) {
					errs <- fmt.Errorf("read with NUL: %v; want ErrNotFound", err)
				}
			case 1:
				if _, err := s.ReadStream(context.Background(), "order-\xff", 1, 0); !errors.Is(err, eventstore.ErrNotFound) {
					errs <- fmt.Errorf("read with invalid UTF-8: %v; want ErrNotFound", err)
				}
			default:
				if got, err := s.ReadStream(context.Background(), "order-good", 1, 0); err != nil || len(got) != 1 {
					errs <- fmt.Errorf("good read: %d events, %v", len(got), err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestPosition(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "0.0", "12.345"} {
		p, err := eventstore.ParsePosition(s)
		if err != nil {
			t.Fatalf("ParsePosition(%q): %v", s, err)
		}
		if s != "" && p.String() != s {
			t.Fatalf("round trip of %q gave %q", s, p.String())
		}
	}
	for _, s := range []string{"x", "1", "1.", ".1", "-1.2", "1.2.3", "1.-2"} {
		if _, err := eventstore.ParsePosition(s); err == nil {
			t.Fatalf("ParsePosition(%q) accepted a bad token", s)
		}
	}
	a, b := eventstore.Position{TxID: 5, Seq: 9}, eventstore.Position{TxID: 6, Seq: 1}
	if a.Compare(b) != -1 || b.Compare(a) != 1 || a.Compare(a) != 0 {
		t.Fatal("Compare orders by transaction, then sequence")
	}
}

// openAppend runs the store's append function in a transaction it leaves
// open, as a slow writer would.
func openAppend(t *testing.T, pool *pgxpool.Pool, stream string, exp int64, n int) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A test that fails while the transaction is open must still end it:
	// the pool's Close, a cleanup registered before this one, waits for
	// its connection, and would hang the run instead of reporting the
	// failure. After a commit or rollback this does nothing.
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	events := make([]map[string]any, n)
	for i := range events {
		events[i] = map[string]any{"id": fmt.Sprintf("00000000-0000-7000-8000-%012d", i+1), "type": "Slow", "sv": 1, "data": map[string]int{"n": i}}
	}
	batch, _ := json.Marshal([]any{map[string]any{"cmd": "", "streams": []any{map[string]any{"id": stream, "exp": exp, "events": events}}}})
	var raw []byte
	if err := tx.QueryRow(ctx, "select orderflow_append($1::jsonb)", batch).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	return tx
}

// collect tails the store into a channel until the test ends.
func collect(t *testing.T, s *eventstore.Store) <-chan eventstore.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan eventstore.Event, 10_000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Subscribe(ctx, eventstore.Position{}, 7, func(_ context.Context, events []eventstore.Event) error {
			for _, e := range events {
				out <- e
			}
			return nil
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return out
}

func receive(t *testing.T, ch <-chan eventstore.Event, n int) []eventstore.Event {
	t.Helper()
	got := make([]eventstore.Event, 0, n)
	timeout := time.After(30 * time.Second)
	for len(got) < n {
		select {
		case e := <-ch:
			got = append(got, e)
		case <-timeout:
			t.Fatalf("received %d of %d events", len(got), n)
		}
	}
	return got
}

func label(e eventstore.Event) string { return fmt.Sprintf("%s@%d", e.StreamID, e.Version) }

func TestTailWaitsForOpenTransaction(t *testing.T) {
	t.Parallel()
	for _, commit := range []bool{true, false} {
		t.Run(fmt.Sprintf("commit=%v", commit), func(t *testing.T) {
			t.Parallel()
			s, pool := MustStore(t)
			ctx := context.Background()
			tail := collect(t, s)

			mustAppend(t, s, one("order-a", eventstore.NoStream, ev("A1", 1)))
			if got := receive(t, tail, 1); label(got[0]) != "order-a@1" {
				t.Fatalf("first event = %s", label(got[0]))
			}
			slow := openAppend(t, pool, "order-slow", 0, 3) // holds a transaction id below what follows
			mustAppend(t, s, one("order-b", eventstore.NoStream, ev("B1", 1), ev("B2", 2)))
			mustAppend(t, s, one("order-a", eventstore.Exactly(1), ev("A2", 2)))

			// Nothing after the open transaction may be read while it is
			// open. A read may also stop short of order-a@1, legitimately: at
			// a transaction (of any database: transaction ids are the
			// cluster's) that ended between the read's snapshot and its look
			// at the transactions, which the bound counts as it would a
			// writer. Such a stop is brief, so read again.
			var all []eventstore.Event
			for until := time.Now().Add(5 * time.Second); len(all) == 0 && time.Now().Before(until); time.Sleep(5 * time.Millisecond) {
				var err error
				if all, err = s.ReadAll(ctx, eventstore.Position{}, 100); err != nil {
					t.Fatal(err)
				}
			}
			if len(all) != 1 || label(all[0]) != "order-a@1" {
				var bound string
				_ = pool.QueryRow(ctx, `select format('%s, writers %s', (select row(b.*)::text from orderflow_log_bound() b),
					(select array_agg(backend_xid)::text from orderflow_event_writers))`).Scan(&bound)
				t.Fatalf("ReadAll while a transaction is open returned %v; want only order-a@1 (bound now: %s)", labels(all), bound)
			}
			age, err := s.OldestTransactionAge(ctx)
			if err != nil || age <= 0 {
				t.Fatalf("OldestTransactionAge = %v, %v; want > 0 while a transaction is open", age, err)
			}
			// Nor delivered by the tail so far (with commit=true the order
			// check below also catches a later early delivery).
			select {
			case e := <-tail:
				t.Fatalf("tail delivered %s while an earlier transaction was open", label(e))
			default:
			}

			if commit {
				if err := slow.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			} else if err := slow.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			want := []string{"order-b@1", "order-b@2", "order-a@2"}
			if commit {
				want = []string{"order-slow@1", "order-slow@2", "order-slow@3", "order-b@1", "order-b@2", "order-a@2"}
			}
			got := receive(t, tail, len(want))
			for i := range want {
				if label(got[i]) != want[i] {
					t.Fatalf("tail order: got %v; want %v", labels(got), want)
				}
			}
			// The marker proves nothing else (e.g. rolled-back events) was queued.
			mustAppend(t, s, one("order-marker", eventstore.NoStream, ev("M", 1)))
			if got := receive(t, tail, 1); label(got[0]) != "order-marker@1" {
				t.Fatalf("after the expected events the tail delivered %s; want the marker", label(got[0]))
			}
		})
	}
}

func labels(events []eventstore.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = label(e)
	}
	return out
}

// Many writers race over a few streams with transactions of different
// lengths (some commit at once, some linger before committing), beside
// transactions that write no events; a tailer running alongside must see
// every event exactly once, each stream in version order, and in positions
// that only grow.
func TestTailUnderConcurrentWriters(t *testing.T) {
	t.Parallel()
	s, pool := MustStore(t)
	tail := collect(t, s)
	const writers, perWriter, streams = 8, 100, 5
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				stream := fmt.Sprintf("order-%d", (w+i)%streams)
				if w%2 == 0 { // through the store: batched, committed at once
					if _, err := s.Append(ctx, one(stream, eventstore.Any, ev("E", w*1000+i))); err != nil {
						t.Errorf("append: %v", err)
						return
					}
					continue
				}
				// In a transaction of its own that lingers a little.
				batch := fmt.Sprintf(`[{"cmd":"","streams":[{"id":%q,"exp":-1,"events":[{"id":"%s","type":"E","sv":1,"data":{}}]}]}]`,
					stream, fmt.Sprintf("00000000-0000-7000-8000-%012d", w*1000+i))
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, "select orderflow_append($1::jsonb)", batch); err != nil {
						return err
					}
					_, err := tx.Exec(ctx, "select pg_sleep(random() * 0.002)")
					return err
				})
				if err != nil {
					t.Errorf("append in a transaction: %v", err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	var others sync.WaitGroup
	for range 2 { // transactions that hold an id and write no events
		others.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				_, err := pool.Exec(ctx, "select pg_current_xact_id(), pg_sleep(random() * 0.002)")
				if err != nil {
					t.Errorf("other transaction: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	others.Wait()
	got := receive(t, tail, writers*perWriter)
	last := map[string]int64{}
	var prev eventstore.Position
	for _, e := range got {
		if e.Position.Compare(prev) <= 0 {
			t.Fatalf("position %s not after %s", e.Position, prev)
		}
		prev = e.Position
		if e.Version != last[e.StreamID]+1 {
			t.Fatalf("%s: version %d after %d", e.StreamID, e.Version, last[e.StreamID])
		}
		last[e.StreamID] = e.Version
	}
	select {
	case e := <-tail:
		t.Fatalf("tail delivered an extra event %s", label(e))
	default:
	}
}

// A transaction that holds a transaction id but writes no events (a
// projector's view update, a saga's bookkeeping, one in another database)
// does not hold tailers back; one that writes events does, however it
// inserts them.
func TestOnlyEventWritersHoldTheTail(t *testing.T) {
	t.Parallel()
	s, pool := MustStore(t)
	ctx := context.Background()
	mustAppend(t, s, one("order-a", eventstore.NoStream, ev("A1", 1)))

	other, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback(ctx)
	if _, err := other.Exec(ctx, `create temporary table scratch (n int); insert into scratch values (1)`); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, one("order-b", eventstore.NoStream, ev("B1", 1)))
	all := readAllUntil(t, s, 2)
	if got := labels(all); len(got) != 2 || got[1] != "order-b@1" {
		t.Fatalf("ReadAll beside an open transaction that writes no events = %v; want order-a@1, order-b@1", got)
	}
	if age, err := s.OldestTransactionAge(ctx); err != nil || age != 0 {
		t.Fatalf("OldestTransactionAge = %v, %v; want 0: no transaction writing events is open", age, err)
	}

	// A plain INSERT as a transaction's first write makes it a writer too.
	writer, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Rollback(ctx)
	if _, err := writer.Exec(ctx, `insert into events (event_id, stream_id, version, type, schema_version, data)
		values (gen_random_uuid(), 'order-c', 1, 'C1', 1, '{}')`); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, one("order-d", eventstore.NoStream, ev("D1", 1)))
	if all, err := s.ReadAll(ctx, all[1].Position, 100); err != nil || len(all) != 0 {
		t.Fatalf("ReadAll while an insert into events is open = %v, %v; want nothing", labels(all), err)
	}
	if age, err := s.OldestTransactionAge(ctx); err != nil || age <= 0 {
		t.Fatalf("OldestTransactionAge = %v, %v; want > 0 while an insert into events is open", age, err)
	}
	if err := writer.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(labels(readAllUntil(t, s, 4))); got != "[order-a@1 order-b@1 order-c@1 order-d@1]" {
		t.Fatalf("after the insert committed: %s", got)
	}
}

// readAllUntil reads the whole log until it holds want events, for ten
// seconds at most, and returns the last read. A transaction of another test
// that ends just as the horizon is worked out holds it back for that one
// read (the horizon counts an ended transaction conservatively), so a single
// read may come back short; one that stays short is a failure of the caller.
func readAllUntil(t *testing.T, s *eventstore.Store, want int) []eventstore.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		all, err := s.ReadAll(context.Background(), eventstore.Position{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) >= want || time.Now().After(deadline) {
			return all
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A transaction that already holds an id when it first inserts events could
// be past a reader's horizon already, so the insert is refused, with a
// clear error, and nothing is stored.
func TestEventsMustBeATransactionsFirstWrite(t *testing.T) {
	t.Parallel()
	s, pool := MustStore(t)
	ctx := context.Background()
	before := countEvents(t, pool)
	for name, insert := range map[string]string{
		"orderflow_append": `select orderflow_append('[{"cmd":"","streams":[{"id":"order-x","exp":-1,"events":[{"id":"00000000-0000-7000-8000-000000000001","type":"X","sv":1,"data":{}}]}]}]'::jsonb)`,
		"insert":           `insert into events (event_id, stream_id, version, type, schema_version, data) values (gen_random_uuid(), 'order-x', 1, 'X', 1, '{}')`,
	} {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `select pg_current_xact_id()`); err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, insert)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "55000" || pgErr.Message != "orderflow: a transaction must write events before anything else" {
			t.Errorf("%s after another write: %v; want SQLSTATE 55000, events before anything else", name, err)
		}
		if err := tx.Commit(ctx); !errors.Is(err, pgx.ErrTxCommitRollback) {
			t.Errorf("%s: commit after the refused insert: %v; want a rollback", name, err)
		}
	}
	if after := countEvents(t, pool); after != before {
		t.Fatalf("events: %d before, %d after refused inserts", before, after)
	}
	// Then appends work as ever.
	mustAppend(t, s, one("order-x", eventstore.NoStream, ev("X", 1)))
}

// orderflow_log_bound says whether a reader stopped at the horizon should
// wait (a writer still running will notify when it commits) or read again
// at once (a transaction that ended after the snapshot set it, and nothing
// will announce what lies past it). A repeatable-read transaction holds a
// snapshot while the transactions in it end.
func TestLogBoundSaysWhetherToWait(t *testing.T) {
	t.Parallel()
	s, pool := MustStore(t)
	ctx := context.Background()
	begin := func(iso pgx.TxIsoLevel) pgx.Tx {
		t.Helper()
		tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: iso})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tx.Rollback(ctx) })
		return tx
	}
	xid := func(tx pgx.Tx) int64 {
		t.Helper()
		var x int64
		if err := tx.QueryRow(ctx, "select pg_current_xact_id()::text::bigint").Scan(&x); err != nil {
			t.Fatal(err)
		}
		return x
	}
	// bound returns the horizon, whether it is settled, and the end of the
	// log for tx's snapshot (its xmax: ids from there on are not in the
	// snapshot's list of running transactions, whether they run or not).
	bound := func(tx pgx.Tx) (horizon int64, settled bool, end int64) {
		t.Helper()
		if err := tx.QueryRow(ctx, `select horizon, settled, pg_snapshot_xmax(pg_current_snapshot())::text::bigint
			from orderflow_log_bound()`).Scan(&horizon, &settled, &end); err != nil {
			t.Fatal(err)
		}
		return horizon, settled, end
	}
	snapshot := func() pgx.Tx { // a repeatable-read snapshot, taken now
		t.Helper()
		tx := begin(pgx.RepeatableRead)
		if _, err := tx.Exec(ctx, "select 1"); err != nil {
			t.Fatal(err)
		}
		return tx
	}
	// A snapshot lists the running transactions below the newest that has
	// ended; one more transaction ending puts every running one in the list.
	completeOne := func() {
		t.Helper()
		if _, err := pool.Exec(ctx, "select pg_current_xact_id()"); err != nil {
			t.Fatal(err)
		}
	}

	// A transaction that writes no events ends after the snapshot: the
	// horizon stops at it, or at an older one of another test that ended
	// too, and the reader must not wait.
	other := begin(pgx.ReadCommitted)
	a := xid(other)
	mustAppend(t, s, one("order-a", eventstore.NoStream, ev("A1", 1)))
	held := snapshot()
	if err := other.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if h, settled, _ := bound(held); h > a || settled {
		t.Fatalf("after a transaction writing no events ended: horizon %d, settled %v; want at most %d, not settled", h, settled, a)
	}

	// A writer still running: the reader waits for its notification. An
	// older transaction of another test that ends just then may set the
	// horizon instead, and then it is not settled; so look until the
	// writer is the horizon, and check the answer every time.
	writer := begin(pgx.ReadCommitted)
	if _, err := writer.Exec(ctx, "select orderflow_event_writer()"); err != nil {
		t.Fatal(err)
	}
	w := xid(writer)
	completeOne()
	for attempt := 1; ; attempt++ {
		h, settled, end := bound(snapshot())
		if h > min(w, end) || settled != (h == w || h == end) {
			t.Fatalf("beside a running writer %d (log end %d): horizon %d, settled %v; want the writer or the end, settled, or an older horizon, not settled", w, end, h, settled)
		}
		if h == w {
			break
		}
		if attempt == 50 {
			t.Fatalf("the running writer %d was never the horizon in %d looks", w, attempt)
		}
	}

	// A transaction writing no events ends, and an older writer runs: the
	// writer decides.
	younger := begin(pgx.ReadCommitted)
	y := xid(younger) // after w
	completeOne()
	held = snapshot()
	if err := younger.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if h, settled, end := bound(held); h > w || settled != (h == w || h == end) {
		t.Fatalf("writer %d older than an ended transaction %d: horizon %d, settled %v; want the writer, settled", w, y, h, settled)
	}
}
