// An internal test: package main cannot be imported by a _test package.
package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestWriteSection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		initial *string // nil: no file
		section string
		body    string
		want    string
		wantErr bool
	}{
		{
			name:    "creates the file with a header",
			section: "eventstore",
			body:    "figures\n",
			want:    reportHeader + "\n<!-- bench:eventstore -->\nfigures\n<!-- /bench:eventstore -->\n",
		},
		{
			name:    "replaces only its own section",
			initial: ptr("# B\n\n<!-- bench:eventstore -->\nold\n<!-- /bench:eventstore -->\n\n<!-- bench:http -->\nkeep\n<!-- /bench:http -->\nfooter\n"),
			section: "eventstore",
			body:    "new",
			want:    "# B\n\n<!-- bench:eventstore -->\nnew\n<!-- /bench:eventstore -->\n\n<!-- bench:http -->\nkeep\n<!-- /bench:http -->\nfooter\n",
		},
		{
			name:    "appends a missing section",
			initial: ptr("# B\n\nhand-written notes\n"),
			section: "http",
			body:    "h\n",
			want:    "# B\n\nhand-written notes\n\n<!-- bench:http -->\nh\n<!-- /bench:http -->\n",
		},
		{
			name:    "refuses an unterminated section",
			initial: ptr("<!-- bench:http -->\nno end\n"),
			section: "http",
			body:    "h",
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
			if tt.initial != nil {
				if err := os.WriteFile(path, []byte(*tt.initial), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := writeSection(path, tt.section, tt.body)
			if tt.wantErr {
				if err == nil {
					t.Fatal("writeSection succeeded; want an error")
				}
				got, _ := os.ReadFile(path)
				if string(got) != *tt.initial {
					t.Fatalf("file changed on error:\n%s", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("file =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestWriteSectionTwiceIsStable(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	for range 2 {
		if err := writeSection(path, "eventstore", "same\n"); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(path)
	if n := strings.Count(string(got), "<!-- bench:eventstore -->"); n != 1 {
		t.Fatalf("section appears %d times:\n%s", n, got)
	}
}

func TestPercentiles(t *testing.T) {
	t.Parallel()
	var d []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	l := summarise(d)
	tests := []struct {
		name string
		p    float64
		want time.Duration
	}{
		{"p50", 0.5, 50 * time.Millisecond},
		{"p90", 0.9, 90 * time.Millisecond},
		{"p99", 0.99, 99 * time.Millisecond},
		{"p100", 1, 100 * time.Millisecond},
		{"tiny p", 0.0001, time.Millisecond},
	}
	for _, tt := range tests {
		if got := l.pct(tt.p); got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, got, tt.want)
		}
	}
	if got := l.max(); got != 100*time.Millisecond {
		t.Errorf("max = %v, want 100ms", got)
	}
	if got := latencies(nil).pct(0.99); got != 0 {
		t.Errorf("p99 of nothing = %v, want 0", got)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := config{databaseURL: "postgres://x", out: "B.md", only: "all", duration: 10 * time.Second, warmup: time.Second,
		kafkaBrokers: []string{"127.0.0.1:9092"}, relayBatch: 1000, relaySweep: []int{500, 1000}, relayEvents: 1_000_000}
	if err := ok.validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	noKafka := ok
	noKafka.only, noKafka.kafkaBrokers = "eventstore", nil
	if err := noKafka.validate(); err != nil {
		t.Fatalf("a section without Kafka needs no broker: %v", err)
	}
	bad := config{only: "nope", duration: 1500 * time.Millisecond, warmup: -time.Second, relaySweep: []int{5, 5, 0}}
	err := bad.validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"DATABASE_URL", "-out", "-only", "-duration", "-warmup", "-relay-batch", "-relay-sweep", "-relay-events"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	relayOnly := ok
	relayOnly.only, relayOnly.kafkaBrokers = "relay", nil
	if err := relayOnly.validate(); err == nil || !strings.Contains(err.Error(), "KAFKA_BROKERS") {
		t.Errorf("relay without a broker: error %v, want one naming KAFKA_BROKERS", err)
	}
	gatewayOnly := ok
	gatewayOnly.only = "gateway"
	if err := gatewayOnly.validate(); err != nil {
		t.Errorf("-only=gateway: %v", err)
	}
	gatewayOnly.kafkaBrokers = nil // its seeded orders reach the view through Kafka
	if err := gatewayOnly.validate(); err == nil || !strings.Contains(err.Error(), "KAFKA_BROKERS") {
		t.Errorf("gateway without a broker: error %v, want one naming KAFKA_BROKERS", err)
	}
}

func TestRunsGateway(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		env             []string
		gateway, others bool
	}{
		{"default is all", nil, true, true},
		{"all", []string{"ORDERFLOW_ROLES=all"}, true, true},
		{"gateway alone", []string{"ORDERFLOW_ROLES=gateway"}, true, false},
		{"no gateway", []string{"ORDERFLOW_ROLES=command,query"}, false, true},
		{"gateway beside a role", []string{"ORDERFLOW_ROLES=query, gateway"}, true, true},
		{"the last setting wins", []string{"ORDERFLOW_ROLES=all", "ORDERFLOW_ROLES=command"}, false, true},
		{"an empty last setting is the default", []string{"ORDERFLOW_ROLES=command", "ORDERFLOW_ROLES="}, true, true},
	}
	for _, tt := range tests {
		if g, o := runsGateway(tt.env); g != tt.gateway || o != tt.others {
			t.Errorf("%s: runsGateway(%q) = %t, %t; want %t, %t", tt.name, tt.env, g, o, tt.gateway, tt.others)
		}
	}
}

func ptr(s string) *string { return &s }

func TestMergeRuns(t *testing.T) {
	t.Parallel()
	a := &loadRun{Target: "t", Rate: 100, Duration: time.Second, OK: 100, Achieved: 100,
		Latency: summarise([]time.Duration{3, 1}), SendLag: summarise([]time.Duration{1, 1})}
	b := &loadRun{Target: "t", Rate: 100, Duration: time.Second, OK: 50, Achieved: 25, // over 2s
		Latency: summarise([]time.Duration{2}), SendLag: summarise([]time.Duration{1})}
	b.Errors.add(errors.New("status 503"))
	m := mergeRuns([]*loadRun{a, b})
	if m.OK != 150 || m.Achieved != 50 || m.Duration != 2*time.Second || m.Rate != 100 {
		t.Fatalf("merged %+v, want 150 OK over 3s of windows (50/s) in 2s measured", m)
	}
	if !slices.Equal(m.Latency, latencies{1, 2, 3}) || len(m.SendLag) != 3 {
		t.Fatalf("merged latencies %v, send lags %v", m.Latency, m.SendLag)
	}
	if m.Errors.n != 1 || len(m.Errors.problems()) != 1 {
		t.Fatalf("merged errors %d %v", m.Errors.n, m.Errors.problems())
	}
}
