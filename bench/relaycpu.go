package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cpuSplit is CPU time spent by the parts of the pipeline: this process (the
// relay or the raw producer, and the Go side of everything), the PostgreSQL
// server, the Kafka broker, and the whole machine.
type cpuSplit struct {
	Bench, Postgres, Kafka, Machine time.Duration
}

// sub returns s − t, part by part.
func (s cpuSplit) sub(t cpuSplit) cpuSplit {
	return cpuSplit{Bench: s.Bench - t.Bench, Postgres: s.Postgres - t.Postgres, Kafka: s.Kafka - t.Kafka, Machine: s.Machine - t.Machine}
}

// other returns the machine's CPU time that none of the parts account for;
// never below zero (the counters tick separately, so a quiet run can come
// out a few ticks negative).
func (s cpuSplit) other() time.Duration {
	return max(0, s.Machine-s.Bench-s.Postgres-s.Kafka)
}

// perEvent divides each part over n events.
func (s cpuSplit) perEvent(n int64) cpuSplit {
	return cpuSplit{Bench: perOp(s.Bench, n), Postgres: perOp(s.Postgres, n), Kafka: perOp(s.Kafka, n), Machine: perOp(s.Machine, n)}
}

// sampleCPU reads the CPU time used so far by this process, by the
// PostgreSQL server processes that serve database (its backends, and the
// shared ones: WAL writer, checkpointer …, but not other databases'
// backends), by the Kafka broker's JVM (kafka.Kafka on its command line), and
// by the whole machine, from /proc. Differences of two samples apportion a
// run's CPU; a process that exits in between loses its share.
func sampleCPU(database string) cpuSplit {
	s := cpuSplit{Machine: cpuBusy()}
	self := os.Getpid()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		pid, err := strconv.Atoi(filepath.Base(dir))
		if err != nil {
			continue
		}
		comm, ticks, ok := procTicks(dir)
		if !ok {
			continue
		}
		switch {
		case pid == self:
			s.Bench += ticks
		case comm == "postgres" && servesDatabase(readFile(dir+"/cmdline"), database):
			s.Postgres += ticks
		case comm == "java" && strings.Contains(readFile(dir+"/cmdline"), "kafka.Kafka"):
			s.Kafka += ticks
		}
	}
	return s
}

// servesDatabase reports whether a postgres process, by its command line,
// serves database or the whole server: a backend's title is "postgres: user
// database host(port) state" and an auxiliary's "postgres: walwriter" and the
// like. Autovacuum workers name their database.
func servesDatabase(cmdline, database string) bool {
	title, ok := strings.CutPrefix(strings.TrimRight(cmdline, "\x00"), "postgres: ")
	if !ok {
		return true // the postmaster
	}
	fields := strings.Fields(title)
	switch {
	case strings.HasPrefix(title, "autovacuum worker"):
		return len(fields) > 2 && fields[2] == database
	case len(fields) >= 3 && strings.Contains(fields[2], "("): // user database host(port) …
		return fields[1] == database
	}
	return true
}

// procTicks returns a process's command name and its user and system time,
// its threads' included.
func procTicks(dir string) (string, time.Duration, bool) {
	stat := readFile(dir + "/stat")
	open, close := strings.IndexByte(stat, '('), strings.LastIndexByte(stat, ')')
	if open < 0 || close < open {
		return "", 0, false
	}
	// After the command: state is field 3, utime 14, stime 15 (1-based, as
	// proc(5) numbers them). Reaped children's time is left out: the
	// postmaster's would be every database's exited backends'.
	fields := strings.Fields(stat[close+1:])
	if len(fields) < 15 {
		return "", 0, false
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return "", 0, false
		}
		ticks += n
	}
	return stat[open+1 : close], time.Duration(ticks) * clockTick, true
}
