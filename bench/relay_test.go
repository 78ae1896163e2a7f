// An internal test: package main cannot be imported by a _test package.
package main

import (
	"os"
	"slices"
	"testing"
	"time"
)

func TestCatchUpBatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		batch int
		sweep []int
		want  []int
	}{
		{"batch in the sweep", 1000, []int{5000, 500, 1000, 2000}, []int{500, 1000, 2000, 5000}},
		{"batch added to the sweep", 300, []int{5000, 500}, []int{300, 500, 5000}},
		{"no sweep", 1000, nil, []int{1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := (config{relayBatch: tt.batch, relaySweep: tt.sweep}).catchUpBatches(); !slices.Equal(got, tt.want) {
				t.Fatalf("catchUpBatches() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseBatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    []int
		wantErr bool
	}{
		{"list", "500, 1000,2000", []int{500, 1000, 2000}, false},
		{"empty", "", nil, false},
		{"not a number", "500,lots", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseBatches(tt.in)
			if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
				t.Fatalf("parseBatches(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestCheckDelivered(t *testing.T) {
	t.Parallel()
	counts := []partitionCount{{Messages: 600}, {Messages: 400}}
	tests := []struct {
		name         string
		sent         int64
		wantDups     int64
		wantProblems int
	}{
		{"exactly once", 1000, 0, 0},
		{"duplicates are counted, not invalid", 990, 10, 0},
		{"a loss is invalid", 1001, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dups, problems := checkDelivered("x", counts, tt.sent)
			if dups != tt.wantDups || len(problems) != tt.wantProblems {
				t.Fatalf("checkDelivered(1000 held, %d sent) = %d duplicates, %q; want %d, %d problems",
					tt.sent, dups, problems, tt.wantDups, tt.wantProblems)
			}
		})
	}
}

func TestServesDatabase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cmdline string
		want    bool
	}{
		{"postmaster", "/usr/lib/postgresql/15/bin/postgres\x00-D\x00/data\x00", true},
		{"its backend", "postgres: orderflow orderflow_bench_ab 127.0.0.1(40990) idle", true},
		{"another database's backend", "postgres: orderflow orderflow_test_cd 127.0.0.1(40991) COMMIT", false},
		{"WAL writer", "postgres: walwriter ", true},
		{"checkpointer", "postgres: checkpointer ", true},
		{"its autovacuum", "postgres: autovacuum worker orderflow_bench_ab", true},
		{"another autovacuum", "postgres: autovacuum worker orderflow_test_cd", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := servesDatabase(tt.cmdline, "orderflow_bench_ab"); got != tt.want {
				t.Fatalf("servesDatabase(%q) = %v, want %v", tt.cmdline, got, tt.want)
			}
		})
	}
}

func TestProcTicksReadsThisProcess(t *testing.T) {
	t.Parallel()
	for range 1_000_000 { // burn a little CPU so the count is not zero
		_ = os.Getpid()
	}
	comm, ticks, ok := procTicks("/proc/self")
	if !ok || comm == "" || ticks < 0 {
		t.Fatalf("procTicks(/proc/self) = %q, %v, %v", comm, ticks, ok)
	}
}

func TestBacklogEventMatchesTheSQLLayout(t *testing.T) {
	t.Parallel()
	// Event i is version i/streams+1 of stream i%streams, a third of the
	// streams in each category: the same formulas as backlogSQL.
	for _, i := range []int{0, 1, 2, backlogStreams - 1, backlogStreams, 3*backlogStreams + 7} {
		e := backlogEvent(i, time.Time{})
		if want := int64(i/backlogStreams + 1); e.Version != want {
			t.Errorf("event %d: version %d, want %d", i, e.Version, want)
		}
		if want := backlogCategories[(i%backlogStreams)%3] + "-"; e.StreamID[:len(want)] != want {
			t.Errorf("event %d: stream %s, want category %s", i, e.StreamID, want)
		}
		if e.StreamID != backlogEvent(i+backlogStreams, time.Time{}).StreamID {
			t.Errorf("event %d and %d: different streams", i, i+backlogStreams)
		}
	}
	if n := len(backlogData(999_999)); n < 180 || n > 230 {
		t.Errorf("payload of %d bytes, want about 200", n)
	}
}
