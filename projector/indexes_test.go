package projector_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/command"
	"github.com/orderflow/orderflow/internal/dbtest"
	"github.com/orderflow/orderflow/projector"
)

// indexedEvents returns, for each of orders orders, the events that place
// it (with a deadline, as the API does), stock its SKU and reserve it; and
// a batch that carries on every hundredth of the first `followed` orders'
// streams (a confirmation, a commit of the reservation, more stock), so
// applying it looks up rows the first events made.
func indexedEvents(t *testing.T, orders, followed int) (first []projector.Event, second []projector.Event) {
	t.Helper()
	at := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	event := func(stream string, version int64, e orderflow.Event) projector.Event {
		return projector.Event{StreamID: stream, Version: version, Type: e.EventType(), RecordedAt: at, Payload: e}
	}
	for i := range orders {
		id := orderflow.NewOrderID()
		sku := orderflow.SKU(fmt.Sprintf("SKU-%d", i))
		cmd, err := command.NewPlaceOrder(fmt.Sprintf("c-%d", i%50), []command.LineInput{{SKU: string(sku), Quantity: 1, UnitPriceCents: 100}})
		if err != nil {
			t.Fatal(err)
		}
		placed := command.DecidePlaceOrder(id, cmd, at, 30*time.Minute)
		for v, e := range placed {
			first = append(first, event(id.Stream(), int64(v+1), e))
		}
		first = append(first, event(sku.Stream(), 1, orderflow.StockAdded{SKU: sku, Quantity: 5, AddedAt: at}),
			event(id.ReservationStream(), 1, orderflow.InventoryReserved{OrderID: id, Lines: cmd.Lines, TotalCents: 100}))
		if i < followed && i%100 == 0 {
			second = append(second,
				event(id.Stream(), int64(len(placed)+1), orderflow.OrderConfirmed{OrderID: id, ConfirmedAt: at}),
				event(id.ReservationStream(), 2, orderflow.InventoryCommitted{OrderID: id}),
				event(sku.Stream(), 2, orderflow.StockAdded{SKU: sku, Quantity: 1, AddedAt: at}))
		}
	}
	return first, second
}

// wantedBy returns the events of events that concern p, each stream's in
// version order (as events are).
func wantedBy(p projector.Projection, events []projector.Event) []projector.Event {
	var out []projector.Event
	for _, e := range events {
		if projector.Wants(p, e.StreamID) {
			out = append(out, e)
		}
	}
	return out
}

// blocksFetched returns how many blocks of the tables named (and of their
// indexes) the current transaction has asked for so far. PostgreSQL keeps
// a backend's counts pending for a while after its transactions end, so
// only a difference taken inside one transaction is that transaction's own.
func blocksFetched(ctx context.Context, tx pgx.Tx, tables []string) (int64, error) {
	var n int64
	err := tx.QueryRow(ctx, `select coalesce(sum(pg_stat_get_xact_blocks_fetched(c)), 0)::bigint
		from unnest($1::regclass[]) t(r), lateral (select t.r::oid union all select indexrelid from pg_index where indrelid = t.r) c(c)`,
		tables).Scan(&n)
	return n, err
}

// A live batch finds the rows it folds into through indexes that lead with
// their keys, so what it reads does not grow with the view. A lookup no
// such index serves reads its view table (or a whole index) each batch, in
// proportion to the view, which only grows: one did, for orders_by_customer,
// until migration 013. The same batch is applied (and rolled back) to a
// view of some orders and again to one of forty times as many. Through
// indexes, what it reads grows by a level or so of each index it descends;
// reading the view whole, by the view: it may not double.
func TestLiveBatchesReadNoMoreForALargerView(t *testing.T) {
	t.Parallel()
	pool := dbtest.MustPool(t)
	ctx := context.Background()
	const small, large = 500, 20_000
	first, second := indexedEvents(t, large, small)
	for _, p := range projector.All() {
		t.Run(p.Name(), func(t *testing.T) {
			var names []string
			for _, table := range p.Tables() {
				names = append(names, projector.Live.Name(table))
			}
			batch := wantedBy(p, second)
			if len(batch) == 0 {
				t.Fatal("no events of the second batch concern it")
			}
			read := func(size int) int64 {
				t.Helper()
				var blocks int64
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					before, err := blocksFetched(ctx, tx, names)
					if err != nil {
						return err
					}
					if err := p.ApplyBatch(ctx, tx, projector.Live, batch); err != nil {
						return err
					}
					after, err := blocksFetched(ctx, tx, names)
					blocks = after - before
					if err == nil {
						err = errRollback
					}
					return err
				})
				if err != errRollback {
					t.Fatal(err)
				}
				t.Logf("%d events applied to a view of %d orders read %d blocks", len(batch), size, blocks)
				return blocks
			}
			apply := func(events []projector.Event) {
				t.Helper()
				if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					return p.ApplyBatch(ctx, tx, projector.Live, wantedBy(p, events))
				}); err != nil {
					t.Fatal(err)
				}
			}
			// Each order's events are a run of the first events; the
			// first `small` runs hold every stream the batch carries on.
			perOrder := len(first) / large
			apply(first[:small*perOrder])
			before := read(small)
			apply(first[small*perOrder:])
			if after := read(large); after > 2*before {
				t.Errorf("%d events read %d blocks of a view of %d orders but %d of one of %d: a lookup reads in proportion to the view",
					len(batch), before, small, after, large)
			}
		})
	}
}

var errRollback = errors.New("roll back")
