package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

// eventData is the payload of every benchmark event and pgbench row: about
// the size of a real OrderPlaced (~150 bytes). A space follows every colon
// because pgbench would read ":2" in its script as a variable.
const eventData = `{"order_id": "0190f2a4-7c1e-7b6e-9d51-3f0c2a9b8e11", "customer_id": "cust-42", ` +
	`"sku": "SKU-RED-M", "quantity": 2, "unit_price_cents": 1999, "currency": "EUR"}`

// pgbenchTable is the baseline's table: a bigserial key and a jsonb column,
// the least a log row needs.
const pgbenchTable = `create table bench_rows (
	id        bigserial primary key,
	stream_id text not null,
	data      jsonb not null
)`

// pgbenchScript is one single-row insert per transaction; each client
// writes its own stream id, like the distinct-stream writers.
const pgbenchScript = `insert into bench_rows (stream_id, data) values ('pgbench-' || :client_id::text, '` + eventData + `');` + "\n"

// pgbenchRun is the baseline at one concurrency.
type pgbenchRun struct {
	Clients    int
	TPS        float64
	LatencyAvg time.Duration
	Failed     int64
	// Txns and CPU are the measured run's transactions and the whole
	// machine's busy CPU time during it.
	Txns     int64
	CPU      time.Duration
	Problems []string // why the figure is invalid; empty when valid
}

var (
	tpsRe       = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
	latencyRe   = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	processedRe = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	failedRe    = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
)

// measurePgbench runs pgbench's single-row insert at clients concurrency on
// a fresh database of the server behind base: a warm-up run, then the
// measured run. It checks that the table holds exactly the transactions
// pgbench reports.
func measurePgbench(ctx context.Context, log *slog.Logger, base string, clients int, warmup, duration time.Duration) (res pgbenchRun, err error) {
	res.Clients = clients
	db, err := createDatabase(ctx, base, false)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, db.drop(ctx)) }()
	if err := exec1(ctx, db.url, pgbenchTable); err != nil {
		return res, fmt.Errorf("create bench_rows: %w", err)
	}
	dir, err := os.MkdirTemp("", "orderflow-pgbench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "insert.sql")
	if err := os.WriteFile(script, []byte(pgbenchScript), 0o600); err != nil {
		return res, err
	}

	var processed int64
	if warmup > 0 {
		out, err := pgbench(ctx, db.url, script, clients, warmup)
		if err != nil {
			return res, err
		}
		n, err := matchInt(processedRe, out)
		if err != nil {
			return res, err
		}
		processed += n
	}
	log.Info("pgbench", "clients", clients, "duration", duration)
	before := cpuBusy()
	out, err := pgbench(ctx, db.url, script, clients, duration)
	if err != nil {
		return res, err
	}
	res.CPU = cpuBusy() - before
	if res.TPS, err = matchFloat(tpsRe, out); err != nil {
		return res, err
	}
	lat, err := matchFloat(latencyRe, out)
	if err != nil {
		return res, err
	}
	res.LatencyAvg = time.Duration(lat * float64(time.Millisecond))
	if res.Txns, err = matchInt(processedRe, out); err != nil {
		return res, err
	}
	processed += res.Txns
	if res.Failed, err = matchInt(failedRe, out); err != nil {
		return res, err
	}
	if res.Failed > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("pgbench reported %d failed transactions", res.Failed))
	}

	var rows int64
	if err := queryRow(ctx, db.url, "select count(*) from bench_rows", &rows); err != nil {
		return res, fmt.Errorf("count bench_rows: %w", err)
	}
	if rows != processed {
		res.Problems = append(res.Problems, fmt.Sprintf("bench_rows holds %d rows, pgbench reported %d transactions", rows, processed))
	}
	return res, nil
}

// CPUPerTxn returns the machine's CPU time per measured transaction.
func (r pgbenchRun) CPUPerTxn() time.Duration { return perOp(r.CPU, r.Txns) }

// pgbench runs one pgbench and returns its standard output.
func pgbench(ctx context.Context, url, script string, clients int, d time.Duration) (string, error) {
	args := []string{"-n", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(2, clients)),
		"-T", strconv.Itoa(int(d / time.Second)), "-f", script, "-M", "prepared", url}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "pgbench", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("pgbench -c %d: %w: %s", clients, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}

func matchFloat(re *regexp.Regexp, out string) (float64, error) {
	m := re.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pgbench output has no %q:\n%s", re, out)
	}
	return strconv.ParseFloat(m[1], 64)
}

func matchInt(re *regexp.Regexp, out string) (int64, error) {
	m := re.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pgbench output has no %q:\n%s", re, out)
	}
	return strconv.ParseInt(m[1], 10, 64)
}
