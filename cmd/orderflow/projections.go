package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/projector"
)

const projectionsUsage = `usage:
  orderflow projections status [--json]
  orderflow projections rebuild NAME... | --all

rebuild replays the event store into shadow tables, catches up with the live
log and swaps them in atomically; queries keep answering meanwhile. Interrupt
it (Ctrl-C) and run it again to resume. Projections: %s.
`

// projections runs `orderflow projections ...`.
func projections(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	names := make([]string, 0, len(projector.All()))
	for _, p := range projector.All() {
		names = append(names, p.Name())
	}
	usage := fmt.Sprintf(projectionsUsage, strings.Join(names, ", "))
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("projections: no subcommand")
	}
	fs := flag.NewFlagSet("projections "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbURL := databaseURLFlag(fs, getenv)
	asJSON := fs.Bool("json", false, "status: print JSON")
	all := fs.Bool("all", false, "rebuild: every projection")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if dbURL() == "" {
		return errors.New("projections: DATABASE_URL is required")
	}
	var targets []projector.Projection
	switch args[0] {
	case "status":
		if fs.NArg() > 0 {
			return fmt.Errorf("projections status: unexpected arguments %v", fs.Args())
		}
		targets = projector.All()
	case "rebuild":
		switch {
		case *all && fs.NArg() > 0:
			return errors.New("projections rebuild: name projections or give --all, not both")
		case *all:
			targets = projector.All()
		case fs.NArg() == 0:
			fmt.Fprint(stderr, usage)
			return errors.New("projections rebuild: name a projection or give --all")
		}
		for _, name := range fs.Args() {
			p, ok := projector.ByName(name)
			if !ok {
				return fmt.Errorf("projections rebuild: unknown projection %q (known: %s)", name, strings.Join(names, ", "))
			}
			targets = append(targets, p)
		}
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("projections: unknown subcommand %q", args[0])
	}

	if _, err := migrations.ApplyURL(ctx, dbURL()); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, dbURL())
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := eventstore.New(pool, eventstore.Config{})
	if err != nil {
		return err
	}
	defer store.Close()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	engine, err := projector.NewEngine(pool, store, projector.EngineConfig{}, logger)
	if err != nil {
		return err
	}

	if args[0] == "status" {
		var statuses []projector.Status
		for _, p := range targets {
			st, err := engine.Status(ctx, p)
			if err != nil {
				return err
			}
			statuses = append(statuses, st)
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(statuses)
		}
		printStatus(stdout, statuses)
		return nil
	}
	for _, p := range targets {
		bar := newProgressBar(stderr)
		if err := engine.Rebuild(ctx, p, store, bar.update); err != nil {
			bar.finish()
			if ctx.Err() != nil {
				return fmt.Errorf("rebuild of %s interrupted; run the same command again to resume", p.Name())
			}
			return err
		}
		bar.finish()
	}
	return nil
}

func printStatus(w io.Writer, statuses []projector.Status) {
	fmt.Fprintf(w, "%-20s %-20s %8s %10s %10s %7s  %s\n", "PROJECTION", "BUILT", "STREAMS", "LAG", "LAG(s)", "PARKED", "REBUILD")
	for _, st := range statuses {
		built := "never"
		if st.BuiltAt != nil {
			built = st.BuiltAt.UTC().Format(time.DateTime)
		}
		rebuild := "-"
		if st.Rebuild != nil {
			rebuild = fmt.Sprintf("interrupted at %s after %d events (run rebuild to resume)", st.Rebuild.Position, st.Rebuild.Applied)
		}
		fmt.Fprintf(w, "%-20s %-20s %8d %10d %10.1f %7d  %s\n", st.Projection, built, st.Streams, st.LagEvents, st.LagSeconds, len(st.Parked), rebuild)
		for _, k := range st.Parked {
			fmt.Fprintf(w, "  parked %s at version %d since %s: %s\n", k.StreamID, k.Version, k.ParkedAt.UTC().Format(time.DateTime), k.Error)
		}
	}
}

// progressBar draws a rebuild's progress on one terminal line.
type progressBar struct {
	w    io.Writer
	last time.Time
	pr   projector.Progress
}

func newProgressBar(w io.Writer) *progressBar { return &progressBar{w: w} }

func (b *progressBar) update(pr projector.Progress) {
	b.pr = pr
	if !pr.Done && time.Since(b.last) < 200*time.Millisecond {
		return
	}
	b.last = time.Now()
	const width = 30
	frac := 1.0
	if pr.Total > 0 {
		frac = min(float64(pr.Read)/float64(pr.Total), 1)
	}
	now := time.Now()
	rate := pr.Rate(now)
	eta := "?"
	if d, ok := pr.ETA(now); ok {
		eta = d.Round(time.Second).String()
	}
	if pr.Done {
		eta = "done"
	}
	filled := int(frac * width)
	fmt.Fprintf(b.w, "\r%-20s [%s%s] %3.0f%% %d/%d events %8.0f ev/s ETA %s ", pr.Projection,
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), frac*100, pr.Read, pr.Total, rate, eta)
}

func (b *progressBar) finish() { fmt.Fprintln(b.w) }
