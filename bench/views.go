package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/projector"
)

// viewsSection measures issue 4's figures: the rebuild rate of a projection
// beside the raw rate of reading the same events through the same read path,
// and the command-to-view lag at 2,000 commands/s.
func viewsSection(ctx context.Context, log *slog.Logger, cfg config, m machine) (body string, err error) {
	var b strings.Builder
	fmt.Fprintf(&b, "## Projections: rebuild and freshness\n\n%s\n", m.markdown())

	backlog, err := createDatabase(ctx, cfg.databaseURL, true)
	if err != nil {
		return "", err
	}
	defer func() { err = errors.Join(err, backlog.drop(context.WithoutCancel(ctx))) }()
	rows, problems, err := rebuildRates(ctx, log, cfg, backlog)
	if err != nil {
		return "", err
	}
	t := table{header: []string{"What", "Events", "Seconds", "Events/s", "Ratio to raw read", "Check"}}
	raw := rows[0]
	for _, r := range rows {
		t.add(r.what, fmt.Sprint(r.events), fmt.Sprintf("%.1f", r.seconds), perSecond(float64(r.events)/r.seconds),
			ratio(float64(r.events)/r.seconds, float64(raw.events)/raw.seconds), validity(r.problems))
	}
	b.WriteString("### Rebuild from the event store\n\n" + t.String() + "\n")
	b.WriteString(problemList("rebuild", problems))
	b.WriteString(`- Backlog: order events made with SQL in transactions of 100,000 (4 of 5
  orders placed once, 1 of 5 also cancelled), so they read back in the
  log's safe order like real appends.
- Raw read: ` + "`eventstore.Store.ReadAll`" + ` in chunks of 10,000 from the start
  to the end: the read path a rebuild uses, decoding nothing.
- Rebuild: the time ` + "`orderflow projections rebuild NAME`" + ` takes, from
  starting the process to its exit: the replay into shadow tables, the
  catch-up and the atomic swap; events/s counts every event of the log
  read. Check: the rebuilt view holds one row per order and the right statuses.

`)

	fresh, err := createDatabase(ctx, cfg.databaseURL, false)
	if err != nil {
		return "", err
	}
	defer func() { err = errors.Join(err, fresh.drop(context.WithoutCancel(ctx))) }()
	lag := table{header: []string{"Views", "Offered", "Achieved", "Orders", "p50 (interpolated)", "p99 (interpolated)", "Within 50 ms",
		"The other views: p99", "Of which the relay: p50 / p99", "Of which delivery: p50 / p99", "The projector's transactions: p50 / p99", "Check"}}
	var lagProblems, notes []string
	// Half and a tenth of the rate on empty views show how the latency
	// falls with the load: at 2,000 commands/s the load generator,
	// orderflow, PostgreSQL and the broker keep both cores busy.
	half, err := createDatabase(ctx, cfg.databaseURL, false)
	if err != nil {
		return "", err
	}
	defer func() { err = errors.Join(err, half.drop(context.WithoutCancel(ctx))) }()
	tenth, err := createDatabase(ctx, cfg.databaseURL, false)
	if err != nil {
		return "", err
	}
	defer func() { err = errors.Join(err, tenth.drop(context.WithoutCancel(ctx))) }()
	turns, err := createDatabase(ctx, cfg.databaseURL, false)
	if err != nil {
		return "", err
	}
	defer func() { err = errors.Join(err, turns.drop(context.WithoutCancel(ctx))) }()
	for _, point := range []struct {
		name string
		db   *database
		rate int
		env  []string
	}{
		{"empty", fresh, 2000, nil}, {fmt.Sprintf("%d orders, after the rebuilds", cfg.relayEvents*4/5), backlog, 2000, nil},
		{"empty", half, 1000, nil}, {"empty", tenth, 200, nil},
		{"empty, taking turns (" + takingTurns + ")", turns, 2000, []string{takingTurns}},
	} {
		// The rebuilds leave PostgreSQL writing back and vacuuming.
		quiet, err := settle(ctx, m.Cores, settleLimit)
		if err != nil {
			return "", err
		}
		row, probs, err := freshness(ctx, log, cfg, point.db, point.rate, point.env...)
		if !quiet {
			notes = append(notes, fmt.Sprintf("- **Note:** views %s: the machine was still busy before the load; measured anyway\n", point.name))
		}
		if err != nil {
			return "", fmt.Errorf("freshness, views %s: %w", point.name, err)
		}
		lag.add(append([]string{point.name}, append(row, validity(probs))...)...)
		lagProblems = append(lagProblems, probs...)
	}
	b.WriteString("### Command to view at 2,000 commands/s (and 1,000 and 200)\n\n" + lag.String() + freshnessNotes + strings.Join(notes, "") + "\n")
	b.WriteString(problemList("freshness", lagProblems))
	return b.String(), nil
}

type rateRow struct {
	what     string
	events   int64
	seconds  float64
	problems []string
}

// rebuildRates fills db (migrated, empty) with the backlog and measures the
// raw read of it and the rebuilds of two projections.
func rebuildRates(ctx context.Context, log *slog.Logger, cfg config, db *database) (rows []rateRow, problems []string, err error) {
	n := cfg.relayEvents
	placed := n * 4 / 5
	log.Info("views: making the backlog", "events", n)
	for from := 0; from < placed; from += 100_000 {
		to := min(from+100_000, placed)
		if err := exec1(ctx, db.url, fmt.Sprintf(`
			insert into events (event_id, stream_id, version, type, schema_version, data, metadata)
			select gen_random_uuid(), 'order-' || u::text, 1, 'OrderPlaced', 1,
				jsonb_build_object('order_id', u::text, 'customer_id', 'c-' || (g %% 1000),
					'lines', jsonb_build_array(jsonb_build_object('sku', 'SKU-' || (g %% 50), 'quantity', 1 + g %% 3, 'unit_price_cents', 100 + g %% 900)),
					'total_cents', (1 + g %% 3) * (100 + g %% 900),
					'placed_at', to_char(now() - (g %% 30) * interval '1 day', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
				'{"correlation_id":"bench"}'
			from (select g, md5('order' || g)::uuid as u from generate_series(%d, %d) g) s`, from+1, to)); err != nil {
			return nil, nil, err
		}
	}
	if err := exec1(ctx, db.url, fmt.Sprintf(`
		insert into events (event_id, stream_id, version, type, schema_version, data, metadata)
		select gen_random_uuid(), 'order-' || u::text, 2, 'OrderCancelled', 1,
			jsonb_build_object('order_id', u::text, 'reason', 'bench', 'cancelled_at', '2026-11-25T00:00:00Z'), '{}'
		from (select md5('order' || g)::uuid as u from generate_series(1, %d) g) s`, n-placed)); err != nil {
		return nil, nil, err
	}
	pool, err := pgxpool.New(ctx, db.url)
	if err != nil {
		return nil, nil, err
	}
	defer pool.Close()
	store, err := eventstore.New(pool, eventstore.Config{})
	if err != nil {
		return nil, nil, err
	}
	defer store.Close()
	if err := exec1(ctx, db.url, "vacuum analyze events"); err != nil {
		return nil, nil, err
	}

	// Raw read: the same query and chunking the rebuild uses.
	start := time.Now()
	var read int64
	var pos eventstore.Position
	for {
		events, err := store.ReadAll(ctx, pos, projector.RebuildChunk)
		if err != nil {
			return nil, nil, err
		}
		if len(events) == 0 {
			break
		}
		read += int64(len(events))
		pos = events[len(events)-1].Position
	}
	rows = append(rows, rateRow{what: "raw read of the log (baseline)", events: read, seconds: time.Since(start).Seconds()})
	if read != int64(n) {
		problems = append(problems, fmt.Sprintf("raw read saw %d of %d events", read, n))
	}

	dir, bin, err := buildInTempDir(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	for _, p := range []projector.Projection{projector.OrderDetails{}, projector.DailySales{}} {
		log.Info("views: rebuilding", "projection", p.Name(), "events", n)
		cmd := exec.CommandContext(ctx, bin, "projections", "rebuild", p.Name())
		cmd.Env = append(os.Environ(), "DATABASE_URL="+db.url)
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, nil, fmt.Errorf("orderflow projections rebuild %s: %w\n%s", p.Name(), err, out[max(0, len(out)-2000):])
		}
		row := rateRow{what: "rebuild " + p.Name(), events: int64(n), seconds: time.Since(start).Seconds()}
		if p.Name() == "order_details" {
			var orders, cancelled int
			if err := queryRow(ctx, db.url, `select count(*), count(*) filter (where status = 'cancelled') from order_details`, &orders, &cancelled); err != nil {
				return nil, nil, err
			}
			if orders != placed || cancelled != n-placed {
				row.problems = append(row.problems, fmt.Sprintf("view has %d orders, %d cancelled; want %d, %d", orders, cancelled, placed, n-placed))
			}
		}
		problems = append(problems, row.problems...)
		rows = append(rows, row)
	}
	return rows, problems, nil
}

// freshness drives orderflow (command, relay and projector roles) on db at
// 2,000 orders/s and reads the histograms it exports: the figures of one
// row of the freshness table, and what makes them invalid. On a database
// with a log already, the relay starts at its end (as if it had published
// the history long ago), and the projections never built backfill first.
func freshness(ctx context.Context, log *slog.Logger, cfg config, db *database, rate int, env ...string) ([]string, []string, error) {
	dir, err := os.MkdirTemp("", "orderflow-bench-views")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	bin, err := buildOrderflow(ctx, dir)
	if err != nil {
		return nil, nil, err
	}
	var before int64 // orders in the view before the load
	if err := queryRow(ctx, db.url, `select (select count(*) from pg_tables where tablename = 'relay_checkpoints')`, &before); err != nil {
		return nil, nil, err
	}
	if before > 0 { // migrated: it may hold a log and views
		if err := exec1(ctx, db.url, `insert into relay_checkpoints (name, tx_id, seq)
			select 'kafka', tx_id, seq from events order by tx_id desc, seq desc limit 1
			on conflict (name) do update set tx_id = excluded.tx_id, seq = excluded.seq`); err != nil {
			return nil, nil, err
		}
		if err := queryRow(ctx, db.url, `select count(*) from order_details`, &before); err != nil {
			return nil, nil, err
		}
	}
	c, err := startOrderflow(ctx, log, bin, db.url, dir,
		append(append(db.kafkaEnv(cfg.kafkaBrokers), "ORDERFLOW_ROLES=command,relay,projector"), env...)...)
	if err != nil {
		return nil, nil, err
	}
	client := newLoadClient(256)
	// Steady state, not start-up: the load starts once a probe order is in
	// the view (the projections have backfilled and their consumer groups
	// have joined).
	if err := placeOrder(ctx, client, c.url, 0); err != nil {
		return nil, nil, errors.Join(fmt.Errorf("probe order: %w", err), c.stop())
	}
	for ready := time.Now().Add(5 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		var n int64
		if err := queryRow(ctx, db.url, `select count(*) from order_details`, &n); err == nil && n > before {
			break
		}
		if time.Now().After(ready) {
			return nil, nil, errors.Join(errors.New("the probe order did not reach the view within five minutes"), c.stop())
		}
	}
	run, err := openLoop(ctx, client, "orderflow", c.url, rate, cfg.warmup, cfg.duration)
	if err != nil {
		return nil, nil, errors.Join(err, c.stop())
	}
	var problems []string
	problems = append(problems, run.Errors.problems()...)
	// Wait for the view to hold every order placed (and the probe), then
	// read the histogram.
	total := before + run.OK + int64(float64(rate)*cfg.warmup.Seconds()) + 1
	deadline := time.Now().Add(2 * time.Minute)
	var inView int64
	for time.Now().Before(deadline) {
		if err := queryRow(ctx, db.url, `select count(*) from order_details`, &inView); err == nil && inView >= total {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if inView < total {
		problems = append(problems, fmt.Sprintf("only %d of %d orders reached the view", inView-before, total-before))
	}
	hist, err := scrapeHistogram(ctx, c.url, `orderflow_projection_freshness_seconds_bucket{projection="order_details"`)
	relay, relayErr := scrapeHistogram(ctx, c.url, `orderflow_relay_delay_seconds_bucket{`)
	delivery, deliveryErr := scrapeHistogram(ctx, c.url, `orderflow_projection_delivery_seconds_bucket{projection="order_details"`)
	apply, applyErr := scrapeHistogram(ctx, c.url, `orderflow_projection_batch_seconds_bucket{projection="order_details"`)
	var others []string // the other views the orders reach, by their p99
	for _, p := range projector.All() {
		if p.Name() == "order_details" || !projector.Wants(p, orderflow.OrderStreamPrefix+"x") {
			continue
		}
		h, hErr := scrapeHistogram(ctx, c.url, `orderflow_projection_freshness_seconds_bucket{projection="`+p.Name()+`"`)
		err = errors.Join(err, hErr)
		others = append(others, p.Name()+" "+ms(h.quantile(0.99)))
	}
	if stopErr := c.stop(); stopErr != nil {
		problems = append(problems, stopErr.Error())
	}
	if err = errors.Join(err, relayErr, deliveryErr, applyErr); err != nil {
		return nil, nil, fmt.Errorf("%w\norderflow's log:\n%s", err, c.logTail())
	}
	return []string{fmt.Sprintf("%d/s", rate), perSecond(run.Achieved), fmt.Sprint(hist.count), ms(hist.quantile(0.5)), ms(hist.quantile(0.99)),
		fmt.Sprintf("%.2f%%", 100*hist.fractionBelow(0.05)), strings.Join(others, ", "), ms(relay.quantile(0.5)) + " / " + ms(relay.quantile(0.99)),
		ms(delivery.quantile(0.5)) + " / " + ms(delivery.quantile(0.99)), ms(apply.quantile(0.5)) + " / " + ms(apply.quantile(0.99))}, problems, nil
}

const freshnessNotes = `
- Views: "empty" runs on a fresh database; the second row on the database of
  the rebuilds above, whose log and views hold the backlog's orders: the
  relay starts at the end of its log (as if it had published the history
  long ago), and the projections the rebuilds did not build backfill when
  orderflow starts, before the load. The next two rows offer half and a
  tenth of the load, each on a fresh database: at 2,000 commands/s the load
  generator, orderflow, PostgreSQL and the broker keep both cores busy, and
  the latency is mostly waiting for a core. The last row runs with the
  setting that leaves the saga more of a shared machine (see the saga
  section): the projections take turns, one view transaction at a time, and
  this is what the views pay for it; delivery grows then too, as a
  projection's consumer holds back new messages while those it has out
  wait for a turn.
- Lag: from an order's append (the event's recorded time) to the commit of
  its order_details update (the other views: of theirs), as the projector's own histogram
  ` + "`orderflow_projection_freshness_seconds`" + ` records it (buckets 5, 10, 25, 50,
  100 ms…; quantiles are interpolated inside a bucket, so read them as
  bounds; "within 50 ms" is exact, 50 ms being a bucket edge). It includes
  the relay, Kafka and the consumer. The relay's share is its own histogram
  ` + "`orderflow_relay_delay_seconds`" + `: from the append to the broker's
  acknowledgement (warm-up included). Delivery:
  ` + "`orderflow_projection_delivery_seconds`" + ` for order_details, from the append to the
  message reaching the projection's handler (the relay, Kafka and the
  consumer); the rest of the lag is the apply. The projector's transactions:
  ` + "`orderflow_projection_batch_seconds`" + ` for order_details, each apply
  transaction (the events it handles together) to its commit; an event
  waits for the one under way, then rides the next.
- Load: the same open-loop generator as the HTTP section, one process running
  the command, relay and projector roles; it starts once a probe order is in
  the view, so the figures are steady state, not consumer-group start-up.
`

// histogram is a scraped Prometheus histogram.
type histogram struct {
	bounds []float64 // upper bounds, ascending, +Inf last
	counts []float64 // cumulative
	count  int64
}

func scrapeHistogram(ctx context.Context, base, prefix string) (histogram, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return histogram{}, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return histogram{}, err
	}
	defer res.Body.Close()
	var raw strings.Builder
	if _, err := fmt.Fprint(&raw, ""); err != nil {
		return histogram{}, err
	}
	buf := make([]byte, 1<<20)
	for {
		n, err := res.Body.Read(buf)
		raw.Write(buf[:n])
		if err != nil {
			break
		}
	}
	var h histogram
	for _, line := range strings.Split(raw.String(), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		var le string
		if i := strings.Index(line, `le="`); i >= 0 {
			le = line[i+4:]
			le = le[:strings.IndexByte(le, '"')]
		}
		var bound, v float64
		if le == "+Inf" {
			bound = 1e18
		} else if _, err := fmt.Sscan(le, &bound); err != nil {
			continue
		}
		fields := strings.Fields(line)
		if _, err := fmt.Sscan(fields[len(fields)-1], &v); err != nil {
			continue
		}
		h.bounds, h.counts = append(h.bounds, bound), append(h.counts, v)
	}
	if len(h.counts) == 0 {
		return h, fmt.Errorf("no histogram %s in /metrics", prefix)
	}
	h.count = int64(h.counts[len(h.counts)-1])
	return h, nil
}

// quantile interpolates like PromQL's histogram_quantile.
func (h histogram) quantile(q float64) time.Duration {
	if h.count == 0 {
		return 0
	}
	rank := q * float64(h.count)
	prevBound, prevCount := 0.0, 0.0
	for i, c := range h.counts {
		if c >= rank {
			if h.bounds[i] >= 1e18 {
				return time.Duration(prevBound * float64(time.Second))
			}
			frac := 0.0
			if c > prevCount {
				frac = (rank - prevCount) / (c - prevCount)
			}
			return time.Duration((prevBound + frac*(h.bounds[i]-prevBound)) * float64(time.Second))
		}
		prevBound, prevCount = h.bounds[i], c
	}
	return time.Duration(prevBound * float64(time.Second))
}

// fractionBelow is the share of observations at or under bound (a bucket edge).
func (h histogram) fractionBelow(bound float64) float64 {
	for i, b := range h.bounds {
		if b == bound && h.count > 0 {
			return h.counts[i] / float64(h.count)
		}
	}
	return 0
}
