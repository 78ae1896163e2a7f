package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Targets the relay section reports against.
const (
	targetCatchUp      = 30_000 // events per second
	targetCatchUpRatio = 0.7    // of the raw producer at the same batch size
	targetLatencyP99   = 20 * time.Millisecond
	latencyRate        = 2000 // events per second offered in the latency point
)

// relayCatchUp is one batch size of the catch-up part: the raw producer
// beside the relay, on the same backlog.
type relayCatchUp struct {
	Raw, Relay catchUpRun
}

// relaySection measures the Kafka relay: how fast it drains a backlog of
// relayEvents events beside a raw kafka-go producer sending the same
// messages, at -relay-batch and each size of -relay-sweep, and the latency
// from append to a consumer at a constant 2,000 events/s at -relay-batch.
func relaySection(ctx context.Context, log *slog.Logger, cfg config, m machine) (string, error) {
	var notes []string
	quiet := func(point string) error {
		ok, err := settle(ctx, m.Cores, settleLimit)
		if err == nil && !ok {
			notes = append(notes, fmt.Sprintf("the machine was still busy before %s; measured anyway", point))
			log.Warn("machine still busy; measuring anyway", "point", point)
		}
		return err
	}
	b, catchUps, backlogProblems, err := relayCatchUps(ctx, log, cfg, quiet)
	if err != nil {
		return "", err
	}
	if err := quiet("the latency point"); err != nil {
		return "", err
	}
	lat, err := measureRelayLatency(ctx, log, cfg, cfg.relayBatch)
	if err != nil {
		return "", fmt.Errorf("latency at %d/s: %w", latencyRate, err)
	}
	return renderRelay(cfg, m, b, backlogProblems, catchUps, lat, notes), nil
}

// relayCatchUps builds the backlog in a fresh database, then at each batch
// size runs the raw producer and the relay over it; it drops the database.
func relayCatchUps(ctx context.Context, log *slog.Logger, cfg config, quiet func(string) error) (b backlog, runs []relayCatchUp, problems []string, err error) {
	db, err := createDatabase(ctx, cfg.databaseURL, true)
	if err != nil {
		return b, nil, nil, err
	}
	defer func() { err = errors.Join(err, db.drop(ctx)) }()
	log.Info("relay backlog", "events", cfg.relayEvents, "streams", backlogStreams)
	b, problems, err = createBacklog(ctx, db.url, cfg.relayEvents)
	if err != nil {
		return b, nil, nil, err
	}
	log.Info("relay backlog done", "events", b.Events, "took", b.Took.Round(time.Millisecond), "last", b.Last.String())
	poolCfg, err := pgxpool.ParseConfig(db.url)
	if err != nil {
		return b, nil, nil, err
	}
	timer := &sqlTimer{}
	poolCfg.ConnConfig.Tracer = timer
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return b, nil, nil, err
	}
	defer pool.Close()

	for _, batch := range cfg.catchUpBatches() {
		var run relayCatchUp
		if err := quiet(fmt.Sprintf("the raw producer at batch %d", batch)); err != nil {
			return b, nil, nil, err
		}
		run.Raw, err = measureRawProducer(ctx, log, cfg.kafkaBrokers, b.Events, batch, profilePath(cfg, "raw", batch))
		if err != nil {
			return b, nil, nil, fmt.Errorf("raw producer, batch %d: %w", batch, err)
		}
		log.Info("raw producer done", "batch", batch, "msgs_per_s", int(run.Raw.Rate()), "took", run.Raw.Took.Round(time.Millisecond),
			"cpu_bench", run.Raw.CPU.Bench, "cpu_kafka", run.Raw.CPU.Kafka, "cpu_pg", run.Raw.CPU.Postgres, "cpu_machine", run.Raw.CPU.Machine, "gcs", run.Raw.GCs)
		if err := quiet(fmt.Sprintf("the relay catch-up at batch %d", batch)); err != nil {
			return b, nil, nil, err
		}
		run.Relay, err = measureCatchUp(ctx, log, pool, timer, cfg.kafkaBrokers, b, batch, profilePath(cfg, "relay", batch))
		if err != nil {
			return b, nil, nil, fmt.Errorf("relay catch-up, batch %d: %w", batch, err)
		}
		p := run.Relay.Phases
		log.Info("relay catch-up done", "batch", batch, "events_per_s", int(run.Relay.Rate()), "took", run.Relay.Took.Round(time.Millisecond),
			"ratio", ratio(run.Relay.Rate(), run.Raw.Rate()), "read", sum(p.Read).Round(time.Millisecond), "write", sum(p.Write).Round(time.Millisecond),
			"checkpoint", sum(p.Checkpoint).Round(time.Millisecond), "handover", sum(p.Handover).Round(time.Millisecond), "duplicates", run.Relay.Duplicates,
			"cpu_bench", run.Relay.CPU.Bench, "cpu_kafka", run.Relay.CPU.Kafka, "cpu_pg", run.Relay.CPU.Postgres, "cpu_machine", run.Relay.CPU.Machine, "gcs", run.Relay.GCs)
		runs = append(runs, run)
	}
	return b, runs, problems, nil
}

// profilePath names the CPU profile of one run, "" when not asked for.
func profilePath(cfg config, what string, batch int) string {
	if cfg.relayProfile == "" {
		return ""
	}
	return fmt.Sprintf("%s-%s-%d.pprof", cfg.relayProfile, what, batch)
}

// parseBatches parses -relay-sweep, comma-separated integers (none when
// empty); validate checks their range.
func parseBatches(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("-relay-sweep=%q: want comma-separated integers", s)
		}
		out = append(out, n)
	}
	return out, nil
}
