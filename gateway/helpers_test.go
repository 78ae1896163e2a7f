package gateway_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/api/apitest"
	"github.com/orderflow/orderflow/gateway"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef-test")

const (
	testIssuer   = "orderflow-test"
	testAudience = "orderflow-api"
)

// baseConfig is a valid gateway config with limits out of the way.
func baseConfig() gateway.Config {
	return gateway.Config{
		JWTSecret:      testSecret,
		Issuer:         testIssuer,
		Audience:       testAudience,
		PerClientRate:  float64(rate.Inf),
		GlobalRate:     float64(rate.Inf),
		RequestTimeout: 5 * time.Second,
	}
}

// call is one request an upstream fake received.
type call struct {
	instance string
	method   string
	path     string
	query    string
	header   http.Header
	body     string
}

// upstream is a fake instance of a service that records every request and
// answers with handle, or with 200 and its own name. Its server can be
// killed and restarted on the same address.
type upstream struct {
	service, name string

	mu     sync.Mutex
	calls  []call
	handle func(w http.ResponseWriter, r *http.Request)
	srv    *httptest.Server
	addr   string
}

func (u *upstream) URL() string { return "http://" + u.addr }

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.calls = append(u.calls, call{instance: u.name, method: r.Method, path: r.URL.Path, query: r.URL.RawQuery,
		header: r.Header.Clone(), body: string(body)})
	handle := u.handle
	u.mu.Unlock()
	if handle != nil {
		handle(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"service": u.service, "instance": u.name})
}

// setHandler makes h answer every later request.
func (u *upstream) setHandler(h func(w http.ResponseWriter, r *http.Request)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.handle = h
}

// Calls returns the requests received so far.
func (u *upstream) Calls() []call {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]call(nil), u.calls...)
}

func (u *upstream) reset() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.calls = nil
}

// kill closes the server: its address refuses connections.
func (u *upstream) kill() { u.srv.Close() }

// restart serves again on the address the killed server had.
func (u *upstream) restart(tb testing.TB) {
	tb.Helper()
	ln, err := net.Listen("tcp", u.addr)
	if err != nil {
		tb.Fatalf("listen again on %s: %v", u.addr, err)
	}
	srv := httptest.NewUnstartedServer(u)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	u.srv = srv
	tb.Cleanup(srv.Close)
}

// MustUpstream starts a fake instance, closed when the test ends.
func MustUpstream(tb testing.TB, service, name string) *upstream {
	tb.Helper()
	u := &upstream{service: service, name: name}
	u.srv = httptest.NewServer(u)
	u.addr = u.srv.Listener.Addr().String()
	tb.Cleanup(u.srv.Close)
	return u
}

// harness is a gateway in front of fake instances of every service.
type harness struct {
	gw        *gateway.Gateway
	url       string
	client    *http.Client
	instances map[string][]*upstream
	orders    *sync.Map // order id → customer id, served by the query fakes
}

// MustHarness starts n fake instances of each service and a gateway with cfg
// in front of them. The query fakes answer GET /v1/orders/{id} from
// h.orders.
func MustHarness(tb testing.TB, cfg gateway.Config, n int) *harness {
	tb.Helper()
	h := &harness{instances: map[string][]*upstream{}, orders: &sync.Map{}}
	static := gateway.StaticResolver{}
	for _, svc := range []string{gateway.ServiceCommand, gateway.ServiceQuery, gateway.ServiceProjector} {
		for i := range n {
			u := MustUpstream(tb, svc, svc+"-"+string(rune('a'+i)))
			if svc == gateway.ServiceQuery {
				u.setHandler(h.queryFake(u))
			}
			h.instances[svc] = append(h.instances[svc], u)
			static[svc] = append(static[svc], u.URL())
		}
	}
	h.gw = MustGateway(tb, cfg, static)
	srv := httptest.NewServer(h.gw.Handler())
	tb.Cleanup(srv.Close)
	h.url, h.client = srv.URL, srv.Client()
	return h
}

// MustGateway builds a gateway, failing the test on error.
func MustGateway(tb testing.TB, cfg gateway.Config, r gateway.Resolver) *gateway.Gateway {
	tb.Helper()
	gw, err := gateway.New(cfg, r, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	return gw
}

// queryFake answers an order by id from h.orders (404 problem when absent)
// and anything else with the instance's name.
func (h *harness) queryFake(u *upstream) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		if id, ok := strings.CutPrefix(r.URL.Path, "/v1/orders/"); ok && r.Method == http.MethodGet && !strings.Contains(id, "/") {
			customer, ok := h.orders.Load(id)
			if !ok {
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusNotFound)
				_, _ = io.WriteString(w, `{"type":"urn:orderflow:problem:not-found","title":"Not found","status":404}`)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"order_id": id, "customer_id": customer, "status": "pending", "instance": u.name})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"service": u.service, "instance": u.name})
	}
}

// reset forgets every call the fakes recorded.
func (h *harness) reset() {
	for _, us := range h.instances {
		for _, u := range us {
			u.reset()
		}
	}
}

// callsTo returns the calls every instance of service received.
func (h *harness) callsTo(service string) []call {
	var out []call
	for _, u := range h.instances[service] {
		out = append(out, u.Calls()...)
	}
	return out
}

// response is what the gateway answered.
type response struct {
	status int
	header http.Header
	body   string
}

// problem decodes a problem+json body, failing the test when the response
// is not one with want status.
func (r response) problem(tb testing.TB, want int) map[string]any {
	tb.Helper()
	if r.status != want {
		tb.Fatalf("status %d, want %d; body %s", r.status, want, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		tb.Fatalf("Content-Type %q, want application/problem+json; body %s", ct, r.body)
	}
	var p map[string]any
	if err := json.Unmarshal([]byte(r.body), &p); err != nil {
		tb.Fatalf("problem body %q: %v", r.body, err)
	}
	if int(p["status"].(float64)) != want {
		tb.Fatalf("problem status %v, want %d", p["status"], want)
	}
	return p
}

// do sends a request with the token (none when empty) and extra headers.
func (h *harness) do(tb testing.TB, method, path, token, body string, headers ...string) response {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	return h.send(tb, req)
}

func (h *harness) send(tb testing.TB, req *http.Request) response {
	tb.Helper()
	res, err := h.client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	checkContract(tb, req, res.StatusCode, res.Header, b)
	return response{status: res.StatusCode, header: res.Header, body: string(b)}
}

// gatewayStatuses are the answers the gateway gives itself, without an
// upstream's say.
var gatewayStatuses = []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusRequestEntityTooLarge,
	http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}

// checkContract holds the gateway's own answers (problems with one of
// gatewayStatuses) on the API's documented operations to the OpenAPI
// document, as the roles' tests do theirs. Answers the fake upstreams give
// and paths the document does not have are not the contract's.
func checkContract(tb testing.TB, req *http.Request, status int, header http.Header, body []byte) {
	tb.Helper()
	if !slices.Contains(gatewayStatuses, status) || !strings.HasPrefix(header.Get("Content-Type"), "application/problem+json") ||
		!contract.Documents(req.Method, req.URL.RequestURI()) {
		return
	}
	contract.CheckResponse(tb, req.Method, req.URL.RequestURI(), status, header, body)
}

// contract is the OpenAPI document's validator, loaded once.
var contract = func() *apitest.Validator {
	v, err := apitest.NewValidator(api.OpenAPI())
	if err != nil {
		panic(err)
	}
	return v
}()

// MustToken mints a valid token for subject with role.
func MustToken(tb testing.TB, subject, role string) string {
	tb.Helper()
	tok, err := gateway.MintToken(testSecret, testIssuer, testAudience, subject, role, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// countingTransport counts the round trips the gateway attempts.
type countingTransport struct {
	base http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

// eventually polls cond until it holds, failing after limit.
func eventually(tb testing.TB, limit time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %s", what, limit)
		}
		<-tick.C
	}
}

// newRequest is a request to a gateway handler with token (none when empty).
func newRequest(method, path, token string) *http.Request {
	req := httptest.NewRequest(method, path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

// serve runs one request through gw's handler in process.
func serve(gw *gateway.Gateway, method, path string) *httptest.ResponseRecorder {
	return serveRequest(gw, newRequest(method, path, ""))
}

func serveRequest(gw *gateway.Gateway, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	gw.Handler().ServeHTTP(rec, req)
	return rec
}
