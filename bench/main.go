// Command bench measures orderflow and writes the figures to BENCHMARKS.md.
//
// Every figure is printed beside a baseline measured in the same run on the
// same machine: the event store against pgbench single-row inserts on the
// same PostgreSQL server, the HTTP API against a trivial net/http handler
// driven by the same load generator, the Kafka relay against a raw kafka-go
// producer sending the same messages to the same broker. Each section of the report is delimited
// by HTML comments (<!-- bench:NAME --> ... <!-- /bench:NAME -->) and only the
// sections that ran are rewritten, so the others survive.
//
// Usage:
//
//	go run ./bench [-only=eventstore|http|relay|views|saga|gateway|all] [-duration=10s] [-warmup=1s] [-out=BENCHMARKS.md]
//	               [-relay-batch=1000] [-relay-sweep=500,1000,2000,5000] [-relay-events=1000000]
//	               [-relay-cpuprofile=PREFIX] [-kafka-brokers=host:port,...]
//
// It needs DATABASE_URL (or -database-url) pointing at a PostgreSQL server on
// which the role may CREATE DATABASE; every measurement gets a fresh database
// that is dropped afterwards. The relay section also needs KAFKA_BROKERS (or
// -kafka-brokers); it creates topics under fresh prefixes and deletes them.
// Durability settings are read, never changed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == bareProxyCommand {
		if err := runBareProxy(os.Args[2], os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(context.Background(), os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// config is what the flags say.
type config struct {
	databaseURL string
	out         string
	only        string
	duration    time.Duration
	warmup      time.Duration

	kafkaBrokers []string
	// relayBatch is the relay's batch size in the latency point and the
	// catch-up figure the section leads with.
	relayBatch int
	// relaySweep are the other batch sizes the catch-up part also runs.
	relaySweep   []int
	relayEvents  int    // backlog of the catch-up part
	relayProfile string // CPU profiles go to <prefix>-<run>-<batch>.pprof
}

// relayDefaultBatch is -relay-batch's default, the best batch size measured
// (BENCHMARKS.md, relay section): 5000 drains a backlog fastest, but its
// latency at 2,000 events/s was about half as high again as at 500 or 1000
// (measured with kafka-go's Writer, which allocates room for a whole batch
// per partition and write), and 1000 already drains well above the target.
const relayDefaultBatch = 1000

// catchUpBatches returns the catch-up part's batch sizes, ascending, with
// relayBatch among them.
func (c config) catchUpBatches() []int {
	out := slices.Clone(c.relaySweep)
	if !slices.Contains(out, c.relayBatch) {
		out = append(out, c.relayBatch)
	}
	slices.Sort(out)
	return out
}

// validate reports every problem with c at once.
func (c config) validate() error {
	var errs []error
	if c.databaseURL == "" {
		errs = append(errs, errors.New("no database: set DATABASE_URL or -database-url"))
	}
	if c.out == "" {
		errs = append(errs, errors.New("-out is empty"))
	}
	switch c.only {
	case "eventstore", "http", "relay", "views", "saga", "gateway", "all":
	default:
		errs = append(errs, fmt.Errorf("-only=%q: want eventstore, http, relay, views, saga, gateway or all", c.only))
	}
	if c.only != "eventstore" && len(c.kafkaBrokers) == 0 {
		errs = append(errs, errors.New("no Kafka broker for the relay, views, saga, gateway and http sections: set KAFKA_BROKERS or -kafka-brokers"))
	}
	if c.relayBatch < 1 || c.relayBatch > 100_000 {
		errs = append(errs, fmt.Errorf("-relay-batch=%d: want 1 to 100000", c.relayBatch))
	}
	for i, n := range c.relaySweep {
		if n < 1 || n > 100_000 || slices.Contains(c.relaySweep[:i], n) {
			errs = append(errs, fmt.Errorf("-relay-sweep: %d: want distinct sizes from 1 to 100000", n))
		}
	}
	if c.relayEvents < 1000 {
		errs = append(errs, fmt.Errorf("-relay-events=%d: want at least 1000", c.relayEvents))
	}
	// pgbench -T takes whole seconds; the baseline must run exactly as long.
	if c.duration < time.Second || c.duration%time.Second != 0 {
		errs = append(errs, fmt.Errorf("-duration=%s: want whole seconds, at least 1s", c.duration))
	}
	if c.warmup < 0 || c.warmup%time.Second != 0 {
		errs = append(errs, fmt.Errorf("-warmup=%s: want whole seconds", c.warmup))
	}
	return errors.Join(errs...)
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.databaseURL, "database-url", os.Getenv("DATABASE_URL"), "PostgreSQL server to measure (default $DATABASE_URL)")
	fs.StringVar(&c.out, "out", "BENCHMARKS.md", "report to rewrite (only the sections that ran)")
	fs.StringVar(&c.only, "only", "all", "sections to run: eventstore, http, relay, views, saga, gateway or all")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured time per point (whole seconds)")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "unmeasured warm-up before each point (whole seconds)")
	brokers := fs.String("kafka-brokers", os.Getenv("KAFKA_BROKERS"), "comma-separated Kafka brokers for the relay section (default $KAFKA_BROKERS)")
	fs.IntVar(&c.relayBatch, "relay-batch", relayDefaultBatch, "relay batch size of the latency point and the leading catch-up figure")
	sweep := fs.String("relay-sweep", "500,1000,2000,5000", "further relay batch sizes the catch-up part runs, comma-separated (empty: none)")
	fs.IntVar(&c.relayEvents, "relay-events", 1_000_000, "events in the relay catch-up backlog")
	fs.StringVar(&c.relayProfile, "relay-cpuprofile", "", "write CPU profiles of the relay catch-up runs to PREFIX-<relay|raw>-<batch>.pprof")
	err := fs.Parse(args)
	if err != nil {
		return config{}, err
	}
	for b := range strings.SplitSeq(*brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.kafkaBrokers = append(c.kafkaBrokers, b)
		}
	}
	if c.relaySweep, err = parseBatches(*sweep); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return c, c.validate()
}

// section is one part of the report: it measures and returns its markdown.
type section struct {
	name string
	run  func(ctx context.Context, log *slog.Logger, cfg config, m machine) (string, error)
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, nil))

	// The machine is probed before each section: its date, background
	// load and speed are the section's.
	probe := func() (machine, error) {
		m, err := probeMachine(ctx, cfg.databaseURL)
		if err != nil {
			return machine{}, err
		}
		log.Info("machine", "cpu", m.CPUModel, "cores", m.Cores, "postgres", m.PGVersion,
			"fsync", m.Fsync, "synchronous_commit", m.SynchronousCommit, "wal_sync_method", m.WALSyncMethod,
			"sha256_mb_per_s", int(m.SHA256MBps), "commits_per_s", int(m.CommitsPerSec))
		if m.Fsync != "on" || m.SynchronousCommit == "off" {
			log.Warn("durability is not fully on; the figures are not comparable to production")
		}
		return m, nil
	}
	sections := []section{
		{name: "eventstore", run: eventstoreSection},
		{name: "http", run: httpSection},
		{name: "relay", run: relaySection},
		{name: "views", run: viewsSection},
		{name: "saga", run: sagaSection},
		{name: "gateway", run: gatewaySection},
	}
	for _, s := range sections {
		if cfg.only != "all" && cfg.only != s.name {
			continue
		}
		m, err := probe()
		if err != nil {
			return err
		}
		log.Info("section start", "section", s.name)
		body, err := s.run(ctx, log, cfg, m)
		if err != nil {
			return fmt.Errorf("section %s: %w", s.name, err)
		}
		// Printed first, so a report that cannot be written loses nothing;
		// written as soon as it is done, so a later section's failure does
		// not lose it either.
		fmt.Fprint(os.Stdout, body)
		if err := writeSection(cfg.out, s.name, body); err != nil {
			return err
		}
		log.Info("section written", "section", s.name, "file", cfg.out)
	}
	return nil
}
