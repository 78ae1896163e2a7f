package migrations_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/dbtest"
)

// The set-based orderflow_append (010, its lookup mended by 015) answers
// every batch as 001's, statement by statement, did, and leaves the same
// events and commands: random batches
// with appends that share streams and command ids within a batch and across
// batches, expected versions that hold or not, multi-stream appends that
// fail on one stream, and retried commands with the same or another
// fingerprint. Going down from 015 brings 010's function back, and from 010
// 001's.
func TestSetBasedAppendMatchesStatementByStatement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	connect := func(version int32) *pgx.Conn {
		conn, err := pgx.Connect(ctx, dbtest.MustURL(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(ctx) })
		if err := mustMigrator(t, conn).MigrateTo(ctx, version); err != nil {
			t.Fatalf("migrate to %d: %v", version, err)
		}
		return conn
	}
	old, set := connect(9), connect(latest(t))

	rng := rand.New(rand.NewPCG(5, 10))
	streams := []string{"order-a", "order-b", "sku-1", "sku-2", "reservation-x"}
	version := map[string]int64{} // the model's current versions, to aim expected versions near them
	eventN := 0
	statuses := map[string]int{}
	for b := range 60 {
		var batch []map[string]any
		for range 1 + rng.IntN(12) {
			a := map[string]any{"cmd": "", "fp": ""}
			if rng.IntN(2) == 0 {
				a["cmd"] = fmt.Sprintf("cmd-%d", rng.IntN(25))
				a["fp"] = fmt.Sprintf("fp-%d", rng.IntN(2))
			}
			var sts []map[string]any
			for _, i := range rng.Perm(len(streams))[:1+rng.IntN(3)] {
				st := streams[i]
				exp := int64(-1)
				switch rng.IntN(4) {
				case 0:
					exp = version[st]
				case 1:
					exp = version[st] + int64(rng.IntN(3)) - 1
				case 2:
					exp = 0
				}
				var evs []map[string]any
				for range 1 + rng.IntN(3) {
					eventN++
					evs = append(evs, map[string]any{"id": fmt.Sprintf("00000000-0000-7000-8000-%012d", eventN), "type": "E",
						"sv": 1 + rng.IntN(2), "data": map[string]int{"n": eventN}, "meta": map[string]string{"correlation_id": fmt.Sprint("c", b)}})
				}
				sts = append(sts, map[string]any{"id": st, "exp": exp, "events": evs})
			}
			a["streams"] = sts
			batch = append(batch, a)
		}
		raw, _ := json.Marshal(batch)
		var want, got []byte
		if err := old.QueryRow(ctx, "select orderflow_append($1::jsonb)", raw).Scan(&want); err != nil {
			t.Fatalf("batch %d, 001: %v", b, err)
		}
		if err := set.QueryRow(ctx, "select orderflow_append($1::jsonb)", raw).Scan(&got); err != nil {
			t.Fatalf("batch %d, 010: %v", b, err)
		}
		var w, g any
		_ = json.Unmarshal(want, &w)
		_ = json.Unmarshal(got, &g)
		if fmt.Sprint(w) != fmt.Sprint(g) {
			t.Fatalf("batch %d: %s\n001 answered %s\n010 answered %s", b, raw, want, got)
		}
		var results []struct {
			S string `json:"s"`
		}
		_ = json.Unmarshal(got, &results)
		for _, r := range results {
			statuses[r.S]++
		}
		if err := old.QueryRow(ctx, "select coalesce(jsonb_object_agg(stream_id, v), '{}') from (select stream_id, max(version) v from events group by stream_id) s").Scan(&want); err != nil {
			t.Fatal(err)
		}
		version = map[string]int64{}
		_ = json.Unmarshal(want, &version)
	}
	for _, q := range []string{
		"select coalesce(jsonb_agg(jsonb_build_array(event_id, stream_id, version, type, schema_version, data, metadata) order by seq), '[]') from events",
		"select coalesce(jsonb_agg(jsonb_build_array(command_id, fingerprint, result) order by command_id), '[]') from commands",
	} {
		var want, got []byte
		if err := old.QueryRow(ctx, q).Scan(&want); err != nil {
			t.Fatal(err)
		}
		if err := set.QueryRow(ctx, q).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if string(want) != string(got) {
			t.Fatalf("%s:\n001 left %.500s\n010 left %.500s", q, want, got)
		}
	}
	for _, st := range []string{"ok", "dup", "reused", "conflict"} {
		if statuses[st] < 5 {
			t.Fatalf("answers %v: too few %q for the comparison to mean much", statuses, st)
		}
	}

	// Down from 015: 010's function; down from 010: 001's.
	source := func(conn *pgx.Conn) string {
		var src string
		if err := conn.QueryRow(ctx, "select prosrc from pg_proc where proname = 'orderflow_append'").Scan(&src); err != nil {
			t.Fatal(err)
		}
		return src
	}
	for _, v := range []int32{14, 9} {
		if err := mustMigrator(t, set).MigrateTo(ctx, v); err != nil {
			t.Fatalf("down to %d: %v", v, err)
		}
		if got, want := source(set), source(connect(v)); got != want {
			t.Fatalf("after going down to %d, orderflow_append is not the function migrating up to %d makes", v, v)
		}
	}
}

// orderflow_append finds a batch's command ids through the primary key,
// whatever the size of commands, also on a plan made when the table was
// small: 010's lookup read the whole table for every batch.
func TestAppendLooksUpCommandsByIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbtest.MustURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// A long-lived pooled session ends up on generic plans, made once; the
	// tables are not analyzed meanwhile (autovacuum takes a minute to look).
	for _, sql := range []string{
		`set plan_cache_mode = force_generic_plan`,
		`alter table commands set (autovacuum_enabled = false)`,
		`alter table events set (autovacuum_enabled = false)`,
		`insert into commands (command_id, fingerprint, result) select 'stored-' || g, 'fp', '{}' from generate_series(1, 1000) g`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	appendBatch := func(q interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}, round int) {
		t.Helper()
		var batch []map[string]any
		for i := range 25 {
			cmd := fmt.Sprintf("new-%d-%d", round, i)
			if i%5 == 0 {
				cmd = fmt.Sprintf("stored-%d", 1+i) // a retry: answered from the stored command
			}
			batch = append(batch, map[string]any{"cmd": cmd, "fp": "fp", "streams": []map[string]any{{"id": fmt.Sprintf("order-%d", i), "exp": -1,
				"events": []map[string]any{{"id": fmt.Sprintf("00000000-0000-7000-8%03d-%012d", round, i), "type": "E", "sv": 1, "data": map[string]int{}}}}}})
		}
		raw, _ := json.Marshal(batch)
		var answer []byte
		if err := q.QueryRow(ctx, "select orderflow_append($1::jsonb)", raw).Scan(&answer); err != nil {
			t.Fatal(err)
		}
		var results []struct {
			S string `json:"s"`
		}
		if err := json.Unmarshal(answer, &results); err != nil || len(results) != len(batch) {
			t.Fatalf("answer %s: %v", answer, err)
		}
		for i, r := range results {
			if want := map[bool]string{true: "dup", false: "ok"}[i%5 == 0]; r.S != want {
				t.Fatalf("append %d answered %q, want %q: %s", i, r.S, want, answer)
			}
		}
	}
	appendBatch(conn, 1) // plans the function's statements
	if _, err := conn.Exec(ctx, `insert into commands (command_id, fingerprint, result)
		select 'stored-' || g, 'fp', '{}' from generate_series(1001, 20000) g`); err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	appendBatch(tx, 2)
	// This transaction's own reads of commands, and of events (the
	// streams' current versions, planned the same way).
	for _, table := range []string{"commands", "events"} {
		var seq, idx int64
		if err := tx.QueryRow(ctx, `select seq_scan, coalesce(idx_scan, 0) from pg_stat_xact_user_tables where relname = $1`, table).Scan(&seq, &idx); err != nil {
			t.Fatal(err)
		}
		if seq != 0 || idx == 0 {
			t.Fatalf("%s read by %d sequential and %d index scans, want by the index only", table, seq, idx)
		}
	}
}
