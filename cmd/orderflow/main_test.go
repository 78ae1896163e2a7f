package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/orderflow/orderflow/internal/dbtest"
	"github.com/orderflow/orderflow/internal/kafkatest"
)

// testJWTSecret is the gateway secret of the tests: 40 bytes.
const testJWTSecret = "orderflow-test-secret-0123456789abcdefgh"

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	base := map[string]string{"DATABASE_URL": "postgres://u:secret@db/orderflow", "KAFKA_BROKERS": "k1:9092, k2:9092", "ORDERFLOW_JWT_SECRET": testJWTSecret}
	cfg, err := loadConfig("serve", nil, env(base))
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if cfg.HTTPAddr != ":8080" || cfg.InternalAddr != "127.0.0.1:8081" || strings.Join(cfg.Roles, ",") != "command,gateway,payment-provider,projector,query,relay,saga" || strings.Join(cfg.KafkaBrokers, ",") != "k1:9092,k2:9092" || cfg.DBMaxConns != 20 || !cfg.MigrateOnStart || cfg.ShutdownTimeout != 15*time.Second {
		t.Fatalf("defaults = %+v", cfg)
	}
	if s := cfg.Server; s.ReadHeaderTimeout != 5*time.Second || s.ReadTimeout != 15*time.Second || s.WriteTimeout != 30*time.Second || s.IdleTimeout != 2*time.Minute {
		t.Fatalf("server timeouts = %+v", s)
	}
	if g := cfg.Gateway; g.Issuer != "orderflow" || g.Audience != "orderflow-api" || g.PerClientRate != 50 || g.PerClientBurst != 100 || g.GlobalRate != 2000 ||
		g.GlobalBurst != 4000 || g.MaxBodyBytes != 64<<10 || g.RequestTimeout != 10*time.Second || g.BreakerFailures != 5 || g.BreakerOpenTimeout != 5*time.Second || len(g.Upstreams) != 0 {
		t.Fatalf("gateway defaults = %+v", g)
	}
	if c := cfg.Consul; c.Addr != "" || strings.Join(c.Tags, ",") != "orderflow" || c.CheckInterval != 5*time.Second || c.DeregisterAfter != time.Minute {
		t.Fatalf("consul defaults = %+v", c)
	}
	cfg, err = loadConfig("serve", []string{"--http-addr", "127.0.0.1:9", "--roles", "command"}, env(base))
	if err != nil || cfg.HTTPAddr != "127.0.0.1:9" {
		t.Fatalf("flags override the environment: %+v, %v", cfg, err)
	}
	if got := cfg.LogValue().String(); strings.Contains(got, ":secret@") || !strings.Contains(got, "xxxxx") || strings.Contains(got, testJWTSecret) || !strings.Contains(got, "(set, 40 bytes: hidden)") {
		t.Fatalf("logged config shows the password or the JWT secret: %s", got)
	}

	// The gateway alone needs no database, and takes its upstreams from
	// the static lists; inf lifts a rate limit.
	cfg, err = loadConfig("serve", nil, env(map[string]string{
		"ORDERFLOW_ROLES": "gateway", "ORDERFLOW_JWT_SECRET": testJWTSecret,
		"ORDERFLOW_GATEWAY_COMMAND_URLS": "http://c1:8080, http://c2:8080/", "ORDERFLOW_GATEWAY_QUERY_URLS": "https://q:8443",
		"ORDERFLOW_GATEWAY_CLIENT_RATE": "inf", "ORDERFLOW_GATEWAY_GLOBAL_RATE": "12.5",
	}))
	if err != nil {
		t.Fatalf("gateway alone: %v", err)
	}
	if got := cfg.Gateway.Upstreams; strings.Join(got["command"], ",") != "http://c1:8080,http://c2:8080" || strings.Join(got["query"], ",") != "https://q:8443" || got["projector"] != nil {
		t.Fatalf("upstreams = %v", got)
	}
	if cfg.Gateway.PerClientRate != float64(rate.Inf) || cfg.Gateway.GlobalRate != 12.5 || cfg.RunsAPI() || !cfg.RunsGateway() {
		t.Fatalf("gateway alone: %+v", cfg)
	}
	// With Consul the gateway needs no static list.
	cfg, err = loadConfig("serve", nil, env(map[string]string{
		"ORDERFLOW_ROLES": "gateway", "ORDERFLOW_JWT_SECRET": testJWTSecret, "CONSUL_HTTP_ADDR": "http://consul:8500",
		"ORDERFLOW_ADVERTISE_HOST": "gateway-1", "ORDERFLOW_CONSUL_TAGS": "orderflow, v=2",
	}))
	if err != nil || cfg.Consul.Addr != "http://consul:8500" || cfg.Consul.AdvertiseHost != "gateway-1" || strings.Join(cfg.Consul.Tags, ",") != "orderflow,v=2" {
		t.Fatalf("gateway with Consul: %+v, %v", cfg.Consul, err)
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
		{"gateway without a secret", map[string]string{"DATABASE_URL": "x", "KAFKA_BROKERS": "k:1"}, nil,
			[]string{"ORDERFLOW_JWT_SECRET is required by the gateway role and must be at least 32 bytes, got 0"}},
		{"short secret", map[string]string{"ORDERFLOW_ROLES": "gateway", "ORDERFLOW_GATEWAY_COMMAND_URLS": "http://c:1", "ORDERFLOW_GATEWAY_QUERY_URLS": "http://q:1", "ORDERFLOW_JWT_SECRET": "hunter2"}, nil,
			[]string{"ORDERFLOW_JWT_SECRET", "got 7"}},
		{"empty issuer and audience", map[string]string{"ORDERFLOW_ROLES": "gateway", "ORDERFLOW_GATEWAY_COMMAND_URLS": "http://c:1", "ORDERFLOW_GATEWAY_QUERY_URLS": "http://q:1",
			"ORDERFLOW_JWT_SECRET": testJWTSecret}, []string{"--jwt-issuer", "", "--jwt-audience", ""},
			[]string{"ORDERFLOW_JWT_ISSUER", "ORDERFLOW_JWT_AUDIENCE"}},
		{"gateway alone without upstreams or Consul", map[string]string{"ORDERFLOW_ROLES": "gateway", "ORDERFLOW_JWT_SECRET": testJWTSecret}, nil,
			[]string{"ORDERFLOW_GATEWAY_COMMAND_URLS is required", "ORDERFLOW_GATEWAY_QUERY_URLS is required"}},
		{"gateway beside the query role still needs command instances", map[string]string{"DATABASE_URL": "x", "ORDERFLOW_ROLES": "gateway,query", "ORDERFLOW_JWT_SECRET": testJWTSecret}, nil,
			[]string{"ORDERFLOW_GATEWAY_COMMAND_URLS is required"}},
		{"static upstreams and Consul", map[string]string{"ORDERFLOW_ROLES": "gateway", "ORDERFLOW_JWT_SECRET": testJWTSecret, "CONSUL_HTTP_ADDR": "consul:8500",
			"ORDERFLOW_GATEWAY_QUERY_URLS": "http://q:1"}, nil, []string{"ORDERFLOW_GATEWAY_QUERY_URLS is for running without Consul"}},
		{"bad upstream URLs", map[string]string{"ORDERFLOW_ROLES": "gateway", "ORDERFLOW_JWT_SECRET": testJWTSecret,
			"ORDERFLOW_GATEWAY_COMMAND_URLS": "ftp://c:1", "ORDERFLOW_GATEWAY_QUERY_URLS": "http://q:1/v1", "ORDERFLOW_GATEWAY_PROJECTOR_URLS": "http://p:1,http://p:1"}, nil,
			[]string{`ORDERFLOW_GATEWAY_COMMAND_URLS: want comma-separated base URLs such as http://10.0.0.5:8080, got "ftp://c:1"`,
				`ORDERFLOW_GATEWAY_QUERY_URLS: want comma-separated base URLs such as http://10.0.0.5:8080, got "http://q:1/v1"`,
				"ORDERFLOW_GATEWAY_PROJECTOR_URLS: http://p:1 is listed twice"}},
		{"upstream URL with credentials or query", map[string]string{"ORDERFLOW_ROLES": "gateway", "ORDERFLOW_JWT_SECRET": testJWTSecret,
			"ORDERFLOW_GATEWAY_COMMAND_URLS": "http://u:p@c:1", "ORDERFLOW_GATEWAY_QUERY_URLS": "http://q:1?x=1"}, nil,
			[]string{"ORDERFLOW_GATEWAY_COMMAND_URLS: want", "ORDERFLOW_GATEWAY_QUERY_URLS: want"}},
		{"bad rates and bursts", map[string]string{"DATABASE_URL": "x", "KAFKA_BROKERS": "k:1", "ORDERFLOW_JWT_SECRET": testJWTSecret,
			"ORDERFLOW_GATEWAY_CLIENT_RATE": "0", "ORDERFLOW_GATEWAY_GLOBAL_RATE": "fast", "ORDERFLOW_GATEWAY_CLIENT_BURST": "0", "ORDERFLOW_GATEWAY_GLOBAL_BURST": "-5"}, nil,
			[]string{`ORDERFLOW_GATEWAY_CLIENT_RATE: want a positive number of requests per second or inf, got "0"`, `ORDERFLOW_GATEWAY_GLOBAL_RATE: want a positive number of requests per second or inf, got "fast"`,
				"ORDERFLOW_GATEWAY_CLIENT_BURST", "ORDERFLOW_GATEWAY_GLOBAL_BURST"}},
		{"negative and NaN rates", map[string]string{"DATABASE_URL": "x", "KAFKA_BROKERS": "k:1", "ORDERFLOW_JWT_SECRET": testJWTSecret,
			"ORDERFLOW_GATEWAY_CLIENT_RATE": "-1", "ORDERFLOW_GATEWAY_GLOBAL_RATE": "NaN"}, nil,
			[]string{"ORDERFLOW_GATEWAY_CLIENT_RATE", "ORDERFLOW_GATEWAY_GLOBAL_RATE"}},
		{"negative projector batches", map[string]string{"DATABASE_URL": "x", "KAFKA_BROKERS": "k:1", "ORDERFLOW_JWT_SECRET": testJWTSecret,
			"ORDERFLOW_PROJECTOR_MAX_BATCHES": "-1"}, nil,
			[]string{"ORDERFLOW_PROJECTOR_MAX_BATCHES: want an integer in [0, 1000]"}},
		{"NaN payment failure rate", map[string]string{"DATABASE_URL": "x", "KAFKA_BROKERS": "k:1", "ORDERFLOW_JWT_SECRET": testJWTSecret,
			"ORDERFLOW_PAYMENT_FAILURE_RATE": "NaN"}, nil,
			[]string{`ORDERFLOW_PAYMENT_FAILURE_RATE: want a number in [0, 1], got "NaN"`}},
		{"bad gateway bounds and breaker", map[string]string{"DATABASE_URL": "x", "KAFKA_BROKERS": "k:1", "ORDERFLOW_JWT_SECRET": testJWTSecret,
			"ORDERFLOW_GATEWAY_MAX_BODY_BYTES": "0", "ORDERFLOW_GATEWAY_REQUEST_TIMEOUT": "0s", "ORDERFLOW_GATEWAY_BREAKER_FAILURES": "0", "ORDERFLOW_GATEWAY_BREAKER_OPEN_TIMEOUT": "soon"}, nil,
			[]string{"ORDERFLOW_GATEWAY_MAX_BODY_BYTES: want an integer in [1, 67108864]", "ORDERFLOW_GATEWAY_REQUEST_TIMEOUT: want a duration in [10ms, 10m0s]",
				"ORDERFLOW_GATEWAY_BREAKER_FAILURES", "ORDERFLOW_GATEWAY_BREAKER_OPEN_TIMEOUT"}},
		{"gateway request timeout not below the write timeout", map[string]string{"DATABASE_URL": "x", "KAFKA_BROKERS": "k:1", "ORDERFLOW_JWT_SECRET": testJWTSecret,
			"ORDERFLOW_GATEWAY_REQUEST_TIMEOUT": "30s", "ORDERFLOW_HTTP_WRITE_TIMEOUT": "30s"}, nil,
			[]string{"ORDERFLOW_GATEWAY_REQUEST_TIMEOUT (30s) must be below ORDERFLOW_HTTP_WRITE_TIMEOUT (30s)"}},
		{"bad server timeouts", map[string]string{"DATABASE_URL": "x", "ORDERFLOW_ROLES": "command",
			"ORDERFLOW_HTTP_READ_HEADER_TIMEOUT": "0s", "ORDERFLOW_HTTP_READ_TIMEOUT": "forever", "ORDERFLOW_HTTP_WRITE_TIMEOUT": "-1s", "ORDERFLOW_HTTP_IDLE_TIMEOUT": "2h"}, nil,
			[]string{"ORDERFLOW_HTTP_READ_HEADER_TIMEOUT: want a duration in [100ms, 1h0m0s]", "ORDERFLOW_HTTP_READ_TIMEOUT", "ORDERFLOW_HTTP_WRITE_TIMEOUT", "ORDERFLOW_HTTP_IDLE_TIMEOUT"}},
		{"header timeout beyond the read timeout", map[string]string{"DATABASE_URL": "x", "ORDERFLOW_ROLES": "command",
			"ORDERFLOW_HTTP_READ_HEADER_TIMEOUT": "20s", "ORDERFLOW_HTTP_READ_TIMEOUT": "10s"}, nil,
			[]string{"ORDERFLOW_HTTP_READ_HEADER_TIMEOUT (20s) must not exceed ORDERFLOW_HTTP_READ_TIMEOUT (10s)"}},
		{"gateway and other roles on one address", map[string]string{"DATABASE_URL": "x", "KAFKA_BROKERS": "k:1", "ORDERFLOW_JWT_SECRET": testJWTSecret,
			"ORDERFLOW_HTTP_ADDR": ":9000", "ORDERFLOW_INTERNAL_ADDR": ":9000"}, nil, []string{"ORDERFLOW_INTERNAL_ADDR (:9000) must differ from ORDERFLOW_HTTP_ADDR"}},
		{"gateway and other roles without an internal address", map[string]string{"DATABASE_URL": "x", "KAFKA_BROKERS": "k:1", "ORDERFLOW_JWT_SECRET": testJWTSecret},
			[]string{"--internal-addr", ""}, []string{"ORDERFLOW_INTERNAL_ADDR must not be empty"}},
		{"no database for the other roles", map[string]string{"ORDERFLOW_ROLES": "gateway,command", "ORDERFLOW_JWT_SECRET": testJWTSecret, "ORDERFLOW_GATEWAY_QUERY_URLS": "http://q:1"}, nil,
			[]string{"DATABASE_URL is required"}},
		{"bad Consul address", map[string]string{"DATABASE_URL": "x", "ORDERFLOW_ROLES": "command", "CONSUL_HTTP_ADDR": "consul"}, nil,
			[]string{`CONSUL_HTTP_ADDR: want host:port or http(s)://host:port, got "consul"`}},
		{"Consul address with another scheme", map[string]string{"DATABASE_URL": "x", "ORDERFLOW_ROLES": "command", "CONSUL_HTTP_ADDR": "ftp://consul:8500"}, nil,
			[]string{"CONSUL_HTTP_ADDR"}},
		{"bad advertise host, tags and check durations", map[string]string{"DATABASE_URL": "x", "ORDERFLOW_ROLES": "command", "CONSUL_HTTP_ADDR": "consul:8500",
			"ORDERFLOW_ADVERTISE_HOST": "host:8080", "ORDERFLOW_CONSUL_TAGS": "ok,not ok", "ORDERFLOW_CONSUL_CHECK_INTERVAL": "0s", "ORDERFLOW_CONSUL_DEREGISTER_AFTER": "10s"}, nil,
			[]string{`ORDERFLOW_ADVERTISE_HOST: want a host name or IP address without port, got "host:8080"`, `ORDERFLOW_CONSUL_TAGS: want tags of 1 to 100 letters, digits or . _ : = / -, got "not ok"`,
				"ORDERFLOW_CONSUL_CHECK_INTERVAL: want a duration in [100ms, 10m0s]", "ORDERFLOW_CONSUL_DEREGISTER_AFTER: want a duration in [1m0s, 24h0m0s]"}},
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
			if secret := tt.env["ORDERFLOW_JWT_SECRET"]; secret != "" && strings.Contains(err.Error(), secret) {
				t.Fatalf("the error shows the JWT secret: %v", err)
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
// addresses it serves on.
type logWatcher struct {
	w       *io.PipeWriter
	serving chan servingLine
}

func watchLog(t *testing.T) *logWatcher {
	r, w := io.Pipe()
	lw := &logWatcher{w: w, serving: make(chan servingLine, 1)}
	log := &logTail{}
	go scanServing(r, lw.serving, log)
	t.Cleanup(func() {
		w.Close()
		if t.Failed() {
			t.Logf("the last %d lines of the server's log:\n%s", logTailLines, log)
		}
	})
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
		"ORDERFLOW_KAFKA_TOPIC_PREFIX": kafkatest.UniquePrefix(t), "ORDERFLOW_JWT_SECRET": testJWTSecret,
	})
	go func() {
		done <- run(ctx, []string{"serve", "--http-addr", "127.0.0.1:0", "--internal-addr", "127.0.0.1:0"}, getenv, logs.w, io.Discard)
	}()
	var base, gw string
	select {
	case line := <-logs.serving:
		base, gw = "http://"+line.RolesAddr, "http://"+line.GatewayAddr
		if line.Addr != line.GatewayAddr || line.RolesAddr == "" || line.RolesAddr == line.Addr {
			t.Fatalf("all roles: want the gateway on the HTTP address and the rest on the internal one: %+v", line)
		}
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
		"orderflow_eventstore_append_seconds_count 1",
		"orderflow_eventstore_append_transaction_seconds_count 1",
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

	// The gateway fronts the same process: ready, and every /v1 call needs
	// a token.
	base = gw
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, `"ready"`) {
		t.Fatalf("gateway /readyz: %d %s", code, body)
	}
	order := `{"customer_id":"c-1","lines":[{"sku":"SKU-1","quantity":1,"unit_price_cents":100}]}`
	if res := MustDo(t, http.MethodPost, gw+"/v1/orders", "", order); res.status != http.StatusUnauthorized {
		t.Fatalf("POST through the gateway without a token: %d %s", res.status, res.body)
	}
	if res := MustDo(t, http.MethodPost, gw+"/v1/orders", MustToken(t, "c-1", "customer"), order); res.status != http.StatusCreated {
		t.Fatalf("POST through the gateway with a token: %d %s", res.status, res.body)
	}
	if _, metrics := get("/metrics"); !strings.Contains(metrics, `orderflow_gateway_requests_total{method="POST",route="/v1/orders",status="201"} 1`) {
		t.Fatalf("gateway /metrics lacks its requests:\n%s", metrics)
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

// The help shows each setting's value from the environment as its default,
// except the secrets.
func TestHelpHidesSecrets(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0], "serve", "-h")
	cmd.Env = append(os.Environ(), "ORDERFLOW_TEST_RUN_MAIN=1", "ORDERFLOW_JWT_SECRET="+testJWTSecret,
		"DATABASE_URL=postgres://u:db-password@db/x", "ORDERFLOW_KAFKA_TOPIC_PREFIX=shown-prefix")
	out, _ := cmd.CombinedOutput() // -h exits 1
	if !strings.Contains(string(out), `(default "shown-prefix")`) {
		t.Fatalf("help does not show the environment's values:\n%s", out)
	}
	for _, secret := range []string{testJWTSecret, "db-password"} {
		if strings.Contains(string(out), secret) {
			t.Fatalf("help shows a secret:\n%s", out)
		}
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

// The database password reaches no log line and no usage text: not in the
// URL's user part, not as a query parameter, and not as a flag's default
// printed on a flag error.
func TestDatabasePasswordIsNeverPrinted(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"postgres://app:s3cret@db/orderflow",
		"postgres://app@db/orderflow?password=s3cret&sslmode=disable",
		"postgres://app@db/orderflow?sslpassword=s3cret",
	} {
		if got := maskURL(u); strings.Contains(got, "s3cret") || !strings.Contains(got, "xxxxx") {
			t.Errorf("maskURL(%q) = %q", u, got)
		}
	}
	getenv := func(k string) string {
		if k == "DATABASE_URL" {
			return "postgres://app:s3cret@db/orderflow"
		}
		return ""
	}
	for _, args := range [][]string{{"migrate", "--databse-url=x"}, {"migrate", "-h"}, {"projections", "status", "--no-such-flag"}} {
		var stdout, stderr strings.Builder
		err := run(context.Background(), args, getenv, &stdout, &stderr)
		if err == nil {
			t.Errorf("%v: no error", args)
		}
		if strings.Contains(stdout.String()+stderr.String(), "s3cret") {
			t.Errorf("%v printed the password:\n%s%s", args, stdout.String(), stderr.String())
		}
	}
}
