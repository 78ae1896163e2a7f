package gateway_test

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/gateway"
	"github.com/orderflow/orderflow/httpapi"
)

func TestRateLimitPerClient(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.PerClientRate, cfg.PerClientBurst = 0.5, 2 // a token every 2s
	h := MustHarness(t, cfg, 1)
	alice := MustToken(t, "alice", gateway.RoleCustomer)
	for i := range 2 {
		if res := h.do(t, http.MethodGet, "/v1/inventory/sku-1", alice, ""); res.status != http.StatusOK {
			t.Fatalf("request %d: status %d", i, res.status)
		}
	}
	res := h.do(t, http.MethodGet, "/v1/inventory/sku-1", alice, "")
	p := res.problem(t, http.StatusTooManyRequests)
	if p["type"] != "urn:orderflow:problem:rate-limited" {
		t.Errorf("problem type %v", p["type"])
	}
	secs, err := strconv.Atoi(res.header.Get("Retry-After"))
	if err != nil || secs < 1 || secs > 2 {
		t.Fatalf("Retry-After %q, want 1 or 2 seconds", res.header.Get("Retry-After"))
	}
	if n := len(h.callsTo(gateway.ServiceQuery)); n != 2 {
		t.Fatalf("upstream got %d calls, want the 2 admitted", n)
	}
	// Another client has its own bucket.
	if res := h.do(t, http.MethodGet, "/v1/inventory/sku-1", MustToken(t, "bob", gateway.RoleCustomer), ""); res.status != http.StatusOK {
		t.Fatalf("bob: status %d", res.status)
	}
	// Without a valid token the remote address is the client.
	for range 2 {
		h.do(t, http.MethodGet, "/v1/inventory/sku-1", "bogus", "").problem(t, http.StatusUnauthorized)
	}
	res = h.do(t, http.MethodGet, "/v1/inventory/sku-1", "bogus", "")
	res.problem(t, http.StatusTooManyRequests)
	if res.header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	metrics := h.do(t, http.MethodGet, "/metrics", "", "").body
	if want := `orderflow_gateway_rate_limited_total{limit="client"} 2`; !strings.Contains(metrics, want) {
		t.Errorf("metrics lack %s", want)
	}
}

func TestRateLimitGlobal(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.GlobalRate, cfg.GlobalBurst = 0.1, 1
	h := MustHarness(t, cfg, 1)
	if res := h.do(t, http.MethodGet, "/v1/inventory/sku-1", MustToken(t, "alice", gateway.RoleCustomer), ""); res.status != http.StatusOK {
		t.Fatalf("status %d", res.status)
	}
	res := h.do(t, http.MethodGet, "/v1/inventory/sku-1", MustToken(t, "bob", gateway.RoleCustomer), "")
	res.problem(t, http.StatusTooManyRequests)
	if got := res.header.Get("Retry-After"); got != "10" {
		t.Fatalf("Retry-After %q, want 10 (one token per 10s)", got)
	}
	// The gateway's own endpoints are not limited.
	if res := h.do(t, http.MethodGet, "/healthz", "", ""); res.status != http.StatusOK {
		t.Fatalf("healthz %d", res.status)
	}
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.MaxBodyBytes = 1 << 10
	h := MustHarness(t, cfg, 1)
	admin := MustToken(t, "ops", gateway.RoleAdmin)
	big := `{"customer_id":"c-1","pad":"` + strings.Repeat("x", 2<<10) + `"}`

	h.do(t, http.MethodPost, "/v1/orders", admin, big).problem(t, http.StatusRequestEntityTooLarge)

	// Without Content-Length (chunked) the bound holds while reading.
	req, err := http.NewRequest(http.MethodPost, h.url+"/v1/orders", io.MultiReader(strings.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+admin)
	if req.ContentLength != 0 {
		t.Fatalf("request has a Content-Length %d; the test needs a chunked one", req.ContentLength)
	}
	h.send(t, req).problem(t, http.StatusRequestEntityTooLarge)
	if n := len(h.callsTo(gateway.ServiceCommand)); n != 0 {
		t.Fatalf("command got %d calls for bodies too large", n)
	}

	fits := `{"customer_id":"c-1","pad":"` + strings.Repeat("x", 1<<10-len(`{"customer_id":"c-1","pad":""}`)) + `"}`
	if len(fits) != 1<<10 {
		t.Fatalf("body of %d bytes", len(fits))
	}
	if res := h.do(t, http.MethodPost, "/v1/orders", admin, fits); res.status != http.StatusOK {
		t.Fatalf("a body of exactly the limit: %d %s", res.status, res.body)
	}
	if calls := h.callsTo(gateway.ServiceCommand); len(calls) != 1 || calls[0].body != fits {
		t.Fatalf("command got %+v", calls)
	}
}

func TestRequestTimeout(t *testing.T) {
	cfg := baseConfig()
	cfg.RequestTimeout = 200 * time.Millisecond
	h := MustHarness(t, cfg, 1)
	h.instances[gateway.ServiceQuery][0].setHandler(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	start := time.Now()
	p := h.do(t, http.MethodGet, "/v1/inventory/sku-1", MustToken(t, "ops", gateway.RoleAdmin), "").problem(t, http.StatusGatewayTimeout)
	if p["type"] != "urn:orderflow:problem:upstream-timeout" {
		t.Errorf("problem type %v", p["type"])
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("504 after %s, want about the 200ms timeout", d)
	}
}

// TestHeaderTrickleIsCut sends request headers one byte every 100ms; the
// server's ReadHeaderTimeout must close the connection.
func TestHeaderTrickleIsCut(t *testing.T) {
	gw := MustGateway(t, baseConfig(), gateway.StaticResolver{})
	srv := httpapi.NewServer(httpapi.ServerConfig{ReadHeaderTimeout: 300 * time.Millisecond}, gw.Handler(), slog.New(slog.DiscardHandler))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	request := "GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Slow: " + strings.Repeat("y", 40) + "\r\n\r\n"
	stop := make(chan struct{})
	defer close(stop)
	sent := make(chan int, 1)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		n := 0
		defer func() { sent <- n }()
		for ; n < len(request); n++ {
			if _, err := conn.Write([]byte{request[n]}); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(conn)
	elapsed := time.Since(start)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %s", elapsed)
	}
	if elapsed > 1200*time.Millisecond {
		t.Fatalf("connection closed after %s, want about the 300ms ReadHeaderTimeout", elapsed)
	}
	if strings.HasPrefix(string(got), "HTTP/1.1 200") {
		t.Fatalf("the trickled request was served: %q", got)
	}
	_ = conn.Close()
	if n := <-sent; n >= len(request) {
		t.Fatalf("all %d bytes were sent before the cut", n)
	}
}
