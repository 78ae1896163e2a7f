package command_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/api/apitest"
	"github.com/orderflow/orderflow/command"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/httpapi"
	"github.com/orderflow/orderflow/internal/dbtest"
)

// apiClient drives the command API on a fresh database and checks every
// response against the OpenAPI document.
type apiClient struct {
	t    *testing.T
	url  string
	http *http.Client // the server's own: another test's server closing does not break it
	pool *pgxpool.Pool
	spec *apitest.Validator
}

func MustAPI(t *testing.T) *apiClient {
	t.Helper()
	pool := dbtest.MustPool(t)
	store, err := eventstore.New(pool, eventstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	logger := slog.New(slog.DiscardHandler)
	a, err := command.NewAPI(store, command.Config{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	r := httpapi.NewRouter(logger, nil)
	r.Method(http.MethodGet, "/openapi.json", api.Handler())
	a.Mount(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return &apiClient{t: t, url: srv.URL, http: srv.Client(), pool: pool, spec: apitest.MustValidator(t)}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// do sends a request; headers alternate name, value.
func (c *apiClient) do(method, path, contentType string, body []byte, headers ...string) response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	res, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	c.spec.CheckResponse(c.t, method, path, res.StatusCode, res.Header, b)
	return response{status: res.StatusCode, header: res.Header, body: b}
}

func (c *apiClient) postJSON(path, body string, headers ...string) response {
	c.t.Helper()
	return c.do(http.MethodPost, path, "application/json", []byte(body), headers...)
}

func (c *apiClient) events() int {
	c.t.Helper()
	var n int
	if err := c.pool.QueryRow(context.Background(), "select count(*) from events").Scan(&n); err != nil {
		c.t.Fatal(err)
	}
	return n
}

func (c *apiClient) placeOrder(body string) command.OrderAccepted {
	c.t.Helper()
	res := c.postJSON("/v1/orders", body)
	if res.status != http.StatusCreated {
		c.t.Fatalf("POST /v1/orders: %d %s", res.status, res.body)
	}
	var acc command.OrderAccepted
	res.decode(c.t, &acc)
	return acc
}

const validOrder = `{"customer_id":"c-1","lines":[{"sku":"SKU-1","quantity":2,"unit_price_cents":1999}]}`

func TestPlaceOrderThenReadAuditTrail(t *testing.T) {
	t.Parallel()
	c := MustAPI(t)
	res := c.postJSON("/v1/orders", validOrder, "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "X-Request-Id", "req-123")
	if res.status != http.StatusCreated {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	var acc command.OrderAccepted
	res.decode(t, &acc)
	if acc.Version != 1 || acc.StreamID != "order-"+acc.OrderID || res.header.Get("Location") != "/v1/orders/"+acc.OrderID {
		t.Fatalf("accepted = %+v, Location %q", acc, res.header.Get("Location"))
	}

	trail := c.do(http.MethodGet, "/v1/streams/"+acc.StreamID+"/events", "", nil)
	if trail.status != http.StatusOK {
		t.Fatalf("audit trail: %d %s", trail.status, trail.body)
	}
	var page command.StreamEvents
	trail.decode(t, &page)
	if len(page.Events) != 1 || page.NextFrom != nil {
		t.Fatalf("audit trail = %s", trail.body)
	}
	e := page.Events[0]
	var data struct {
		OrderID    string `json:"order_id"`
		CustomerID string `json:"customer_id"`
		TotalCents int64  `json:"total_cents"`
	}
	if err := json.Unmarshal(e.Data, &data); err != nil {
		t.Fatal(err)
	}
	if e.Type != "OrderPlaced" || e.Version != 1 || data.OrderID != acc.OrderID || data.CustomerID != "c-1" || data.TotalCents != 3998 {
		t.Fatalf("event = %+v data %+v", e, data)
	}
	if e.Metadata.CorrelationID != "req-123" || e.Metadata.TraceParent != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Fatalf("metadata = %+v", e.Metadata)
	}

	cancel := c.postJSON("/v1/orders/"+acc.OrderID+"/cancel", `{"reason":"changed my mind"}`)
	if cancel.status != http.StatusOK {
		t.Fatalf("cancel: %d %s", cancel.status, cancel.body)
	}
	var cacc command.OrderAccepted
	cancel.decode(t, &cacc)
	if cacc.Version != 2 || cacc.OrderID != acc.OrderID {
		t.Fatalf("cancel accepted = %+v", cacc)
	}
	// Paging: one event per page.
	first := c.do(http.MethodGet, "/v1/streams/"+acc.StreamID+"/events?limit=1", "", nil)
	first.decode(t, &page)
	if len(page.Events) != 1 || page.NextFrom == nil || *page.NextFrom != 2 {
		t.Fatalf("first page = %s", first.body)
	}
	second := c.do(http.MethodGet, fmt.Sprintf("/v1/streams/%s/events?from=%d&limit=1", acc.StreamID, *page.NextFrom), "", nil)
	second.decode(t, &page)
	if len(page.Events) != 1 || page.Events[0].Type != "OrderCancelled" || page.NextFrom != nil {
		t.Fatalf("second page = %s", second.body)
	}

	stock := c.postJSON("/v1/inventory/SKU-1/stock", `{"quantity":5}`)
	var sacc command.StockAccepted
	stock.decode(t, &sacc)
	if stock.status != http.StatusOK || sacc.SKU != "SKU-1" || sacc.StreamID != "sku-SKU-1" || sacc.Version != 1 {
		t.Fatalf("add stock: %d %s", stock.status, stock.body)
	}
	if spec := c.do(http.MethodGet, "/openapi.json", "", nil); spec.status != http.StatusOK || !bytes.Equal(spec.body, api.OpenAPI()) {
		t.Fatalf("/openapi.json: %d", spec.status)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	c := MustAPI(t)
	order := c.placeOrder(validOrder)
	cancelled := c.placeOrder(validOrder)
	if res := c.postJSON("/v1/orders/"+cancelled.OrderID+"/cancel", ""); res.status != http.StatusOK {
		t.Fatalf("cancel: %d %s", res.status, res.body)
	}
	lines := func(n int, sameSKU bool) string {
		parts := make([]string, n)
		for i := range parts {
			sku := fmt.Sprintf("SKU-%d", i)
			if sameSKU {
				sku = "SKU-1"
			}
			parts[i] = fmt.Sprintf(`{"sku":%q,"quantity":1,"unit_price_cents":1}`, sku)
		}
		return `{"customer_id":"c-1","lines":[` + strings.Join(parts, ",") + `]}`
	}
	huge := `{"customer_id":"` + strings.Repeat("x", httpapi.MaxBodyBytes) + `","lines":[]}`

	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		headers     []string
		status      int
		field       string // a field the problem must name, if any
	}{
		{"malformed JSON", "POST", "/v1/orders", "application/json", `{"customer_id":`, nil, 400, ""},
		{"not an object", "POST", "/v1/orders", "application/json", `[1,2]`, nil, 400, ""},
		{"empty body", "POST", "/v1/orders", "application/json", ``, nil, 400, ""},
		{"trailing data", "POST", "/v1/orders", "application/json", validOrder + `{}`, nil, 400, ""},
		{"unknown field", "POST", "/v1/orders", "application/json", `{"customer_id":"c-1","lines":[],"coupon":"X"}`, nil, 400, "coupon"},
		{"unknown line field", "POST", "/v1/orders", "application/json", `{"customer_id":"c-1","lines":[{"sku":"A","quantity":1,"unit_price_cents":1,"color":"red"}]}`, nil, 400, "color"},
		{"wrong type", "POST", "/v1/orders", "application/json", `{"customer_id":"c-1","lines":[{"sku":"A","quantity":"2","unit_price_cents":1}]}`, nil, 400, "lines.quantity"},
		{"float quantity", "POST", "/v1/orders", "application/json", `{"customer_id":"c-1","lines":[{"sku":"A","quantity":1.5,"unit_price_cents":1}]}`, nil, 400, "lines.quantity"},
		{"customer id not a string", "POST", "/v1/orders", "application/json", `{"customer_id":7,"lines":[]}`, nil, 400, "customer_id"},
		{"missing customer", "POST", "/v1/orders", "application/json", `{"lines":[{"sku":"A","quantity":1,"unit_price_cents":1}]}`, nil, 400, "customer_id"},
		{"missing lines", "POST", "/v1/orders", "application/json", `{"customer_id":"c-1"}`, nil, 400, "lines"},
		{"null lines", "POST", "/v1/orders", "application/json", `{"customer_id":"c-1","lines":null}`, nil, 400, "lines"},
		{"missing price", "POST", "/v1/orders", "application/json", `{"customer_id":"c-1","lines":[{"sku":"A","quantity":1}]}`, nil, 400, "lines[0].unit_price_cents"},
		{"no lines", "POST", "/v1/orders", "application/json", `{"customer_id":"c-1","lines":[]}`, nil, 400, "lines"},
		{"zero quantity", "POST", "/v1/orders", "application/json", `{"customer_id":"c-1","lines":[{"sku":"A","quantity":0,"unit_price_cents":1}]}`, nil, 400, "lines[0].quantity"},
		{"negative quantity", "POST", "/v1/orders", "application/json", `{"customer_id":"c-1","lines":[{"sku":"A","quantity":-1,"unit_price_cents":1}]}`, nil, 400, "lines[0].quantity"},
		{"negative price", "POST", "/v1/orders", "application/json", `{"customer_id":"c-1","lines":[{"sku":"A","quantity":1,"unit_price_cents":-5}]}`, nil, 400, "lines[0].unit_price_cents"},
		{"quantity overflows int64", "POST", "/v1/orders", "application/json", `{"customer_id":"c-1","lines":[{"sku":"A","quantity":99999999999999999999,"unit_price_cents":1}]}`, nil, 400, "lines.quantity"},
		{"bad sku", "POST", "/v1/orders", "application/json", `{"customer_id":"c-1","lines":[{"sku":"no spaces","quantity":1,"unit_price_cents":1}]}`, nil, 400, "lines[0].sku"},
		{"too many lines", "POST", "/v1/orders", "application/json", lines(51, false), nil, 400, "lines"},
		{"duplicate SKUs", "POST", "/v1/orders", "application/json", lines(2, true), nil, 400, "lines[1].sku"},
		{"oversized body", "POST", "/v1/orders", "application/json", huge, nil, 413, ""},
		{"wrong content type", "POST", "/v1/orders", "text/plain", validOrder, nil, 415, ""},
		{"form content type", "POST", "/v1/orders", "application/x-www-form-urlencoded", validOrder, nil, 415, ""},
		{"no content type", "POST", "/v1/orders", "", validOrder, nil, 415, ""},
		{"latin-1 charset", "POST", "/v1/orders", "application/json; charset=iso-8859-1", validOrder, nil, 415, ""},
		{"bad idempotency key", "POST", "/v1/orders", "application/json", validOrder, []string{"Idempotency-Key", ""}, 400, "Idempotency-Key"},
		{"two idempotency keys", "POST", "/v1/orders", "application/json", validOrder, []string{"Idempotency-Key", "a", "Idempotency-Key", "b"}, 400, "Idempotency-Key"},
		{"cancel: bad id", "POST", "/v1/orders/42/cancel", "application/json", `{}`, nil, 400, "id"},
		{"cancel: unknown order", "POST", "/v1/orders/0190f2a4-7c1e-7b6e-9d51-3f0c2a9b8e11/cancel", "application/json", `{}`, nil, 404, ""},
		{"cancel: cancelled order", "POST", "/v1/orders/" + cancelled.OrderID + "/cancel", "application/json", `{}`, nil, 409, ""},
		{"cancel: unknown field", "POST", "/v1/orders/" + order.OrderID + "/cancel", "application/json", `{"why":"x"}`, nil, 400, "why"},
		{"cancel: reason too long", "POST", "/v1/orders/" + order.OrderID + "/cancel", "application/json", `{"reason":"` + strings.Repeat("x", 501) + `"}`, nil, 400, "reason"},
		{"cancel: NUL in reason", "POST", "/v1/orders/" + order.OrderID + "/cancel", "application/json", `{"reason":"a\u0000b"}`, nil, 400, "reason"},
		{"cancel: wrong content type", "POST", "/v1/orders/" + order.OrderID + "/cancel", "text/plain", `{}`, nil, 415, ""},
		{"stock: zero", "POST", "/v1/inventory/SKU-1/stock", "application/json", `{"quantity":0}`, nil, 400, "quantity"},
		{"stock: negative", "POST", "/v1/inventory/SKU-1/stock", "application/json", `{"quantity":-4}`, nil, 400, "quantity"},
		{"stock: missing quantity", "POST", "/v1/inventory/SKU-1/stock", "application/json", `{}`, nil, 400, "quantity"},
		{"stock: bad sku", "POST", "/v1/inventory/bad%20sku/stock", "application/json", `{"quantity":1}`, nil, 400, "sku"},
		{"stock: string quantity", "POST", "/v1/inventory/SKU-1/stock", "application/json", `{"quantity":"1"}`, nil, 400, "quantity"},
		{"events: unknown stream", "GET", "/v1/streams/order-nope/events", "", ``, nil, 404, ""},
		{"events: bad stream id", "GET", "/v1/streams/nodash/events", "", ``, nil, 400, "id"},
		{"events: NUL in stream id", "GET", "/v1/streams/order-%00/events", "", ``, nil, 400, "id"},
		{"events: invalid UTF-8 in stream id", "GET", "/v1/streams/order-%FF/events", "", ``, nil, 400, "id"},
		{"events: bad limit", "GET", "/v1/streams/" + order.StreamID + "/events?limit=0", "", ``, nil, 400, "limit"},
		{"events: limit too large", "GET", "/v1/streams/" + order.StreamID + "/events?limit=1001", "", ``, nil, 400, "limit"},
		{"events: bad from", "GET", "/v1/streams/" + order.StreamID + "/events?from=x", "", ``, nil, 400, "from"},
	}
	before := c.events()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := c.do(tt.method, tt.path, tt.contentType, []byte(tt.body), tt.headers...)
			if res.status != tt.status {
				t.Fatalf("status %d, want %d: %s", res.status, tt.status, res.body)
			}
			if ct := res.header.Get("Content-Type"); ct != httpapi.ProblemContentType {
				t.Fatalf("Content-Type %q, want %q", ct, httpapi.ProblemContentType)
			}
			var p httpapi.Problem
			res.decode(t, &p)
			if p.Status != tt.status || p.Title == "" || p.Type == "" {
				t.Fatalf("problem = %+v", p)
			}
			if tt.field != "" {
				found := false
				for _, f := range p.Errors {
					found = found || f.Field == tt.field
				}
				if !found {
					t.Fatalf("problem does not name field %q: %s", tt.field, res.body)
				}
			}
		})
	}
	if after := c.events(); after != before {
		t.Fatalf("bad input wrote %d events", after-before)
	}
}

func TestConcurrentCancelsOneWinsOverHTTP(t *testing.T) {
	t.Parallel()
	c := MustAPI(t)
	order := c.placeOrder(validOrder)
	const n = 16
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			req, _ := http.NewRequest(http.MethodPost, c.url+"/v1/orders/"+order.OrderID+"/cancel", nil)
			res, err := c.http.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			statuses <- res.StatusCode
		})
	}
	close(start)
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for s := range statuses {
		count[s]++
	}
	if count[http.StatusOK] != 1 || count[http.StatusConflict] != n-1 {
		t.Fatalf("statuses %v; want one 200 and %d 409", count, n-1)
	}
	if got := c.events(); got != 2 {
		t.Fatalf("%d events; want 2 (placed, cancelled)", got)
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	c := MustAPI(t)
	first := c.postJSON("/v1/orders", validOrder, "Idempotency-Key", "key-1")
	// The same order with other whitespace and key order is the same request.
	same := `{ "lines": [{"unit_price_cents":1999, "quantity":2, "sku":"SKU-1"}], "customer_id": "c-1" }`
	second := c.postJSON("/v1/orders", same, "Idempotency-Key", "key-1")
	if first.status != http.StatusCreated || second.status != http.StatusCreated || !bytes.Equal(first.body, second.body) {
		t.Fatalf("retry answered %d %s; first was %d %s", second.status, second.body, first.status, first.body)
	}
	if n := c.events(); n != 1 {
		t.Fatalf("%d events after a retried order; want 1", n)
	}
	other := c.postJSON("/v1/orders", `{"customer_id":"c-2","lines":[{"sku":"SKU-1","quantity":2,"unit_price_cents":1999}]}`, "Idempotency-Key", "key-1")
	if other.status != http.StatusUnprocessableEntity {
		t.Fatalf("same key, other body: %d %s; want 422", other.status, other.body)
	}
	// The key of an order cannot be reused for a stock addition either.
	if res := c.postJSON("/v1/inventory/SKU-1/stock", `{"quantity":1}`, "Idempotency-Key", "key-1"); res.status != http.StatusUnprocessableEntity {
		t.Fatalf("same key on another endpoint: %d %s; want 422", res.status, res.body)
	}
	if n := c.events(); n != 1 {
		t.Fatalf("%d events after refused reuses; want 1", n)
	}

	// A cancel retried after it succeeded answers as the first time, not 409.
	var acc command.OrderAccepted
	first.decode(t, &acc)
	c1 := c.postJSON("/v1/orders/"+acc.OrderID+"/cancel", `{"reason":"r"}`, "Idempotency-Key", "cancel-1")
	c2 := c.postJSON("/v1/orders/"+acc.OrderID+"/cancel", `{"reason":"r"}`, "Idempotency-Key", "cancel-1")
	if c1.status != http.StatusOK || c2.status != http.StatusOK || !bytes.Equal(c1.body, c2.body) {
		t.Fatalf("retried cancel: %d %s then %d %s", c1.status, c1.body, c2.status, c2.body)
	}

	// Concurrent retries of one new request: one order, every answer the same.
	const n = 12
	bodies := make(chan []byte, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, c.url+"/v1/orders", strings.NewReader(validOrder))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "key-concurrent")
			res, err := c.http.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != http.StatusCreated {
				t.Errorf("concurrent retry: %d %s", res.StatusCode, b)
			}
			bodies <- b
		})
	}
	wg.Wait()
	close(bodies)
	var want []byte
	for b := range bodies {
		if want == nil {
			want = b
		}
		if !bytes.Equal(b, want) {
			t.Fatalf("concurrent retries answered differently: %s vs %s", b, want)
		}
	}
	if got := c.events(); got != 3 {
		t.Fatalf("%d events; want 3 (order, cancel, one concurrent order)", got)
	}
}

// A small body cannot ask for a huge answer: the lines past the most an
// order may hold are not looked at, only counted. And a tracestate is
// recorded only within W3C's bounds: it goes into every event for good.
func TestRequestsCannotBloatAnswersOrEvents(t *testing.T) {
	t.Parallel()
	c := MustAPI(t)
	empty := `{"customer_id":"c-1","lines":[` + strings.TrimSuffix(strings.Repeat("{},", 5000), ",") + `]}`
	res := c.postJSON("/v1/orders", empty)
	if res.status != http.StatusBadRequest || len(res.body) > 32<<10 || !strings.Contains(string(res.body), "at most 50 lines, got 5000") {
		t.Fatalf("5,000 empty lines: %d, %d bytes of answer; want a 400 that says the count, under 32 KiB", res.status, len(res.body))
	}

	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		state, want string
	}{{"vendor=abc", "vendor=abc"}, {"vendor=" + strings.Repeat("x", 1000), ""}} {
		res := c.postJSON("/v1/orders", validOrder, "traceparent", tp, "tracestate", tc.state)
		var acc command.OrderAccepted
		res.decode(t, &acc)
		var page command.StreamEvents
		c.do(http.MethodGet, "/v1/streams/"+acc.StreamID+"/events", "", nil).decode(t, &page)
		if len(page.Events) != 1 || page.Events[0].Metadata.TraceParent != tp || page.Events[0].Metadata.TraceState != tc.want {
			t.Fatalf("tracestate of %d characters: metadata %+v, want tracestate %q", len(tc.state), page.Events, tc.want)
		}
	}
}
