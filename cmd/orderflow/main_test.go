package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/dbtest"
	"github.com/orderflow/orderflow/internal/kafkatest"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	base := map[string]string{"DATABASE_URL": "postgres://u:secret@db/orderflow", "KAFKA_BROKERS": "k1:9092, k2:9092"}
	cfg, err := loadConfig("serve", nil, env(base))
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if cfg.HTTPAddr != ":8080" || strings.Join(cfg.Roles, ",") != "command,payment-provider,projector,query,relay,saga" || strings.Join(cfg.KafkaBrokers, ",") != "k1:9092,k2:9092" || cfg.DBMaxConns != 20 || !cfg.MigrateOnStart || cfg.ShutdownTimeout != 15*time.Second {
		t.Fatalf("defaults = %+v", cfg)
	}
	cfg, err = loadConfig("serve", []string{"--http-addr", "127.0.0.1:9", "--roles", "command"}, env(base))
	if err != nil || cfg.HTTPAddr != "127.0.0.1:9" {
		t.Fatalf("flags override the environment: %+v, %v", cfg, err)
	}
	if got := cfg.LogValue().String(); strings.Contains(got, "secret") || !strings.Contains(got, "xxxxx") {
		t.Fatalf("logged config shows the password: %s", got)
	}

	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string // every one must be named in the error
	}{
		{"no database", map[string]string{}, nil, []string{"DATABASE_URL"}},
		{"unknown role", map[string]string{"DATABASE_URL": "x", "KAFKA_BROKERS": "k:1", "ORDERFLOW_ROLES": "command,chef"}, nil, []string{`"chef"`}},
		{"bad numbers", map[string]string{"DATABASE_URL": "x", "ORDERFLOW_DB_MAX_CONNS": "lots", "ORDERFLOW_APPEND_WORKERS": "0"}, nil,
			[]string{"ORDERFLOW_DB_MAX_CONNS", "ORDERFLOW_APPEND_WORKERS"}},
		{"workers use every connection", map[string]string{"DATABASE_URL": "x", "ORDERFLOW_DB_MAX_CONNS": "4", "ORDERFLOW_APPEND_WORKERS": "4"}, nil,
			[]string{"must be below"}},
		{"bad duration and level", map[string]string{"DATABASE_URL": "x", "ORDERFLOW_SHUTDOWN_TIMEOUT": "soon", "ORDERFLOW_LOG_LEVEL": "loud"}, nil,
			[]string{"ORDERFLOW_SHUTDOWN_TIMEOUT", "ORDERFLOW_LOG_LEVEL"}},
		{"bad bool", map[string]string{"DATABASE_URL": "x", "ORDERFLOW_MIGRATE_ON_START": "maybe"}, nil, []string{"ORDERFLOW_MIGRATE_ON_START"}},
		{"relay without brokers", map[string]string{"DATABASE_URL": "x", "ORDERFLOW_ROLES": "relay"}, nil, []string{"KAFKA_BROKERS"}},
		{"bad topic prefix and partitions", map[string]string{"DATABASE_URL": "x", "ORDERFLOW_ROLES": "command", "ORDERFLOW_KAFKA_TOPIC_PREFIX": "a b", "ORDERFLOW_KAFKA_PARTITIONS": "0"}, nil,
			[]string{"ORDERFLOW_KAFKA_TOPIC_PREFIX", "ORDERFLOW_KAFKA_PARTITIONS"}},
		{"consumer in-flight out of range", map[string]string{"DATABASE_URL": "x", "ORDERFLOW_ROLES": "command", "ORDERFLOW_CONSUMER_IN_FLIGHT": "0"}, nil,
			[]string{"ORDERFLOW_CONSUMER_IN_FLIGHT: want an integer in [1, 10000]"}},
		{"bad breaker timeout", map[string]string{"DATABASE_URL": "x", "ORDERFLOW_ROLES": "command", "ORDERFLOW_KAFKA_BREAKER_OPEN_TIMEOUT": "-1s"}, nil,
			[]string{"ORDERFLOW_KAFKA_BREAKER_OPEN_TIMEOUT"}},
		{"stray argument", map[string]string{"DATABASE_URL": "x"}, []string{"extra"}, []string{"unexpected arguments"}},
		{"unknown flag", map[string]string{"DATABASE_URL": "x"}, []string{"--colour"}, []string{"colour"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := loadConfig("serve", tt.args, env(tt.env))
			if err == nil {
				t.Fatal("invalid configuration accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error does not name %q: %v", w, err)
				}
			}
		})
	}
}

// logWatcher receives the JSON log of a running server and reports the
// address it serves on.
type logWatcher struct {
	w    *io.PipeWriter
	addr chan string
}

func watchLog(t *testing.T) *logWatcher {
	r, w := io.Pipe()
	lw := &logWatcher{w: w, addr: make(chan string, 1)}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving HTTP" {
				lw.addr <- line.Addr
			}
		}
	}()
	t.Cleanup(func() { w.Close() })
	return lw
}

func TestServeEndToEnd(t *testing.T) {
	// Not parallel: it runs every role of orderflow in this process.
	url := dbtest.MustURL(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := watchLog(t)
	done := make(chan error, 1)
	getenv := env(map[string]string{
		"DATABASE_URL": url, "KAFKA_BROKERS": strings.Join(kafkatest.MustBrokers(t), ","),
		"ORDERFLOW_KAFKA_TOPIC_PREFIX": kafkatest.UniquePrefix(t),
	})
	go func() {
		done <- run(ctx, []string{"serve", "--http-addr", "127.0.0.1:0"}, getenv, logs.w, io.Discard)
	}()
	var base string
	select {
	case addr := <-logs.addr:
		base = "http://" + addr
	case err := <-done:
		t.Fatalf("serve stopped before serving: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not start")
	}

	get := func(path string) (int, string) {
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || !strings.Contains(body, `"ok"`) {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, `"ready"`) {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	res, err := http.Post(base+"/v1/orders", "application/json",
		strings.NewReader(`{"customer_id":"c-1","lines":[{"sku":"SKU-1","quantity":1,"unit_price_cents":100}]}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/orders: %d", res.StatusCode)
	}
	code, metrics := get("/metrics")
	for _, want := range []string{
		`orderflow_http_request_duration_seconds_count{method="POST",route="/v1/orders",status="201"} 1`,
		"orderflow_eventstore_appends_total 1",
		"orderflow_eventstore_conflicts_total 0",
		"orderflow_eventstore_oldest_transaction_seconds",
	} {
		if code != 200 || !strings.Contains(metrics, want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
	if code, body := get("/openapi.json"); code != 200 || !strings.Contains(body, `"openapi": "3.1`) {
		t.Fatalf("/openapi.json: %d", code)
	}

	cancel() // as SIGTERM does
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v after shutdown", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
}

func TestRunRejectsUnknownCommand(t *testing.T) {
	t.Parallel()
	if err := run(context.Background(), []string{"dance"}, env(nil), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "dance") {
		t.Fatalf("err = %v", err)
	}
	if err := run(context.Background(), nil, env(nil), io.Discard, io.Discard); err == nil {
		t.Fatal("no command accepted")
	}
}
