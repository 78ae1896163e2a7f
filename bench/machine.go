package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/gctune"
)

// machine is what a figure was measured on.
type machine struct {
	CPUModel          string
	Cores             int
	MemoryBytes       int64
	Kernel            string
	GoVersion         string
	GCPercent         int // this process's and orderflow's GC target (gctune)
	PGVersion         string
	PGHost            string
	Fsync             string
	SynchronousCommit string
	WALSyncMethod     string
	Date              time.Time
	// BackgroundBusy is the share of all cores busy during one second
	// before the run: other work on the machine skews every figure.
	BackgroundBusy float64
	// The speed check, measured before each section: this is a shared
	// virtual machine whose speed moves from run to run, and these two say
	// how fast it was then. SHA256MBps is what one core hashes (Go's
	// crypto/sha256, 64 KiB blocks, for speedCheck); CommitsPerSec is how
	// many transactions one client commits one after another, each waiting
	// for its WAL flush (select txid_current(), for speedCheck).
	SHA256MBps    float64
	CommitsPerSec float64
}

// speedCheck is how long each half of the speed check runs.
const speedCheck = time.Second

// probeMachine reads the host from /proc and the server's version and
// durability settings from PostgreSQL.
func probeMachine(ctx context.Context, databaseURL string) (machine, error) {
	m := machine{
		CPUModel:  cpuModel(),
		Cores:     runtime.NumCPU(),
		Kernel:    strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
		GoVersion: runtime.Version(),
		GCPercent: gctune.Apply(),
		Date:      time.Now().UTC(),
	}
	m.MemoryBytes = memTotal()
	before := cpuBusy()
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		return machine{}, ctx.Err()
	}
	m.BackgroundBusy = float64(cpuBusy()-before) / float64(time.Duration(m.Cores)*time.Second)

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return machine{}, fmt.Errorf("connect to %s: %w", redact(databaseURL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	m.PGHost = conn.Config().Host
	err = conn.QueryRow(ctx, `select current_setting('server_version'), current_setting('fsync'),
		current_setting('synchronous_commit'), current_setting('wal_sync_method')`).
		Scan(&m.PGVersion, &m.Fsync, &m.SynchronousCommit, &m.WALSyncMethod)
	if err != nil {
		return machine{}, fmt.Errorf("read server settings: %w", err)
	}
	m.SHA256MBps = hashRate(speedCheck)
	if m.CommitsPerSec, err = commitRate(ctx, conn, speedCheck); err != nil {
		return machine{}, fmt.Errorf("speed check: %w", err)
	}
	return m, nil
}

// hashRate returns the MB/s one goroutine hashes with SHA-256 over d.
func hashRate(d time.Duration) float64 {
	block := make([]byte, 64<<10)
	var n int
	start := time.Now()
	for time.Since(start) < d {
		sha256.Sum256(block)
		n += len(block)
	}
	return float64(n) / 1e6 / time.Since(start).Seconds()
}

// commitRate returns how many transactions per second conn commits one
// after another over d, each taking a transaction id so its commit waits
// for the WAL flush (with synchronous_commit on).
func commitRate(ctx context.Context, conn *pgx.Conn, d time.Duration) (float64, error) {
	var n int
	start := time.Now()
	for time.Since(start) < d {
		if _, err := conn.Exec(ctx, "select txid_current()"); err != nil {
			return 0, err
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// markdown renders m as a short list for the top of a section.
func (m machine) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "- Date: %s\n", m.Date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- CPU: %s, %d cores; memory %.1f GiB; Linux %s\n", m.CPUModel, m.Cores, float64(m.MemoryBytes)/(1<<30), m.Kernel)
	fmt.Fprintf(&b, "- Go: %s; GC target %d%% in the bench and in orderflow (GOGC)\n", m.GoVersion, m.GCPercent)
	fmt.Fprintf(&b, "- Background load before the run: %.0f%% of all cores busy\n", 100*m.BackgroundBusy)
	fmt.Fprintf(&b, "- Speed check before the run (this shared machine's speed moves from run to run): one core hashes %.0f MB/s (SHA-256); one client commits %.0f transactions/s, each waiting for its WAL flush\n",
		m.SHA256MBps, m.CommitsPerSec)
	fmt.Fprintf(&b, "- PostgreSQL: %s at %s; fsync=%s, synchronous_commit=%s, wal_sync_method=%s\n",
		m.PGVersion, m.PGHost, m.Fsync, m.SynchronousCommit, m.WALSyncMethod)
	return b.String()
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// memTotal returns MemTotal from /proc/meminfo in bytes, 0 if unknown.
func memTotal() int64 {
	for line := range strings.Lines(readFile("/proc/meminfo")) {
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

// clockTick is USER_HZ, the unit of /proc/stat: 100 on every Linux
// architecture Go supports.
const clockTick = 10 * time.Millisecond

// cpuBusy returns the CPU time all cores have spent not idle since boot,
// from /proc/stat; 0 if unknown. Differences of it measure what a run cost
// the whole machine, client and server together.
func cpuBusy() time.Duration {
	line, _, _ := strings.Cut(readFile("/proc/stat"), "\n")
	fields := strings.Fields(line)
	if len(fields) < 8 || fields[0] != "cpu" {
		return 0
	}
	var ticks int64
	// user, nice, system, irq, softirq: not idle, iowait, steal (another
	// guest's), nor guest (already counted in user).
	for _, i := range []int{1, 2, 3, 6, 7} {
		n, err := strconv.ParseInt(fields[i], 10, 64)
		if err != nil {
			return 0
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick
}

// cpuBetween sleeps until from, then until to, and returns the machine's
// busy CPU time in between; 0 if ctx ends first.
func cpuBetween(ctx context.Context, from, to time.Time) time.Duration {
	if !sleepUntil(ctx, from) {
		return 0
	}
	before := cpuBusy()
	if !sleepUntil(ctx, to) {
		return 0
	}
	return cpuBusy() - before
}

// sleepUntil waits for t and reports whether it came before ctx ended.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// settleLimit bounds how long a point waits for the machine to go quiet.
const settleLimit = 10 * time.Second

// settle waits until the machine is quiet, under 15% of all cores busy over
// one second, and reports whether it got there within limit.
func settle(ctx context.Context, cores int, limit time.Duration) (bool, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		before := cpuBusy()
		if !sleepUntil(ctx, time.Now().Add(time.Second)) {
			return false, ctx.Err()
		}
		if float64(cpuBusy()-before) < 0.15*float64(time.Duration(cores)*time.Second) {
			return true, nil
		}
	}
	return false, nil
}
