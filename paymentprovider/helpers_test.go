package paymentprovider_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderflow/orderflow/breaker"
	"github.com/orderflow/orderflow/httpapi"
	"github.com/orderflow/orderflow/paymentprovider"
)

// provider is a simulated provider behind an httptest server that counts
// the /v1 requests reaching it.
type provider struct {
	srv      *paymentprovider.Server
	url      string
	http     *http.Client
	requests atomic.Int64
}

// MustProvider starts a provider with cfg, closed when the test ends. wrap,
// if not nil, sees every request after it is counted.
func MustProvider(tb testing.TB, cfg paymentprovider.Config, wrap func(http.Handler) http.Handler) *provider {
	tb.Helper()
	srv, err := paymentprovider.NewServer(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	p := &provider{srv: srv}
	var h http.Handler = srv.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			p.requests.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	tb.Cleanup(ts.Close)
	p.url, p.http = ts.URL, ts.Client()
	return p
}

var breakerSeq atomic.Int64

// MustClient returns a client of p with a fresh breaker of cfg (its name
// made unique).
func MustClient(tb testing.TB, p *provider, cfg breaker.Config, opts ...paymentprovider.Option) (*paymentprovider.Client, *breaker.Breaker) {
	tb.Helper()
	cfg.Name = fmt.Sprintf("%s-%d", tb.Name(), breakerSeq.Add(1))
	br, err := breaker.New(cfg, nil)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := paymentprovider.NewClient(p.url, p.http, br, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return c, br
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends body (as JSON unless contentType says otherwise) to p.
func (p *provider) do(tb testing.TB, method, path, contentType, body string) response {
	tb.Helper()
	req, err := http.NewRequest(method, p.url+path, bytes.NewBufferString(body))
	if err != nil {
		tb.Fatal(err)
	}
	if contentType == "" {
		contentType = "application/json"
	}
	req.Header.Set("Content-Type", contentType)
	res, err := p.http.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// decode unmarshals r's body into v, failing the test if r is not status.
func (r response) decode(tb testing.TB, status int, v any) {
	tb.Helper()
	if r.status != status {
		tb.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	if v == nil {
		return
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		tb.Fatalf("decode %s: %v", r.body, err)
	}
}

// problem checks that r is a problem+json answer with status.
func (r response) problem(tb testing.TB, status int) httpapi.Problem {
	tb.Helper()
	if got := r.header.Get("Content-Type"); got != httpapi.ProblemContentType {
		tb.Fatalf("Content-Type = %q, want %q; body %s", got, httpapi.ProblemContentType, r.body)
	}
	var p httpapi.Problem
	r.decode(tb, status, &p)
	if p.Status != status || p.Type == "" || p.Title == "" {
		tb.Fatalf("problem = %+v, want status %d with type and title", p, status)
	}
	return p
}

// eventually waits until cond holds, failing the test after timeout.
func eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}
