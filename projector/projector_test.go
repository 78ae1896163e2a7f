package projector_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/google/uuid"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/command"
	"github.com/orderflow/orderflow/eventcodec"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/internal/dbtest"
	"github.com/orderflow/orderflow/projector"
)

type fixture struct {
	pool   *pgxpool.Pool
	store  *eventstore.Store
	engine *projector.Engine
}

func MustFixture(t *testing.T) fixture {
	t.Helper()
	pool := dbtest.MustPool(t)
	store, err := eventstore.New(pool, eventstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	engine, err := projector.NewEngine(pool, store, projector.EngineConfig{Attempts: 2, Backoff: time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return fixture{pool: pool, store: store, engine: engine}
}

// inBothModes runs test, in parallel, handing events one at a time
// (Engine.Handle) and in shared transactions (Engine.HandleBatched), each
// on a fixture of its own.
func inBothModes(t *testing.T, test func(t *testing.T, f fixture, handle handler)) {
	t.Parallel()
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprintf("batched=%v", batched), func(t *testing.T) {
			t.Parallel()
			f := MustFixture(t)
			handle := handler(f.engine.Handle)
			if batched {
				handle = f.engine.HandleBatched
			}
			test(t, f, handle)
		})
	}
}

// placeOrder appends the OrderPlaced of a one-line order id, placed at.
func (f fixture) placeOrder(t *testing.T, id orderflow.OrderID, at time.Time) {
	t.Helper()
	f.appendEvent(t, id.Stream(), orderflow.OrderPlaced{OrderID: id, CustomerID: "c", Lines: []orderflow.OrderLine{{SKU: "A", Quantity: 1, UnitPriceCents: 5}}, TotalCents: 5, PlacedAt: at})
}

func (f fixture) appendEvent(t *testing.T, stream string, e orderflow.Event) {
	t.Helper()
	f.appendEventWith(t, stream, e, eventstore.Metadata{})
}

// appendUndecodable appends to stream an OrderCancelled whose payload this
// build cannot decode.
func (f fixture) appendUndecodable(t *testing.T, stream string) {
	t.Helper()
	if _, err := f.store.Append(context.Background(), eventstore.Append{Streams: []eventstore.StreamAppend{{
		StreamID: stream, Expected: eventstore.Any,
		Events: []eventstore.EventData{{Type: orderflow.EventOrderCancelled, SchemaVersion: 1, Data: []byte(`{"order_id":42}`)}},
	}}}); err != nil {
		t.Fatal(err)
	}
}

func (f fixture) appendEventWith(t *testing.T, stream string, e orderflow.Event, md eventstore.Metadata) {
	t.Helper()
	data, err := eventcodec.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Append(context.Background(), eventstore.Append{Streams: []eventstore.StreamAppend{{
		StreamID: stream, Expected: eventstore.Any,
		Events: []eventstore.EventData{{Type: e.EventType(), SchemaVersion: e.SchemaVersion(), Data: data, Metadata: md}},
	}}}); err != nil {
		t.Fatal(err)
	}
}

// sagaEvent returns a random event of an order's saga and the stream it
// goes to: a reservation-, payment- or order- stream event.
func sagaEvent(rng *rand.Rand, id orderflow.OrderID, at time.Time) (string, orderflow.Event) {
	lines := []orderflow.OrderLine{{SKU: "A", Quantity: 1, UnitPriceCents: 100}}
	switch rng.IntN(9) {
	case 0:
		return id.ReservationStream(), orderflow.InventoryReserved{OrderID: id, Lines: lines, TotalCents: 100}
	case 1:
		return id.ReservationStream(), orderflow.InventoryRejected{OrderID: id, Reason: orderflow.ReasonOutOfStock, SKU: "A"}
	case 2:
		return id.ReservationStream(), orderflow.InventoryReleased{OrderID: id}
	case 3:
		return id.ReservationStream(), orderflow.InventoryCommitted{OrderID: id}
	case 4:
		return id.PaymentStream(), orderflow.PaymentCaptured{OrderID: id, AmountCents: 100, ChargeID: "ch-" + id.String()[:8]}
	case 5:
		return id.PaymentStream(), orderflow.PaymentFailed{OrderID: id, Reason: "declined"}
	case 6:
		return id.PaymentStream(), orderflow.PaymentRefunded{OrderID: id, AmountCents: 100, ChargeID: "ch-" + id.String()[:8]}
	case 7:
		return id.Stream(), orderflow.OrderConfirmed{OrderID: id, ConfirmedAt: at}
	default:
		return id.Stream(), orderflow.OrderRejected{OrderID: id, Reason: orderflow.ReasonOutOfStock, RejectedAt: at}
	}
}

// randomHistory appends a random history of orders, their sagas and stock
// and returns the whole log as recorded.
func (f fixture) randomHistory(t *testing.T, rng *rand.Rand, orders int) []eventstore.Event {
	t.Helper()
	skus := []orderflow.SKU{"A", "B", "C", "D"}
	day := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	ids := make([]orderflow.OrderID, orders)
	for i := range ids {
		ids[i] = orderflow.NewOrderID()
	}
	for i := 0; i < orders*4; i++ {
		switch rng.IntN(4) {
		case 0:
			sku := skus[rng.IntN(len(skus))]
			f.appendEvent(t, sku.Stream(), orderflow.StockAdded{SKU: sku, Quantity: int64(rng.IntN(50) + 1), AddedAt: day.Add(time.Duration(i) * time.Minute)})
		default:
			id := ids[rng.IntN(len(ids))]
			at := day.Add(time.Duration(rng.IntN(4*24)) * time.Hour)
			history, _ := f.store.ReadStream(context.Background(), id.Stream(), 1, 0)
			if len(history) == 0 {
				lines := []orderflow.OrderLine{{SKU: skus[rng.IntN(len(skus))], Quantity: int64(rng.IntN(5) + 1), UnitPriceCents: int64(rng.IntN(5000))}}
				cmd, err := command.NewPlaceOrder(fmt.Sprintf("c-%d", rng.IntN(5)), []command.LineInput{{SKU: string(lines[0].SKU), Quantity: lines[0].Quantity, UnitPriceCents: lines[0].UnitPriceCents}})
				if err != nil {
					t.Fatal(err)
				}
				deadline := time.Duration(rng.IntN(2)) * 30 * time.Minute // none, at times
				for _, e := range command.DecidePlaceOrder(id, cmd, at, deadline) {
					f.appendEventWith(t, id.Stream(), e, eventstore.Metadata{CorrelationID: "corr-" + id.String(), CommandID: "cmd-" + id.String()})
				}
				continue
			}
			if rng.IntN(3) > 0 {
				// A saga participant reacting to the order's latest event.
				// Any order of reactions: the log may hold what a fold must tolerate.
				stream, e := sagaEvent(rng, id, at)
				f.appendEventWith(t, stream, e, eventstore.Metadata{CorrelationID: "corr-" + id.String(), CausationID: history[len(history)-1].ID.String()})
				continue
			}
			// Cancel (again, at times: the log may hold what a fold must tolerate).
			f.appendEvent(t, id.Stream(), orderflow.OrderCancelled{OrderID: id, Reason: "r", CancelledAt: at})
		}
	}
	return f.readLog(t)
}

// continueHistory appends events to streams of log: to some orders, a saga
// reaction or a cancellation; to every SKU, stock.
func (f fixture) continueHistory(t *testing.T, rng *rand.Rand, log []eventstore.Event) {
	t.Helper()
	at := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	for _, r := range log {
		if seen[r.StreamID] {
			continue
		}
		seen[r.StreamID] = true
		switch {
		case strings.HasPrefix(r.StreamID, orderflow.SKUStreamPrefix):
			sku := orderflow.SKU(strings.TrimPrefix(r.StreamID, orderflow.SKUStreamPrefix))
			f.appendEvent(t, r.StreamID, orderflow.StockAdded{SKU: sku, Quantity: int64(rng.IntN(50) + 1), AddedAt: at})
		case strings.HasPrefix(r.StreamID, orderflow.OrderStreamPrefix) && rng.IntN(2) == 0:
			id, err := orderflow.ParseOrderID("stream", strings.TrimPrefix(r.StreamID, orderflow.OrderStreamPrefix))
			if err != nil {
				t.Fatal(err)
			}
			if rng.IntN(2) == 0 {
				f.appendEvent(t, id.Stream(), orderflow.OrderCancelled{OrderID: id, Reason: "later", CancelledAt: at})
				continue
			}
			stream, e := sagaEvent(rng, id, at)
			f.appendEventWith(t, stream, e, eventstore.Metadata{CorrelationID: "corr-" + id.String()})
		}
	}
}

// readLog reads the whole log in its safe order, waiting while appends
// still open hold the horizon back.
func (f fixture) readLog(t *testing.T) []eventstore.Event {
	t.Helper()
	ctx := context.Background()
	var want int
	if err := f.pool.QueryRow(ctx, "select count(*) from events").Scan(&want); err != nil {
		t.Fatal(err)
	}
	var all []eventstore.Event
	deadline := time.Now().Add(time.Minute)
	for len(all) < want {
		var pos eventstore.Position
		if len(all) > 0 {
			pos = all[len(all)-1].Position
		}
		batch, err := f.store.ReadAll(ctx, pos, 1000)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, batch...)
		if len(batch) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("read %d of %d events within a minute", len(all), want)
			}
			time.Sleep(10 * time.Millisecond) // an append still open holds the horizon
		}
	}
	return all
}

// delivery turns the log into what a consumer might receive: each stream's
// events in order but interleaved across streams, with duplicates, a rewound
// offset (a replayed suffix, as after a crash between the database commit
// and the offset commit) and skipped events that only a later event reveals.
func delivery(rng *rand.Rand, log []eventstore.Event) []eventstore.Event {
	byStream := map[string][]eventstore.Event{}
	var streams []string
	for _, e := range log {
		if _, ok := byStream[e.StreamID]; !ok {
			streams = append(streams, e.StreamID)
		}
		byStream[e.StreamID] = append(byStream[e.StreamID], e)
	}
	queues := map[string][]eventstore.Event{}
	for _, s := range streams {
		events := byStream[s]
		var q []eventstore.Event
		for i, e := range events {
			last := i == len(events)-1
			if !last && rng.IntN(4) == 0 {
				continue // lost on the way; the next one reveals the gap
			}
			q = append(q, e)
			if rng.IntN(5) == 0 {
				q = append(q, e) // duplicate
			}
		}
		if rng.IntN(3) == 0 && len(events) > 1 { // rewind: replay from an earlier version
			q = append(q, events[rng.IntN(len(events)):]...)
		}
		queues[s] = q
	}
	var out []eventstore.Event
	for len(streams) > 0 {
		i := rng.IntN(len(streams))
		s := streams[i]
		out = append(out, queues[s][0])
		queues[s] = queues[s][1:]
		if len(queues[s]) == 0 {
			streams = slices.Delete(streams, i, i+1)
		}
	}
	return out
}

func decodeAll(t *testing.T, log []eventstore.Event) []projector.Event {
	t.Helper()
	out := make([]projector.Event, len(log))
	for i, r := range log {
		e, err := projector.Decode(r)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = e
	}
	return out
}

func snapshot(t *testing.T, f fixture, p projector.Projection) []string {
	t.Helper()
	rows, err := p.Snapshot(context.Background(), f.pool, projector.Live)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func sameRows(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s differs:\n got %d rows %v\nwant %d rows %v", what, len(got), got, len(want), want)
	}
}

// handler applies events to a projection the way a consumer would.
type handler func(ctx context.Context, p projector.Projection, e eventstore.Event) (projector.Outcome, error)

// feed hands events to handle: one by one, or (batched) in waves of up to
// 40 handled concurrently, so that the engine batches whatever gathers,
// duplicates and reorderings within a wave included.
func feed(t *testing.T, rng *rand.Rand, handle handler, p projector.Projection, events []eventstore.Event, batched bool) {
	t.Helper()
	ctx := context.Background()
	for len(events) > 0 {
		n := 1
		if batched {
			n = min(1+rng.IntN(40), len(events))
		}
		wave := events[:n]
		events = events[n:]
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i, e := range wave {
			wg.Go(func() { _, errs[i] = handle(ctx, p, e) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("%s: handle %s@%d: %v", p.Name(), wave[i].StreamID, wave[i].Version, err)
			}
		}
	}
}

// For random histories, the live projection fed with duplicates,
// redeliveries, rewound offsets and gaps, one event at a time or in
// concurrent batches, equals a full rebuild, which equals the pure fold, row
// for row.
func TestLiveEqualsRebuildEqualsFold(t *testing.T) {
	t.Parallel()
	for seed := range uint64(3) {
		for _, batched := range []bool{false, true} {
			t.Run(fmt.Sprintf("seed=%d/batched=%v", seed, batched), func(t *testing.T) {
				t.Parallel()
				f := MustFixture(t)
				rng := rand.New(rand.NewPCG(seed, 42))
				log := f.randomHistory(t, rng, 25)
				model := decodeAll(t, log)
				handle := handler(f.engine.Handle)
				if batched {
					handle = f.engine.HandleBatched
				}
				ctx := context.Background()
				for _, p := range projector.All() {
					feed(t, rng, handle, p, delivery(rng, log), batched)
					live := snapshot(t, f, p)
					sameRows(t, p.Name()+": live vs pure fold", live, p.Model(model))
					if len(live) == 0 {
						t.Fatalf("%s: empty view: the test proves nothing", p.Name())
					}
					if p.Name() == (projector.SagaTimeline{}).Name() {
						mustCover(t, live, "|reservation-", "|payment-", "|corr-", "|"+projector.InventoryReserved+"|", "|"+projector.PaymentCaptured+"|",
							"|"+orderflow.EventOrderConfirmed+"|", "|"+orderflow.EventInventoryReserved+"|")
					}
					if err := f.engine.Rebuild(ctx, p, f.store, nil); err != nil {
						t.Fatal(err)
					}
					sameRows(t, p.Name()+": rebuild vs live", snapshot(t, f, p), live)

					// The rebuild leaves no checkpoint rows: its streams stand
					// at the position it replayed to. The whole log again
					// (all duplicates now) and the streams carried on past
					// it, delivered the same way, must still fold once.
					f.continueHistory(t, rng, log)
					log = f.readLog(t)
					model = decodeAll(t, log)
					feed(t, rng, handle, p, delivery(rng, log), batched)
					sameRows(t, p.Name()+": live after a rebuild vs pure fold", snapshot(t, f, p), p.Model(model))
				}
			})
		}
	}
}

// mustCover fails unless every substring is in some row: the history
// exercised what the test means to check.
func mustCover(t *testing.T, rows []string, substrings ...string) {
	t.Helper()
	for _, sub := range substrings {
		if !slices.ContainsFunc(rows, func(r string) bool { return strings.Contains(r, sub) }) {
			t.Fatalf("no row contains %q: the history does not exercise it", sub)
		}
	}
}

// failing wraps a projection and fails every batch touching one stream.
type failing struct {
	projector.Projection
	stream string
}

func (f failing) ApplyBatch(ctx context.Context, tx pgx.Tx, t projector.Tables, events []projector.Event) error {
	for _, e := range events {
		if e.StreamID == f.stream {
			return errors.New("poison")
		}
	}
	return f.Projection.ApplyBatch(ctx, tx, t, events)
}

// An event that keeps failing parks its stream and no other, whether the
// events come one by one or in one concurrent batch (which fails as a whole
// and is then applied event by event).
func TestPoisonEventParksItsStreamOnly(t *testing.T) {
	t.Parallel()
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprintf("batched=%v", batched), func(t *testing.T) {
			t.Parallel()
			testPoison(t, batched)
		})
	}
}

func testPoison(t *testing.T, batched bool) {
	f := MustFixture(t)
	good, bad := orderflow.NewOrderID(), orderflow.NewOrderID()
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for _, id := range []orderflow.OrderID{good, bad} {
		f.placeOrder(t, id, at)
		f.appendEvent(t, id.Stream(), orderflow.OrderCancelled{OrderID: id, Reason: "r", CancelledAt: at})
	}
	p := failing{Projection: projector.OrderDetails{}, stream: bad.Stream()}
	log := f.readLog(t)
	var (
		mu       sync.Mutex
		outcomes = map[string][]projector.Outcome{}
	)
	handle := f.engine.Handle
	if batched {
		handle = f.engine.HandleBatched
	}
	var wg sync.WaitGroup
	for _, e := range log {
		run := func() {
			out, err := handle(context.Background(), p, e)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			outcomes[e.StreamID] = append(outcomes[e.StreamID], out)
			mu.Unlock()
		}
		if batched {
			wg.Go(run)
		} else {
			run()
		}
	}
	wg.Wait()
	sorted := func(o []projector.Outcome) []projector.Outcome { slices.Sort(o); return o }
	if got := outcomes[good.Stream()]; !slices.Equal(sorted(got), []projector.Outcome{projector.Applied, projector.Applied}) &&
		!(batched && slices.Equal(sorted(got), []projector.Outcome{projector.Applied, projector.Duplicate})) {
		t.Fatalf("good stream outcomes %v", got)
	}
	// Concurrently, the second event may come first: it parks the stream at
	// the first (handled for it, as the version it lacks) and is skipped,
	// and so is the first when it comes.
	if got := outcomes[bad.Stream()]; !slices.Equal(sorted(got), []projector.Outcome{projector.Skipped, projector.Parked}) &&
		!(batched && slices.Equal(got, []projector.Outcome{projector.Skipped, projector.Skipped})) {
		t.Fatalf("poisoned stream outcomes %v, want one parked and one skipped", got)
	}
	v, err := projector.LoadOrder(context.Background(), f.pool, projector.Live, good)
	if err != nil || v == nil || v.Status != projector.StatusCancelled {
		t.Fatalf("good order view = %+v, %v", v, err)
	}
	if v, _ := projector.LoadOrder(context.Background(), f.pool, projector.Live, bad); v != nil {
		t.Fatalf("poisoned order has a view row %+v", v)
	}
	status, err := f.engine.Status(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(status.Parked) != 1 || status.Parked[0].StreamID != bad.Stream() {
		t.Fatalf("status parked = %+v, want only %s", status.Parked, bad.Stream())
	}
	if status.Parked[0].Version != 1 {
		t.Fatalf("parked at version %d, want 1, the first that fails", status.Parked[0].Version)
	}
	if n := gauge(t, f.engine, "orderflow_projection_parked_streams", p.Name()); n != 1 {
		t.Fatalf("orderflow_projection_parked_streams = %v, want 1", n)
	}
}

// gauge returns the value of the engine's metric name for projection, or
// -1 when it has none.
func gauge(t *testing.T, en *projector.Engine, name, projection string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(en.Collectors()...)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "projection" && l.GetValue() == projection {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

// Two consumers handed the same events at once (a rebalance briefly gives a
// partition to two group members) apply each event once: a transaction that
// finds a checkpoint moved under it rolls back, and its retry finds the
// events applied. Aggregates (daily sales, the saga timeline's steps) show a
// double apply at once.
func TestTwoConsumersOfTheSameEventsApplyThemOnce(t *testing.T) {
	t.Parallel()
	f := MustFixture(t)
	rng := rand.New(rand.NewPCG(7, 42))
	log := f.randomHistory(t, rng, 40)
	model := decodeAll(t, log)
	second, err := projector.NewEngine(f.pool, f.store, projector.EngineConfig{Attempts: 2, Backoff: time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var retries atomic.Int64
	// handle retries transient failures as the router does.
	handle := func(en *projector.Engine, p projector.Projection, e eventstore.Event) {
		for {
			_, err := en.HandleBatched(ctx, p, e)
			if err == nil {
				return
			}
			retries.Add(1)
			if retries.Load() > 100_000 {
				t.Errorf("%s: %s@%d still failing: %v", p.Name(), e.StreamID, e.Version, err)
				return
			}
		}
	}
	for _, p := range projector.All() {
		var wg sync.WaitGroup
		for _, en := range []*projector.Engine{f.engine, second} {
			wg.Go(func() {
				var inner sync.WaitGroup
				for _, e := range log {
					inner.Go(func() { handle(en, p, e) })
				}
				inner.Wait()
			})
		}
		wg.Wait()
		sameRows(t, p.Name()+": two consumers vs pure fold", snapshot(t, f, p), p.Model(model))
	}
	t.Logf("transient failures retried: %d", retries.Load())
}

// A rebuild meeting an event that does not decode parks its stream, as the
// live projection does, and finishes: the other streams are rebuilt, the
// parked stream keeps what came before the bad event, and the live
// projection then skips it. Read in chunks of 3, the bad event falls in the
// replay; in one chunk, in the swap's catch-up.
func TestRebuildParksAnUndecodableEvent(t *testing.T) {
	t.Parallel()
	for _, chunk := range []int{3, 0} {
		t.Run(fmt.Sprintf("chunk=%d", chunk), func(t *testing.T) {
			t.Parallel()
			f := MustFixture(t)
			engine, err := projector.NewEngine(f.pool, f.store, projector.EngineConfig{Attempts: 2, Backoff: time.Millisecond, RebuildChunk: chunk}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
			place := func(id orderflow.OrderID) {
				f.placeOrder(t, id, at)
			}
			var good []orderflow.OrderID
			for range 4 {
				id := orderflow.NewOrderID()
				place(id)
				good = append(good, id)
			}
			bad := orderflow.NewOrderID()
			place(bad)
			// A cancellation whose payload this build cannot read, then a
			// readable one that must be skipped with its stream.
			f.appendUndecodable(t, bad.Stream())
			f.appendEvent(t, bad.Stream(), orderflow.OrderCancelled{OrderID: bad, Reason: "r", CancelledAt: at})
			for _, id := range good {
				f.appendEvent(t, id.Stream(), orderflow.OrderCancelled{OrderID: id, Reason: "r", CancelledAt: at})
			}

			// Every event below the snapshot horizon first: a rebuild leaves
			// what it cannot see yet to the live projection, and none runs here.
			f.readLog(t)
			p := projector.OrderDetails{}
			if err := engine.Rebuild(context.Background(), p, f.store, nil); err != nil {
				t.Fatalf("rebuild with an undecodable event: %v", err)
			}
			for _, id := range good {
				if v, err := projector.LoadOrder(context.Background(), f.pool, projector.Live, id); err != nil || v == nil || v.Status != projector.StatusCancelled {
					t.Fatalf("order %s after the rebuild = %+v, %v; want cancelled", id, v, err)
				}
			}
			v, err := projector.LoadOrder(context.Background(), f.pool, projector.Live, bad)
			if err != nil || v == nil || v.Status != projector.StatusPending || v.Version != 1 {
				t.Fatalf("parked order = %+v, %v; want pending at version 1, as before the bad event", v, err)
			}
			status, err := engine.Status(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			if len(status.Parked) != 1 || status.Parked[0].StreamID != bad.Stream() || status.Parked[0].Version != 2 {
				t.Fatalf("parked after the rebuild = %+v, want %s at version 2", status.Parked, bad.Stream())
			}
			if n := gauge(t, engine, "orderflow_projection_parked_streams", p.Name()); n != 1 {
				t.Fatalf("orderflow_projection_parked_streams after the rebuild = %v, want 1", n)
			}
			// Live, the parked stream's events are skipped.
			events, err := f.store.ReadStream(context.Background(), bad.Stream(), 3, 0)
			if err != nil {
				t.Fatal(err)
			}
			if out, err := engine.Handle(context.Background(), p, events[0]); err != nil || out != projector.Skipped {
				t.Fatalf("live event of the parked stream: %v, %v; want skipped", out, err)
			}
		})
	}
}

// Events that committed while an older transaction was still open are past
// what a rebuild can read in the log's order, but the live view may have
// them: the swap applies them too, so the swapped-in view loses nothing,
// and when they come round live they are duplicates. The status counts
// them as applied.
func TestSwapKeepsWhatCommittedPastTheHorizon(t *testing.T) {
	t.Parallel()
	f := MustFixture(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	place := func(id orderflow.OrderID) {
		f.placeOrder(t, id, at)
	}
	early, late := orderflow.NewOrderID(), orderflow.NewOrderID()
	place(early)
	f.readLog(t) // early is below the horizon

	// An open transaction writing events keeps the events after it out of
	// the log's safe order until it ends.
	holder, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx)
	if _, err := holder.Exec(ctx, `select orderflow_event_writer()`); err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, `select pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	place(late)
	f.appendEvent(t, early.Stream(), orderflow.OrderCancelled{OrderID: early, Reason: "r", CancelledAt: at})
	var past []eventstore.Event
	for _, id := range []orderflow.OrderID{early, late} {
		events, err := f.store.ReadStream(ctx, id.Stream(), 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		past = append(past, events...)
	}
	model := decodeAll(t, past)
	for _, p := range []projector.Projection{projector.OrderDetails{}, projector.DailySales{}} {
		for _, e := range past {
			if _, err := f.engine.Handle(ctx, p, e); err != nil {
				t.Fatal(err)
			}
		}
		sameRows(t, p.Name()+": live vs pure fold", snapshot(t, f, p), p.Model(model))
		if err := f.engine.Rebuild(ctx, p, f.store, nil); err != nil {
			t.Fatal(err)
		}
		sameRows(t, p.Name()+": swapped in vs pure fold", snapshot(t, f, p), p.Model(model))
		for _, e := range past {
			if out, err := f.engine.Handle(ctx, p, e); err != nil || out != projector.Duplicate {
				t.Fatalf("%s: %s@%d again after the swap: %v, %v; want a duplicate", p.Name(), e.StreamID, e.Version, out, err)
			}
		}
		status, err := f.engine.Status(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if status.Streams != 2 || status.LagEvents != 0 {
			t.Fatalf("%s: status %+v; want 2 streams, no lag", p.Name(), status)
		}
	}
}

// An event that comes ahead of versions its projection lacks is applied
// with them in one transaction; when one of those cannot be decoded, the
// stream parks at that one, with every version before it applied, whatever
// order the events came in.
func TestPoisonAheadOfItsGapParksAtTheBadVersion(t *testing.T) {
	inBothModes(t, func(t *testing.T, f fixture, handle handler) {
		at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
		bad := orderflow.NewOrderID()
		f.placeOrder(t, bad, at)
		f.appendUndecodable(t, bad.Stream())
		f.appendEvent(t, bad.Stream(), orderflow.OrderCancelled{OrderID: bad, Reason: "r", CancelledAt: at})
		log := f.readLog(t)
		p := projector.OrderDetails{}
		ctx := context.Background()
		// The last version first: the first two are missing.
		for _, step := range []struct {
			i    int
			want []projector.Outcome
		}{{2, []projector.Outcome{projector.Skipped}}, {0, []projector.Outcome{projector.Skipped, projector.Duplicate}}, {1, []projector.Outcome{projector.Skipped}}} {
			out, err := handle(ctx, p, log[step.i])
			if err != nil || !slices.Contains(step.want, out) {
				t.Fatalf("%s@%d: %v, %v; want %v", log[step.i].StreamID, log[step.i].Version, out, err, step.want)
			}
		}
		v, err := projector.LoadOrder(ctx, f.pool, projector.Live, bad)
		if err != nil || v == nil || v.Status != projector.StatusPending || v.Version != 1 {
			t.Fatalf("order = %+v, %v; want pending at version 1, what came before the bad event", v, err)
		}
		status, err := f.engine.Status(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if len(status.Parked) != 1 || status.Parked[0].StreamID != bad.Stream() || status.Parked[0].Version != 2 {
			t.Fatalf("parked = %+v, want %s at version 2, the bad event", status.Parked, bad.Stream())
		}
	})
}

// A message for a version the store does not hold (a restored database, a
// broken producer) parks its stream at that version once its retries are
// spent: the versions missing before it cannot be read, so there is nothing
// to handle one by one first, and nothing to wait for.
func TestEventBeyondTheStoredStreamParks(t *testing.T) {
	inBothModes(t, func(t *testing.T, f fixture, handle handler) {
		at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
		id := orderflow.NewOrderID()
		f.placeOrder(t, id, at)
		f.appendEvent(t, id.Stream(), orderflow.OrderCancelled{OrderID: id, Reason: "r", CancelledAt: at})
		log := f.readLog(t)
		p := projector.OrderDetails{}
		// Bounded: a handler that keeps looking for the missing
		// versions runs into this deadline instead of parking.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if out, err := handle(ctx, p, log[0]); err != nil || out != projector.Applied {
			t.Fatalf("version 1: %v, %v", out, err)
		}
		beyond := log[1]
		beyond.ID, beyond.Version = uuid.New(), 4 // the store holds versions 1 and 2
		if out, err := handle(ctx, p, beyond); err != nil || out != projector.Parked {
			t.Fatalf("version 4 of a stream stored up to 2: %v, %v; want parked", out, err)
		}
		status, err := f.engine.Status(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		if len(status.Parked) != 1 || status.Parked[0].StreamID != id.Stream() || status.Parked[0].Version != 4 {
			t.Fatalf("parked = %+v, want %s at version 4", status.Parked, id.Stream())
		}
		v, err := projector.LoadOrder(context.Background(), f.pool, projector.Live, id)
		if err != nil || v == nil || v.Version != 1 {
			t.Fatalf("order = %+v, %v; want it left at version 1", v, err)
		}
	})
}

// A live batch on a fresh connection waits for a swap without holding any
// of the projection's tables: the swap, holding the projection's lock, can
// then take every table it renames. (pgx prepares a batch's statements,
// which locks the tables they read, before running any: a lock taken by the
// batch's first statement came too late, and the two deadlocked.)
func TestALiveBatchWaitingForASwapHoldsNoTable(t *testing.T) {
	t.Parallel()
	f := MustFixture(t)
	id := orderflow.NewOrderID()
	f.placeOrder(t, id, time.Now().UTC())
	log := f.readLog(t)
	ctx := context.Background()

	// The swap's side: the projection's lock, exclusively.
	swap, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer swap.Rollback(ctx)
	if _, err := swap.Exec(ctx, `select pg_advisory_xact_lock(hashtextextended('orderflow.projection.order_details', 0))`); err != nil {
		t.Fatal(err)
	}
	type result struct {
		out projector.Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := f.engine.HandleBatched(ctx, projector.OrderDetails{}, log[0])
		done <- result{out, err}
	}()
	for waiting := 0; waiting == 0; {
		if err := f.pool.QueryRow(ctx, `select count(*) from pg_locks where locktype = 'advisory' and not granted`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting == 0 {
			time.Sleep(5 * time.Millisecond) // polling pg_locks: nothing to wait on
		}
	}
	// The swap takes the tables it renames; a batch holding one would make
	// this wait (and the deadlock detector abort one side).
	if _, err := swap.Exec(ctx, `set local lock_timeout = '5s'`); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"order_details", "order_details_checkpoints"} {
		if _, err := swap.Exec(ctx, `lock table `+table+` in access exclusive mode`); err != nil {
			t.Fatalf("the swap's lock on %s: %v", table, err)
		}
	}
	if err := swap.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.err != nil || r.out != projector.Applied {
		t.Fatalf("the batch after the swap: %v, %v; want applied", r.out, r.err)
	}
}
