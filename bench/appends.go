package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/eventstore"
)

// writerCounts are the concurrencies of the eventstore section, for both
// the appends and the pgbench baseline.
var writerCounts = []int{1, 8, 32}

// eventstoreSection measures appends per second against pgbench's
// single-row insert TPS at the same concurrency. The points are interleaved
// (baseline, own streams, hot stream at each concurrency) so slow drift on
// the server affects baseline and figure alike.
func eventstoreSection(ctx context.Context, log *slog.Logger, cfg config, m machine) (string, error) {
	baselines := make(map[int]pgbenchRun)
	var (
		runs  []appendRun
		notes []string
	)
	// quiet waits for other work on the machine to end before a point.
	quiet := func(point string) error {
		ok, err := settle(ctx, m.Cores, settleLimit)
		if err == nil && !ok {
			notes = append(notes, fmt.Sprintf("the machine was still busy before %s; measured anyway", point))
			log.Warn("machine still busy; measuring anyway", "point", point)
		}
		return err
	}
	for _, n := range writerCounts {
		if err := quiet(fmt.Sprintf("pgbench at %d clients", n)); err != nil {
			return "", err
		}
		b, err := measurePgbench(ctx, log, cfg.databaseURL, n, cfg.warmup, cfg.duration)
		if err != nil {
			return "", fmt.Errorf("pgbench baseline at %d clients: %w", n, err)
		}
		baselines[n] = b
		for _, sc := range []scenario{ownStreams, hotStream} {
			if err := quiet(fmt.Sprintf("%s, %d writers", sc, n)); err != nil {
				return "", err
			}
			r, err := measureAppends(ctx, log, cfg.databaseURL, sc, n, cfg.warmup, cfg.duration)
			if err != nil {
				return "", fmt.Errorf("appends, %s, %d writers: %w", sc, n, err)
			}
			log.Info("appends done", "scenario", sc, "writers", n, "appends_per_s", int(r.Rate()),
				"pgbench_tps", int(b.TPS), "p50", r.Latency.pct(0.5), "p99", r.Latency.pct(0.99), "problems", len(r.Problems))
			runs = append(runs, r)
		}
	}
	return renderEventstore(cfg, m, baselines, runs, notes), nil
}

// renderEventstore writes the section's markdown.
func renderEventstore(cfg config, m machine, baselines map[int]pgbenchRun, runs []appendRun, notes []string) string {
	var b strings.Builder
	b.WriteString("## Event store appends\n\n")
	b.WriteString(m.markdown())
	fmt.Fprintf(&b, "- Each point: a fresh database, %s warm-up, %s measured\n\n", cfg.warmup, cfg.duration)

	t := table{header: []string{"Scenario", "Writers", "Appends/s", "pgbench TPS", "Ratio",
		"p50", "p99", "pgbench avg latency", "Appends/txn", "CPU/append", "CPU/pgbench txn", "Check"}}
	var problems strings.Builder
	for _, r := range runs {
		base := baselines[r.Writers]
		all := append(slices.Clone(r.Problems), base.Problems...)
		perTxn := "–"
		if r.Txns > 0 {
			perTxn = fmt.Sprintf("%.1f", float64(r.Total)/float64(r.Txns))
		}
		t.add(r.Scenario.String(), fmt.Sprint(r.Writers), perSecond(r.Rate()), perSecond(base.TPS),
			ratio(r.Rate(), base.TPS), ms(r.Latency.pct(0.5)), ms(r.Latency.pct(0.99)),
			ms(base.LatencyAvg), perTxn, us(r.CPUPerAppend()), us(base.CPUPerTxn()), validity(all))
		problems.WriteString(problemList(fmt.Sprintf("%s, %d writers", r.Scenario, r.Writers), r.Problems))
	}
	for _, n := range writerCounts {
		problems.WriteString(problemList(fmt.Sprintf("pgbench, %d clients", n), baselines[n].Problems))
	}
	b.WriteString(t.String())
	if problems.Len() > 0 {
		b.WriteString("\n" + problems.String())
	}
	for _, n := range notes {
		fmt.Fprintf(&b, "\n- **Note:** %s\n", n)
	}
	b.WriteString(`
- Appends/s: successful appends completed in the measured window, through
  ` + "`eventstore.Store.Append`" + ` (default Config, pgxpool MaxConns 40), one
  event of type Bench with ~150 bytes of JSON per append. "Own stream": each
  writer appends to its own stream expecting exactly its last version; "one hot
  stream": all writers append to one stream with Any.
- pgbench TPS: ` + "`pgbench -n -c N -j min(2,N) -T <duration> -M prepared`" + ` with one
  single-row insert of the same JSON into a table with a bigserial key and a
  jsonb column per transaction, on a fresh database of the same server.
- p50/p99: latency of individual appends, exact percentiles of every
  measured append. Appends/txn: appends per append transaction over the whole
  run (the store batches concurrent appends into one transaction).
- CPU/append, CPU/pgbench txn: busy CPU time of the whole machine (client
  and server, from /proc/stat) over the measured window, per operation. When
  the cores are saturated, throughput is about cores ÷ this.
- Check: after each run the log must hold exactly the appends counted, each
  stream numbered 1..n without a gap (and, for own streams, each stream
  exactly its writer's count); pgbench's table must hold exactly the
  transactions it reported. A failed check marks the figure INVALID.
- Client (Go) and server (PostgreSQL) share the machine's cores. Before each
  point the machine must be quiet (under 15% busy for a second, waiting at
  most 10s); work that starts during a point still skews it, which shows as
  a higher CPU per operation.
`)
	return b.String()
}

// scenario is how the writers of an append run share streams.
type scenario int

const (
	// ownStreams: each writer appends to its own stream at exactly the
	// version it last wrote, so every append is checked.
	ownStreams scenario = iota
	// hotStream: every writer appends to the same stream with Any, so all
	// appends serialise on one stream's lock.
	hotStream
)

func (s scenario) String() string {
	if s == hotStream {
		return "one hot stream (Any)"
	}
	return "own stream (exact version)"
}

// appendRun is one measured point: writers appending for a duration.
type appendRun struct {
	Scenario scenario
	Writers  int
	Duration time.Duration
	// Appends is how many appends succeeded inside the measured window.
	Appends int64
	// Conflicts is how many appends were refused with ErrConcurrency
	// over the whole run; neither scenario can legitimately conflict.
	Conflicts int64
	Latency   latencies
	// Txns is how many append transactions wrote the run's events
	// (warm-up included); the store batches concurrent appends.
	Txns  int64
	Total int64 // successful appends over the whole run, warm-up included
	// CPU is the busy CPU time of the whole machine (client and server)
	// during the measured window.
	CPU      time.Duration
	Problems []string // why the figure is invalid; empty when valid
}

// Rate returns the successful appends per second of the measured window.
func (r appendRun) Rate() float64 { return float64(r.Appends) / r.Duration.Seconds() }

// CPUPerAppend returns the machine's CPU time per measured append.
func (r appendRun) CPUPerAppend() time.Duration { return perOp(r.CPU, r.Appends) }

// measureAppends runs writers concurrent writers against an eventstore.Store
// (default Config, pool of 40) on a fresh migrated database: warm-up, then
// duration measured. Any append error other than a conflict aborts it; a
// broken invariant afterwards marks the run invalid.
func measureAppends(ctx context.Context, log *slog.Logger, base string, sc scenario, writers int, warmup, duration time.Duration) (res appendRun, err error) {
	res = appendRun{Scenario: sc, Writers: writers, Duration: duration}
	db, err := createDatabase(ctx, base, true)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, db.drop(ctx)) }()
	poolCfg, err := pgxpool.ParseConfig(db.url)
	if err != nil {
		return res, err
	}
	poolCfg.MaxConns = 40
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return res, err
	}
	defer pool.Close()
	// The same knob as `orderflow serve`, so the figure is the server's.
	workers, _ := strconv.Atoi(os.Getenv("ORDERFLOW_APPEND_WORKERS"))
	store, err := eventstore.New(pool, eventstore.Config{AppendWorkers: workers})
	if err != nil {
		return res, err
	}
	defer store.Close() // before pool.Close: deferred calls run last-in first-out

	log.Info("appends", "scenario", sc, "writers", writers, "duration", duration)
	ws := make([]*writer, writers)
	for i := range ws {
		ws[i] = &writer{store: store, stream: "bench-hot", exact: sc == ownStreams}
		if sc == ownStreams {
			ws[i].stream = fmt.Sprintf("bench-%d", i)
		}
	}
	start := time.Now()
	warmEnd := start.Add(warmup)
	end := warmEnd.Add(duration)
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() {
			if err := w.run(runCtx, warmEnd, end); err != nil {
				cancel(err) // correctness first: one failure stops every writer
			}
		})
	}
	res.CPU = cpuBetween(runCtx, warmEnd, end)
	wg.Wait()
	if err := context.Cause(runCtx); err != nil {
		return res, err
	}

	var lat []time.Duration
	for _, w := range ws {
		res.Appends += w.measured
		res.Total += w.total
		res.Conflicts += w.conflicts
		res.Problems = append(res.Problems, w.problems...)
		lat = append(lat, w.latency...)
	}
	res.Latency = summarise(lat)
	if res.Conflicts > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d appends conflicted, which no append of this scenario can legitimately do", res.Conflicts))
	}
	problems, err := checkLog(ctx, pool, ws, res.Total)
	if err != nil {
		return res, fmt.Errorf("check invariant: %w", err)
	}
	res.Problems = append(res.Problems, problems...)
	if err := pool.QueryRow(ctx, "select count(distinct tx_id) from events").Scan(&res.Txns); err != nil {
		return res, fmt.Errorf("count append transactions: %w", err)
	}
	return res, nil
}

// writer appends one event at a time to one stream until the run ends. Its
// fields after the stream are its tallies, read once run has returned.
type writer struct {
	store  *eventstore.Store
	stream string
	exact  bool // expect exactly the version last written, else Any

	version   int64 // the stream's version after this writer's last append (exact only)
	total     int64 // successful appends, warm-up and overrun included
	measured  int64 // successful appends completed inside the measured window
	conflicts int64
	latency   []time.Duration // of the measured appends
	problems  []string
}

// run appends until end, counting appends completed between warmEnd and
// end. It returns the first error that is not a conflict.
func (w *writer) run(ctx context.Context, warmEnd, end time.Time) error {
	w.latency = make([]time.Duration, 0, 1<<14)
	events := []eventstore.EventData{{Type: "Bench", Data: json.RawMessage(eventData)}}
	for {
		began := time.Now()
		if !began.Before(end) {
			return nil
		}
		exp := eventstore.Any
		if w.exact {
			exp = eventstore.Exactly(w.version)
		}
		res, err := w.store.Append(ctx, eventstore.Append{Streams: []eventstore.StreamAppend{
			{StreamID: w.stream, Expected: exp, Events: events},
		}})
		done := time.Now()
		var conflict *eventstore.ConflictError
		switch {
		case errors.As(err, &conflict):
			w.conflicts++
			w.version = conflict.Actual
			continue
		case errors.Is(err, eventstore.ErrConcurrency):
			w.conflicts++
			continue
		case err != nil:
			return fmt.Errorf("append to %s: %w", w.stream, err)
		}
		v, ok := res.Version(w.stream)
		if w.exact && (!ok || v != w.version+1) {
			w.problems = append(w.problems, fmt.Sprintf("append to %s at version %d returned version %d", w.stream, w.version, v))
		}
		w.version = v
		w.total++
		if !done.Before(warmEnd) && done.Before(end) {
			w.measured++
			w.latency = append(w.latency, done.Sub(began))
		}
	}
}

// checkLog verifies, in one query, that the log holds exactly the appends the
// writers counted and that every stream's versions run 1..n without a gap;
// with own streams, also that each stream holds what its writer counted. It
// returns the violations found.
func checkLog(ctx context.Context, pool *pgxpool.Pool, ws []*writer, total int64) ([]string, error) {
	rows, err := pool.Query(ctx, `
		select stream_id, count(*), bool_and(version = rn)
		from (select stream_id, version,
		             row_number() over (partition by stream_id order by version) as rn
		      from events) e
		group by stream_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	counts := make(map[string]int64)
	var problems []string
	var events int64
	for rows.Next() {
		var (
			stream  string
			n       int64
			gapless bool
		)
		if err := rows.Scan(&stream, &n, &gapless); err != nil {
			return nil, err
		}
		if !gapless {
			problems = append(problems, fmt.Sprintf("stream %s: versions are not 1..%d", stream, n))
		}
		counts[stream] = n
		events += n
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if events != total {
		problems = append(problems, fmt.Sprintf("the log holds %d events, the writers counted %d successful appends", events, total))
	}
	for _, w := range ws {
		if w.exact && counts[w.stream] != w.total {
			problems = append(problems, fmt.Sprintf("stream %s holds %d events, its writer counted %d", w.stream, counts[w.stream], w.total))
		}
	}
	return problems, nil
}
