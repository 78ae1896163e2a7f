package query_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/api/apitest"
	"github.com/orderflow/orderflow/httpapi"
	"github.com/orderflow/orderflow/internal/dbtest"
	"github.com/orderflow/orderflow/query"
)

// apiClient drives the query API on a fresh database and checks every
// response against the OpenAPI document.
type apiClient struct {
	t    *testing.T
	url  string
	http *http.Client // the server's own: another test's server closing does not break it
	pool *pgxpool.Pool
	spec *apitest.Validator
}

// MustAPI serves the query API with cfg over a fresh migrated database.
func MustAPI(t *testing.T, cfg query.Config) *apiClient {
	t.Helper()
	pool := dbtest.MustPool(t)
	logger := slog.New(slog.DiscardHandler)
	a, err := query.NewAPI(pool, cfg, logger)
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
	status  int
	header  http.Header
	body    []byte
	elapsed time.Duration
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// get sends GET path; headers alternate name, value.
func (c *apiClient) get(path string, headers ...string) response {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.url+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	start := time.Now()
	res, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	c.spec.CheckResponse(c.t, http.MethodGet, path, res.StatusCode, res.Header, b)
	return response{status: res.StatusCode, header: res.Header, body: b, elapsed: time.Since(start)}
}

// mustOK gets path and fails unless the answer is a 200 with an ETag and
// Cache-Control: no-cache.
func (c *apiClient) mustOK(path string, headers ...string) response {
	c.t.Helper()
	res := c.get(path, headers...)
	if res.status != http.StatusOK {
		c.t.Fatalf("GET %s: %d %s", path, res.status, res.body)
	}
	if res.header.Get("ETag") == "" || res.header.Get("Cache-Control") != "no-cache" {
		c.t.Fatalf("GET %s: ETag %q, Cache-Control %q", path, res.header.Get("ETag"), res.header.Get("Cache-Control"))
	}
	return res
}

// stmt is one SQL statement of a fixture.
type stmt struct {
	sql  string
	args []any
}

func sql(q string, args ...any) stmt { return stmt{sql: q, args: args} }

// run executes the statements, failing the test on the first error.
func (c *apiClient) run(stmts ...stmt) {
	c.t.Helper()
	if err := c.try(stmts...); err != nil {
		c.t.Fatal(err)
	}
}

func (c *apiClient) exec(q string, args ...any) {
	c.t.Helper()
	c.run(sql(q, args...))
}

func (c *apiClient) try(stmts ...stmt) error {
	for _, s := range stmts {
		if _, err := c.pool.Exec(context.Background(), s.sql, s.args...); err != nil {
			return fmt.Errorf("%s: %w", s.sql, err)
		}
	}
	return nil
}

// fixtureOrder is an order as the projections would have stored it.
type fixtureOrder struct {
	id       uuid.UUID
	customer string
	status   string
	lines    string // JSON
	total    int64
	placedAt time.Time
	reason   string
	version  int64
}

func newOrder(customer string, placedAt time.Time) fixtureOrder {
	return fixtureOrder{id: uuid.Must(uuid.NewV7()), customer: customer, status: "pending",
		lines: `[{"sku":"SKU-1","quantity":2,"unit_price_cents":1999}]`, total: 3998, placedAt: placedAt.UTC(), version: 1}
}

// insertOrder writes o into order_details and orders_by_customer.
func insertOrder(o fixtureOrder) []stmt {
	return []stmt{
		sql(`insert into order_details (order_id, customer_id, status, lines, total_cents, placed_at, updated_at, cancel_reason, version)
			values ($1, $2, $3, $4, $5, $6, $6, $7, $8)`, o.id, o.customer, o.status, o.lines, o.total, o.placedAt, o.reason, o.version),
		sql(`insert into orders_by_customer (customer_id, order_id, status, total_cents, placed_at, version)
			values ($1, $2, $3, $4, $5, $6)`, o.customer, o.id, o.status, o.total, o.placedAt, o.version),
	}
}

func (c *apiClient) insertOrder(o fixtureOrder) {
	c.t.Helper()
	c.run(insertOrder(o)...)
}

// advanceOrder moves the order's rows in both views to version and status.
func advanceOrder(id uuid.UUID, version int64, status string) []stmt {
	return []stmt{
		sql(`update order_details set version = $2, status = $3, updated_at = now() where order_id = $1`, id, version, status),
		sql(`update orders_by_customer set version = $2, status = $3 where order_id = $1`, id, version, status),
	}
}

var t0 = time.Date(2025, 3, 14, 9, 26, 53, 589793000, time.UTC)

func TestGetOrder(t *testing.T) {
	t.Parallel()
	c := MustAPI(t, query.Config{})
	cancelled := newOrder("c-1", t0)
	cancelled.status, cancelled.reason, cancelled.version = "cancelled", "changed my mind", 2
	cancelled.lines = `[{"sku":"SKU-1","quantity":2,"unit_price_cents":1999},{"sku":"SKU-2","quantity":1,"unit_price_cents":500}]`
	cancelled.total = 4498
	c.insertOrder(cancelled)
	pending := newOrder("c-1", t0.Add(time.Second))
	c.insertOrder(pending)

	res := c.mustOK("/v1/orders/" + cancelled.id.String())
	var got query.Order
	res.decode(t, &got)
	want := query.Order{
		OrderID: cancelled.id.String(), CustomerID: "c-1", Status: "cancelled",
		Lines:      []query.OrderLine{{SKU: "SKU-1", Quantity: 2, UnitPriceCents: 1999}, {SKU: "SKU-2", Quantity: 1, UnitPriceCents: 500}},
		TotalCents: 4498, PlacedAt: t0, UpdatedAt: t0, CancelReason: "changed my mind", Version: 2,
	}
	if !got.PlacedAt.Equal(want.PlacedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Fatalf("times = %v, %v; want %v", got.PlacedAt, got.UpdatedAt, t0)
	}
	got.PlacedAt, got.UpdatedAt = want.PlacedAt, want.UpdatedAt
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("order =\n%+v\nwant\n%+v", got, want)
	}
	if etag := res.header.Get("ETag"); etag != `W/"order-`+cancelled.id.String()+`-v2"` {
		t.Fatalf("ETag = %q", etag)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q", ct)
	}

	res = c.mustOK("/v1/orders/" + pending.id.String() + "?unknown=ignored")
	if bytes.Contains(res.body, []byte("cancel_reason")) {
		t.Fatalf("cancel_reason present without a reason: %s", res.body)
	}

	missing := uuid.Must(uuid.NewV7()).String()
	res = c.get("/v1/orders/" + missing)
	if res.status != http.StatusNotFound || res.header.Get("Content-Type") != httpapi.ProblemContentType {
		t.Fatalf("absent order: %d %s", res.status, res.body)
	}
}

func TestGetStock(t *testing.T) {
	t.Parallel()
	c := MustAPI(t, query.Config{})
	c.exec(`insert into stock (sku, on_hand, reserved, updated_at, version) values ('SKU-1', 10, 3, $1, 4)`, t0)

	res := c.mustOK("/v1/inventory/SKU-1")
	var got query.Stock
	res.decode(t, &got)
	if got.SKU != "SKU-1" || got.OnHand != 10 || got.Reserved != 3 || got.Available != 7 || got.Version != 4 || !got.UpdatedAt.Equal(t0) {
		t.Fatalf("stock = %+v", got)
	}
	if etag := res.header.Get("ETag"); etag != `W/"sku-SKU-1-v4"` {
		t.Fatalf("ETag = %q", etag)
	}
	if res := c.get("/v1/inventory/SKU-2"); res.status != http.StatusNotFound {
		t.Fatalf("absent SKU: %d %s", res.status, res.body)
	}
}

func TestSalesStats(t *testing.T) {
	t.Parallel()
	c := MustAPI(t, query.Config{})
	for _, d := range []struct {
		day                               string
		placed, placedC, cancelled, cancC int64
	}{
		{"2024-02-27", 9, 900, 0, 0}, // before the range
		{"2024-02-28", 3, 3000, 1, 1000},
		{"2024-02-29", 2, 5000, 0, 0},
		{"2024-03-02", 1, 700, 1, 700},
		{"2024-03-10", 9, 900, 0, 0}, // after the range
	} {
		c.exec(`insert into daily_sales (day, orders_placed, placed_cents, orders_cancelled, cancelled_cents)
			values ($1::date, $2, $3, $4, $5)`, d.day, d.placed, d.placedC, d.cancelled, d.cancC)
	}

	res := c.mustOK("/v1/stats/sales?from=2024-02-28&to=2024-03-05")
	var got query.SalesReport
	res.decode(t, &got)
	want := query.SalesReport{From: "2024-02-28", To: "2024-03-05", Days: []query.DaySales{
		{Day: "2024-02-28", SalesCounters: query.SalesCounters{OrdersPlaced: 3, PlacedCents: 3000, OrdersCancelled: 1, CancelledCents: 1000, NetCents: 2000}},
		{Day: "2024-02-29", SalesCounters: query.SalesCounters{OrdersPlaced: 2, PlacedCents: 5000, NetCents: 5000}},
		{Day: "2024-03-02", SalesCounters: query.SalesCounters{OrdersPlaced: 1, PlacedCents: 700, OrdersCancelled: 1, CancelledCents: 700}},
	}, Totals: query.SalesCounters{OrdersPlaced: 6, PlacedCents: 8700, OrdersCancelled: 2, CancelledCents: 1700, NetCents: 7000}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("report =\n%+v\nwant\n%+v", got, want)
	}

	// One day; a range with no sales; the longest ranges allowed.
	res = c.mustOK("/v1/stats/sales?from=2024-02-29&to=2024-02-29")
	res.decode(t, &got)
	if len(got.Days) != 1 || got.Totals.PlacedCents != 5000 {
		t.Fatalf("one day = %s", res.body)
	}
	res = c.mustOK("/v1/stats/sales?from=2025-01-01&to=2025-01-31")
	if !bytes.Contains(res.body, []byte(`"days":[]`)) {
		t.Fatalf("no sales = %s", res.body)
	}
	for _, tt := range []struct {
		query  string
		placed int64
	}{
		{"from=2024-01-01&to=2024-12-31", 24}, // a leap year: 366 days
		{"from=2023-01-01&to=2024-01-01", 0},  // 366 days, both counted
	} {
		res = c.mustOK("/v1/stats/sales?" + tt.query)
		res.decode(t, &got)
		if got.Totals.OrdersPlaced != tt.placed {
			t.Fatalf("%s: %s", tt.query, res.body)
		}
	}
}

// sortNewestFirst orders fixtures as the list promises: placed_at then
// order_id, both descending.
func sortNewestFirst(orders []fixtureOrder) {
	slices.SortFunc(orders, func(a, b fixtureOrder) int {
		if c := b.placedAt.Compare(a.placedAt); c != 0 {
			return c
		}
		return bytes.Compare(b.id[:], a.id[:])
	})
}

func ids(orders []fixtureOrder) []string {
	out := make([]string, len(orders))
	for i, o := range orders {
		out[i] = o.id.String()
	}
	return out
}

func TestListOrdersPagination(t *testing.T) {
	t.Parallel()
	c := MustAPI(t, query.Config{})
	var orders []fixtureOrder
	for i := range 45 {
		// Groups of three share a placed_at, so order_id must break ties;
		// the odd microseconds check the cursor keeps full precision.
		o := newOrder("c-1", t0.Add(time.Duration(i/3)*1234567*time.Microsecond))
		if i%9 == 0 {
			o.status = "cancelled"
		}
		orders = append(orders, o)
		c.insertOrder(o)
	}
	c.insertOrder(newOrder("c-2", t0.Add(time.Hour))) // another customer's
	sortNewestFirst(orders)

	var (
		seen  []string
		page  query.OrderPage
		path  = "/v1/orders?customer_id=c-1&limit=20"
		sizes []int
	)
	for range 10 {
		res := c.mustOK(path)
		res.decode(t, &page)
		sizes = append(sizes, len(page.Orders))
		for _, o := range page.Orders {
			if o.CustomerID != "c-1" {
				t.Fatalf("another customer's order: %+v", o)
			}
			seen = append(seen, o.OrderID)
		}
		if len(seen) == 20 {
			// A newer order arrives between page fetches: it must not shift
			// the pages still to come.
			c.insertOrder(newOrder("c-1", t0.Add(24*time.Hour)))
		}
		if page.NextCursor == nil {
			break
		}
		path = "/v1/orders?customer_id=c-1&limit=20&cursor=" + *page.NextCursor
	}
	if !slices.Equal(sizes, []int{20, 20, 5}) {
		t.Fatalf("page sizes = %v, want [20 20 5]", sizes)
	}
	if want := ids(orders); !slices.Equal(seen, want) {
		t.Fatalf("walked\n%v\nwant (no duplicate, no gap)\n%v", seen, want)
	}

	// The default limit is 20, and a fresh first page shows the newer order.
	res := c.mustOK("/v1/orders?customer_id=c-1")
	res.decode(t, &page)
	if len(page.Orders) != 20 || page.Orders[0].OrderID == orders[0].id.String() || page.Orders[1].OrderID != orders[0].id.String() {
		t.Fatalf("fresh first page = %s", res.body)
	}

	// Filtered by status, paged by 2.
	var cancelled []fixtureOrder
	for _, o := range orders {
		if o.status == "cancelled" {
			cancelled = append(cancelled, o)
		}
	}
	seen, path = nil, "/v1/orders?customer_id=c-1&status=cancelled&limit=2"
	for range 10 {
		res := c.mustOK(path)
		res.decode(t, &page)
		for _, o := range page.Orders {
			if o.Status != "cancelled" {
				t.Fatalf("status filter let through %+v", o)
			}
			seen = append(seen, o.OrderID)
		}
		if page.NextCursor == nil {
			break
		}
		path = "/v1/orders?customer_id=c-1&status=cancelled&limit=2&cursor=" + *page.NextCursor
	}
	if want := ids(cancelled); !slices.Equal(seen, want) {
		t.Fatalf("cancelled = %v, want %v", seen, want)
	}

	// A customer with no orders gets an empty last page.
	res = c.mustOK("/v1/orders?customer_id=nobody")
	if want := `{"orders":[],"next_cursor":null}`; strings.TrimSpace(string(res.body)) != want {
		t.Fatalf("no orders = %s, want %s", res.body, want)
	}
}

func TestETags(t *testing.T) {
	t.Parallel()
	c := MustAPI(t, query.Config{})
	o := newOrder("c-1", t0)
	c.insertOrder(o)
	c.exec(`insert into stock (sku, on_hand, reserved, updated_at, version) values ('SKU-1', 10, 0, $1, 1)`, t0)
	c.exec(`insert into daily_sales (day, orders_placed, placed_cents) values ('2025-03-14', 1, 3998)`)

	order := "/v1/orders/" + o.id.String()
	paths := []string{order, "/v1/orders?customer_id=c-1", "/v1/inventory/SKU-1", "/v1/stats/sales?from=2025-03-01&to=2025-03-31"}
	etags := map[string]string{}
	for _, p := range paths {
		etag := c.mustOK(p).header.Get("ETag")
		etags[p] = etag
		if again := c.mustOK(p).header.Get("ETag"); again != etag {
			t.Fatalf("%s: ETag changed from %q to %q with no change", p, etag, again)
		}
		res := c.get(p, "If-None-Match", etag)
		if res.status != http.StatusNotModified || len(res.body) != 0 || res.header.Get("ETag") != etag ||
			res.header.Get("Cache-Control") != "no-cache" {
			t.Fatalf("%s with If-None-Match %s: %d %q %v", p, etag, res.status, res.body, res.header)
		}
	}
	if strings.HasPrefix(etags[paths[1]], "W/") || etags[paths[1]] == etags[paths[3]] {
		t.Fatalf("list ETags = %q, %q; want distinct strong hashes", etags[paths[1]], etags[paths[3]])
	}

	// If-None-Match compares weakly, takes lists and several headers, and
	// "*" matches whatever exists.
	strong := strings.TrimPrefix(etags[order], "W/")
	for _, inm := range [][]string{
		{strong},
		{`"other", ` + etags[order]},
		{`"other"`, etags[order]},
		{"*"},
	} {
		var h []string
		for _, v := range inm {
			h = append(h, "If-None-Match", v)
		}
		if res := c.get(order, h...); res.status != http.StatusNotModified {
			t.Fatalf("If-None-Match %q: %d", inm, res.status)
		}
	}
	for _, inm := range []string{`"other"`, `W/"order-` + o.id.String() + `-v2"`, "garbage"} {
		if res := c.get(order, "If-None-Match", inm); res.status != http.StatusOK {
			t.Fatalf("If-None-Match %q: %d, want 200", inm, res.status)
		}
	}

	// A change gives a new ETag, and the old one no longer matches.
	c.run(advanceOrder(o.id, 2, "confirmed")...)
	c.exec(`update stock set on_hand = 12, version = 2 where sku = 'SKU-1'`)
	c.exec(`update daily_sales set orders_placed = 2, placed_cents = 7996`)
	for _, p := range paths {
		res := c.get(p, "If-None-Match", etags[p])
		if res.status != http.StatusOK {
			t.Fatalf("%s after a change: %d, want 200", p, res.status)
		}
		if etag := res.header.Get("ETag"); etag == etags[p] || etag == "" {
			t.Fatalf("%s after a change: ETag %q, was %q", p, etag, etags[p])
		}
	}
	if etag := c.mustOK(order).header.Get("ETag"); etag != `W/"order-`+o.id.String()+`-v2"` {
		t.Fatalf("order ETag = %q", etag)
	}
}

func TestNewAPIRejects(t *testing.T) {
	t.Parallel()
	logger := slog.New(slog.DiscardHandler)
	if _, err := query.NewAPI(nil, query.Config{}, logger); err == nil {
		t.Fatal("nil pool accepted")
	}
	pool, err := pgxpool.New(context.Background(), "postgres://127.0.0.1:1/none")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := query.NewAPI(pool, query.Config{}, nil); err == nil {
		t.Fatal("nil logger accepted")
	}
	for _, cfg := range []query.Config{{MinVersionWait: -time.Second}, {PollInterval: -time.Millisecond}} {
		if _, err := query.NewAPI(pool, cfg, logger); err == nil {
			t.Fatalf("config %+v accepted", cfg)
		}
	}
}
