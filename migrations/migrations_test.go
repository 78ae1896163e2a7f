package migrations_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"

	"github.com/orderflow/orderflow/internal/dbtest"
	"github.com/orderflow/orderflow/migrations"
)

func TestApplyIsRepeatable(t *testing.T) {
	t.Parallel()
	url := dbtest.MustURL(t) // already migrated once
	ctx := context.Background()
	v1, err := migrations.ApplyURL(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := migrations.ApplyURL(ctx, url)
	if err != nil || v2 != v1 || v1 < 1 {
		t.Fatalf("second apply: version %d → %d, %v", v1, v2, err)
	}
}

// Going back from 008 gives every stream whose events a rebuild replayed
// its checkpoint row again (up to the replayed position, nothing past it),
// and going forward again works.
func TestReplayedPositionDownDerivesCheckpoints(t *testing.T) {
	t.Parallel()
	url := dbtest.MustURL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, sql := range []string{
		`insert into events (event_id, stream_id, version, type, schema_version, data, metadata)
			select gen_random_uuid(), s, v, 'E', 1, '{}', '{}' from (values ('order-a', 1), ('order-a', 2), ('sku-x', 1)) as t(s, v)`,
		`insert into projection_builds (projection, replayed_tx_id, replayed_seq)
			select p, tx_id, seq from (select tx_id, seq from events order by tx_id desc, seq desc limit 1) e,
			unnest(array['order_details', 'stock']) p`,
		`insert into events (event_id, stream_id, version, type, schema_version, data, metadata)
			values (gen_random_uuid(), 'order-a', 3, 'E', 1, '{}', '{}')`, // past the replayed position
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	m := mustMigrator(t, conn)
	if err := m.MigrateTo(ctx, 7); err != nil {
		t.Fatalf("down to 7: %v", err)
	}
	var orderV, skuV int64
	if err := conn.QueryRow(ctx, `select (select version from order_details_checkpoints where stream_id = 'order-a'),
		(select version from stock_checkpoints where stream_id = 'sku-x')`).Scan(&orderV, &skuV); err != nil {
		t.Fatalf("checkpoints after going down: %v", err)
	}
	if orderV != 2 || skuV != 1 {
		t.Fatalf("checkpoints after going down: order-a %d, sku-x %d; want 2 and 1", orderV, skuV)
	}
	if _, err := migrations.Apply(ctx, conn); err != nil {
		t.Fatalf("up again: %v", err)
	}
}

// mustConnect connects to a database of its own (migrated to the latest
// version), closed when t ends, and returns a migrator over it.
func mustConnect(t *testing.T) (*pgx.Conn, *migrate.Migrator) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbtest.MustURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	return conn, mustMigrator(t, conn)
}

// mustMigrator returns a migrator over conn with orderflow's migrations
// loaded, to move the schema to a given version.
func mustMigrator(t *testing.T, conn *pgx.Conn) *migrate.Migrator {
	t.Helper()
	m, err := migrate.NewMigrator(context.Background(), conn, "orderflow_schema_version")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.LoadMigrations(migrations.FS()); err != nil {
		t.Fatal(err)
	}
	return m
}

// latest is the version of the last migration.
func latest(t *testing.T) int32 {
	t.Helper()
	m := &migrate.Migrator{}
	if err := m.LoadMigrations(migrations.FS()); err != nil {
		t.Fatal(err)
	}
	return int32(len(m.Migrations))
}

// Down from 012, orderflow_log_horizon is 011's function again and
// orderflow_log_bound is gone; up again, the horizon is the bound's.
func TestLogBoundDownRestoresTheHorizon(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	connect := func(version int32) *pgx.Conn { // a database at version, reached by migrating to it
		t.Helper()
		conn, err := pgx.Connect(ctx, dbtest.MustURL(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(ctx) })
		if err := mustMigrator(t, conn).MigrateTo(ctx, version); err != nil {
			t.Fatalf("to %d: %v", version, err)
		}
		return conn
	}
	src := func(conn *pgx.Conn, name string) string {
		t.Helper()
		var s string
		if err := conn.QueryRow(ctx, "select coalesce((select prosrc from pg_proc where proname = $1), '')", name).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	down := connect(11) // from 012 down
	up := connect(10)   // from 010 up through 011
	if err := mustMigrator(t, up).MigrateTo(ctx, 11); err != nil {
		t.Fatal(err)
	}
	if src(down, "orderflow_log_bound") != "" {
		t.Fatal("orderflow_log_bound still exists after going down from 012")
	}
	if src(down, "orderflow_log_horizon") != src(up, "orderflow_log_horizon") {
		t.Fatal("after going down from 012, orderflow_log_horizon is not 011's")
	}
	var h int64
	if err := down.QueryRow(ctx, "select orderflow_log_horizon()").Scan(&h); err != nil || h <= 0 {
		t.Fatalf("orderflow_log_horizon() after going down = %d, %v", h, err)
	}
	if err := mustMigrator(t, down).Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if got := src(down, "orderflow_log_horizon"); !strings.Contains(got, "orderflow_log_bound") {
		t.Fatalf("orderflow_log_horizon after going up again does not read orderflow_log_bound: %s", got)
	}
}

// 013 gives orders_by_customer, and the shadow of a rebuild under way, a
// unique index on order_id; going down finds and drops it whatever a swap
// has named it; going up again works.
func TestOrdersByCustomerOrderIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, m := mustConnect(t)
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	indexed := func(want int) { // tables with a unique index on order_id alone
		t.Helper()
		var n int
		if err := conn.QueryRow(ctx, `select count(*) from pg_index x
			where x.indrelid in (select to_regclass(t) from unnest(array['orders_by_customer', 'orders_by_customer_rebuild']) t)
			  and x.indisunique and x.indnatts = 1
			  and x.indkey[0] = (select attnum from pg_attribute where attrelid = x.indrelid and attname = 'order_id')`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Fatalf("%d of orders_by_customer and its shadow have a unique index on order_id; want %d", n, want)
		}
	}
	if err := m.MigrateTo(ctx, 12); err != nil {
		t.Fatal(err)
	}
	exec(`create table orders_by_customer_rebuild (like orders_by_customer including all)`) // a rebuild under way
	indexed(0)
	if err := m.MigrateTo(ctx, 13); err != nil {
		t.Fatal(err)
	}
	indexed(2)
	// The rebuild swaps its shadow in (as projector does) and a later one
	// makes a new shadow like it.
	exec(`alter table orders_by_customer rename to orders_by_customer_old`)
	exec(`alter table orders_by_customer_rebuild rename to orders_by_customer`)
	exec(`drop table orders_by_customer_old`)
	exec(`create table orders_by_customer_rebuild (like orders_by_customer including all)`)
	indexed(2)
	if err := m.MigrateTo(ctx, 12); err != nil {
		t.Fatalf("down to 12: %v", err)
	}
	indexed(0)
	exec(`drop table orders_by_customer_rebuild`)
	if err := m.Migrate(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	indexed(1)
}

// 014 records a deadline in the transaction that appends its OrderPlaced
// (and for an order placed before it, when it is applied); an OrderPlaced
// without a deadline, or another event, records none; going down stops it.
func TestDeadlinesRecordedAtPlacement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, m := mustConnect(t)
	place := func(order, data string) {
		t.Helper()
		if _, err := conn.Exec(ctx, `insert into events (event_id, stream_id, version, type, schema_version, data)
			values (gen_random_uuid(), 'order-' || $1, 1, 'OrderPlaced', 1, $2::jsonb)`, order, data); err != nil {
			t.Fatal(err)
		}
	}
	placed := func(order string) string {
		return `{"order_id":"` + order + `","customer_id":"c","lines":[],"total_cents":0,"placed_at":"2026-11-26T10:00:00Z","deadline_at":"2026-11-26T10:00:30Z"}`
	}
	deadlines := func(want ...string) {
		t.Helper()
		var got []string
		rows, err := conn.Query(ctx, `select order_id::text || '@' || to_char(due_at at time zone 'UTC', 'HH24:MI:SS') from saga_deadlines order by 1`)
		if err != nil {
			t.Fatal(err)
		}
		if got, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("deadlines %v, want %v", got, want)
		}
	}
	const a, b, c, d = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b",
		"00000000-0000-4000-8000-00000000000c", "00000000-0000-4000-8000-00000000000d"
	if err := m.MigrateTo(ctx, 13); err != nil {
		t.Fatal(err)
	}
	place(a, placed(a)) // placed before 014, its OrderPlaced not consumed yet
	deadlines()
	if err := m.MigrateTo(ctx, 14); err != nil {
		t.Fatal(err)
	}
	deadlines(a + "@10:00:30")
	place(b, placed(b))
	place(c, `{"order_id":"`+c+`","customer_id":"c","lines":[],"total_cents":0,"placed_at":"2026-11-26T10:00:00Z"}`)
	if _, err := conn.Exec(ctx, `insert into events (event_id, stream_id, version, type, schema_version, data)
		values (gen_random_uuid(), 'order-' || $1, 2, 'OrderConfirmed', 1, $2::jsonb)`, b, placed(d)); err != nil {
		t.Fatal(err)
	}
	deadlines(a+"@10:00:30", b+"@10:00:30")
	// What the saga could not read appends all the same, with no deadline;
	// a second OrderPlaced of an order keeps the first deadline.
	const bad = "00000000-0000-4000-8000-0000000000ee"
	for i, data := range []string{
		`{"order_id":"nope","deadline_at":"2026-11-26T10:00:30Z"}`,
		`{"order_id":"` + bad + `","deadline_at":null}`,
		`{"order_id":"` + bad + `","deadline_at":"tomorrow"}`,
		`{"order_id":"` + bad + `","deadline_at":"2026-11-26 10:00:30"}`,
		`{"order_id":"` + bad + `","deadline_at":42}`,
	} {
		if _, err := conn.Exec(ctx, `insert into events (event_id, stream_id, version, type, schema_version, data)
			values (gen_random_uuid(), 'order-odd', $1, 'OrderPlaced', 1, $2::jsonb)`, i+1, data); err != nil {
			t.Fatalf("append of %s: %v", data, err)
		}
	}
	if _, err := conn.Exec(ctx, `insert into events (event_id, stream_id, version, type, schema_version, data)
		values (gen_random_uuid(), 'order-' || $1, 1, 'OrderPlaced', 2, $2::jsonb)`, bad, placed(bad)); err != nil {
		t.Fatalf("append of a schema version 2: %v", err)
	}
	if _, err := conn.Exec(ctx, `insert into events (event_id, stream_id, version, type, schema_version, data)
		values (gen_random_uuid(), 'order-' || $1, 2, 'OrderPlaced', 1, $2::jsonb)`, a,
		strings.Replace(placed(a), "10:00:30", "11:00:00", 1)); err != nil {
		t.Fatal(err)
	}
	deadlines(a+"@10:00:30", b+"@10:00:30")
	if err := m.MigrateTo(ctx, 13); err != nil {
		t.Fatalf("down to 13: %v", err)
	}
	place(d, placed(d))
	deadlines(a+"@10:00:30", b+"@10:00:30")
	if err := m.Migrate(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	deadlines(a+"@10:00:30", b+"@10:00:30", d+"@10:00:30")
}
