package gateway_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/gateway"
)

// TestBreakerFailsFastAndRecovers kills the only query instance: the first
// failures reach it, then its breaker opens and requests get 503 at once
// without trying it; once it listens again on the same address, a probe
// closes the breaker and traffic returns.
func TestBreakerFailsFastAndRecovers(t *testing.T) {
	counter := &countingTransport{base: &http.Transport{}}
	cfg := baseConfig()
	cfg.Transport = counter
	cfg.BreakerFailures = 3
	cfg.BreakerOpenTimeout = 300 * time.Millisecond
	cfg.RequestTimeout = 5 * time.Second
	h := MustHarness(t, cfg, 1)
	admin := MustToken(t, "ops", gateway.RoleAdmin)
	get := func() response { return h.do(t, http.MethodGet, "/v1/inventory/sku-1", admin, "") }

	if res := get(); res.status != http.StatusOK {
		t.Fatalf("before the kill: %d", res.status)
	}
	query := h.instances[gateway.ServiceQuery][0]
	query.kill()

	var res response
	for i := 0; ; i++ {
		if i > int(cfg.BreakerFailures) {
			t.Fatalf("still no 503 after %d requests; last %d %s", i, res.status, res.body)
		}
		if res = get(); res.status == http.StatusServiceUnavailable {
			break
		}
		res.problem(t, http.StatusBadGateway)
	}
	attempts := counter.n.Load()
	for range 10 {
		start := time.Now()
		res := get()
		if d := time.Since(start); d > 250*time.Millisecond {
			t.Fatalf("503 took %s: it waited instead of failing fast", d)
		}
		p := res.problem(t, http.StatusServiceUnavailable)
		if p["type"] != "urn:orderflow:problem:upstream-unavailable" {
			t.Fatalf("problem type %v", p["type"])
		}
		if res.header.Get("Retry-After") != "1" {
			t.Fatalf("Retry-After %q, want 1 (the open timeout rounded up)", res.header.Get("Retry-After"))
		}
	}
	if n := counter.n.Load(); n != attempts {
		t.Fatalf("the open breaker let %d attempts through to the dead instance", n-attempts)
	}

	query.restart(t)
	eventually(t, 5*time.Second, "traffic back after the restart", func() bool { return get().status == http.StatusOK })
	for range 5 {
		if res := get(); res.status != http.StatusOK {
			t.Fatalf("after recovery: %d", res.status)
		}
	}
}

// TestDeadInstanceIsRoutedAround kills one of two instances: GETs still
// succeed (a connection error is retried on the other instance) and, once
// the breaker is open, the dead instance is not tried at all.
func TestDeadInstanceIsRoutedAround(t *testing.T) {
	t.Parallel()
	counter := &countingTransport{base: &http.Transport{}}
	cfg := baseConfig()
	cfg.Transport = counter
	cfg.BreakerFailures = 2
	cfg.BreakerOpenTimeout = time.Minute
	h := MustHarness(t, cfg, 2)
	admin := MustToken(t, "ops", gateway.RoleAdmin)
	h.instances[gateway.ServiceQuery][0].kill()
	alive := h.instances[gateway.ServiceQuery][1]
	for i := range 6 {
		if res := h.do(t, http.MethodGet, "/v1/inventory/sku-1", admin, ""); res.status != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, res.status, res.body)
		}
	}
	if n := len(alive.Calls()); n != 6 {
		t.Fatalf("the live instance got %d calls, want all 6", n)
	}
	// 6 requests, 2 failed attempts on the dead instance before its breaker opened.
	if n := counter.n.Load(); n != 8 {
		t.Fatalf("%d attempts, want 6 + 2 before the breaker opened", n)
	}
}

func TestGetRetriedOncePostNever(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.BreakerFailures = 100
	h := MustHarness(t, cfg, 2)
	admin := MustToken(t, "ops", gateway.RoleAdmin)
	unavailable := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusServiceUnavailable)
	}

	sick, well := h.instances[gateway.ServiceQuery][0], h.instances[gateway.ServiceQuery][1]
	sick.setHandler(unavailable)
	for i := range 4 {
		if res := h.do(t, http.MethodGet, "/v1/inventory/sku-1", admin, ""); res.status != http.StatusOK {
			t.Fatalf("GET %d: %d", i, res.status)
		}
	}
	if s, w := len(sick.Calls()), len(well.Calls()); s != 2 || w != 4 {
		t.Fatalf("503ing instance got %d calls and the other %d; want 2 (first pick every other time) and 4", s, w)
	}

	// Both unavailable: one retry, then the upstream's 503 is relayed.
	h.reset()
	well.setHandler(unavailable)
	res := h.do(t, http.MethodGet, "/v1/inventory/sku-1", admin, "")
	if res.status != http.StatusServiceUnavailable || res.header.Get("Retry-After") != "7" {
		t.Fatalf("status %d Retry-After %q, want the upstream's 503", res.status, res.header.Get("Retry-After"))
	}
	if s, w := len(sick.Calls()), len(well.Calls()); s+w != 2 {
		t.Fatalf("%d attempts, want 2 (one retry)", s+w)
	}

	sickCmd, wellCmd := h.instances[gateway.ServiceCommand][0], h.instances[gateway.ServiceCommand][1]
	sickCmd.setHandler(unavailable)
	statuses := map[int]int{}
	for range 2 {
		statuses[h.do(t, http.MethodPost, "/v1/orders", admin, `{"customer_id":"c-1"}`).status]++
	}
	if statuses[http.StatusServiceUnavailable] != 1 || statuses[http.StatusOK] != 1 {
		t.Fatalf("POST statuses %v, want one 503 (not retried) and one 200", statuses)
	}
	if s, w := len(sickCmd.Calls()), len(wellCmd.Calls()); s != 1 || w != 1 {
		t.Fatalf("command instances got %d and %d calls, want 1 and 1", s, w)
	}
}

var traceParent = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)

func TestUpstreamHeaders(t *testing.T) {
	t.Parallel()
	h := MustHarness(t, baseConfig(), 1)
	alice := MustToken(t, "alice", gateway.RoleCustomer)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	res := h.do(t, http.MethodPost, "/v1/orders", alice, `{"customer_id":"alice"}`,
		gateway.ClientHeader, "mallory", gateway.RoleHeader, "admin", gateway.ClientHeader, "eve",
		"X-Orderflow-Anything", "x", "X-Request-Id", "req-123",
		"traceparent", tp, "tracestate", "vendor=1", "Idempotency-Key", "key-1", "X-Forwarded-For", "10.9.9.9")
	if res.status != http.StatusOK {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	if got := res.header.Values("X-Request-Id"); len(got) != 1 || got[0] != "req-123" {
		t.Errorf("response X-Request-Id %v, want [req-123]", got)
	}
	calls := h.callsTo(gateway.ServiceCommand)
	if len(calls) != 1 {
		t.Fatalf("command got %d calls", len(calls))
	}
	up := calls[0].header
	for name, want := range map[string][]string{
		gateway.ClientHeader:   {"alice"},
		gateway.RoleHeader:     {gateway.RoleCustomer},
		"X-Orderflow-Anything": nil,
		"Authorization":        nil,
		"X-Request-Id":         {"req-123"},
		"Traceparent":          {tp},
		"Tracestate":           {"vendor=1"},
		"Idempotency-Key":      {"alice/key-1"},
		"X-Forwarded-For":      {"127.0.0.1"},
	} {
		if got := up.Values(name); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("upstream %s = %q, want %q", name, got, want)
		}
	}

	t.Run("a Connection header cannot strip what the gateway sets", func(t *testing.T) {
		h.reset()
		h.do(t, http.MethodPost, "/v1/orders", alice, `{"customer_id":"alice"}`, "Idempotency-Key", "key-2", "X-Request-Id", "req-456",
			"Connection", "X-Orderflow-Client, X-Orderflow-Role, X-Request-Id, Traceparent, Idempotency-Key")
		up := h.callsTo(gateway.ServiceCommand)[0].header
		if up.Get(gateway.ClientHeader) != "alice" || up.Get(gateway.RoleHeader) != gateway.RoleCustomer || up.Get("X-Request-Id") != "req-456" ||
			!traceParent.MatchString(up.Get("Traceparent")) || up.Get("Idempotency-Key") != "alice/key-2" {
			t.Errorf("upstream headers after a Connection header naming them: %v", up)
		}
	})

	t.Run("trace context and request id made when absent or malformed", func(t *testing.T) {
		for _, sent := range []string{"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"} {
			h.reset()
			var extra []string
			if sent != "" {
				extra = []string{"traceparent", sent, "tracestate", "vendor=1", "X-Request-Id", "bad id with spaces"}
			}
			h.do(t, http.MethodGet, "/v1/inventory/sku-1", alice, "", extra...)
			up := h.callsTo(gateway.ServiceQuery)[0].header
			if got := up.Get("Traceparent"); !traceParent.MatchString(got) || got == sent {
				t.Errorf("sent %q: upstream traceparent %q, want a new valid one", sent, got)
			}
			if up.Get("Tracestate") != "" {
				t.Errorf("sent %q: tracestate kept without its traceparent", sent)
			}
			if id := up.Get("X-Request-Id"); len(id) != 24 {
				t.Errorf("sent %q: upstream X-Request-Id %q, want a generated one", sent, id)
			}
		}
	})

	t.Run("idempotency keys", func(t *testing.T) {
		long := strings.Repeat("k", 250)
		longSum := sha256.Sum256([]byte(long))
		tests := []struct {
			name string
			keys []string
			want string // forwarded key; "" means refused with 400
		}{
			{"plain", []string{"k-1"}, "alice/k-1"},
			{"with slashes", []string{"a/b"}, "alice/a/b"},
			{"too long once scoped", []string{long}, "alice/sha256:" + hex.EncodeToString(longSum[:])},
			{"twice", []string{"k-1", "k-2"}, ""},
			{"with a space", []string{"k 1"}, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h.reset()
				var extra []string
				for _, k := range tt.keys {
					extra = append(extra, "Idempotency-Key", k)
				}
				res := h.do(t, http.MethodPost, "/v1/orders", alice, `{"customer_id":"alice"}`, extra...)
				if tt.want == "" {
					res.problem(t, http.StatusBadRequest)
					if n := len(h.callsTo(gateway.ServiceCommand)); n != 0 {
						t.Fatalf("forwarded a bad key (%d calls)", n)
					}
					return
				}
				got := h.callsTo(gateway.ServiceCommand)[0].header.Values("Idempotency-Key")
				if len(got) != 1 || got[0] != tt.want {
					t.Fatalf("forwarded %q, want %q", got, tt.want)
				}
			})
		}
	})
}
