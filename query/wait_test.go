package query_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/httpapi"
	"github.com/orderflow/orderflow/query"
)

// lag is how late the simulated projector applies the awaited version.
const lag = 100 * time.Millisecond

// later applies stmts after lag, as a lagging projector would, in a
// goroutine the test waits for. It returns when it began applying them.
func (c *apiClient) later(stmts ...stmt) <-chan time.Time {
	t := c.t
	applying := make(chan time.Time, 1)
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		time.Sleep(lag) // the projector's delay being simulated, not a condition to await
		applying <- time.Now()
		if err := c.try(stmts...); err != nil {
			t.Error(err)
		}
	}()
	return applying
}

// mustAwait gets path, which must wait for the change later is applying: it
// must have been sent before the change and answer 200 with it.
func (c *apiClient) mustAwait(path string, applying <-chan time.Time) response {
	c.t.Helper()
	sent := time.Now()
	res := c.mustOK(path)
	if at := <-applying; !sent.Before(at) {
		c.t.Fatalf("GET %s was sent at %s, after the change began at %s: it proves no wait", path, sent, at)
	}
	return res
}

func TestMinVersionWaitsForTheView(t *testing.T) {
	t.Parallel()
	c := MustAPI(t, query.Config{}) // the default bound, 2s, leaves room for a slow machine
	o := newOrder("c-1", t0)
	c.insertOrder(o)
	c.exec(`insert into stock (sku, on_hand, reserved, updated_at, version) values ('SKU-1', 1, 0, now(), 1)`)

	// Already there: answered at once.
	res := c.mustOK("/v1/orders/" + o.id.String() + "?min_version=1")
	var got query.Order
	res.decode(t, &got)
	if got.Version != 1 {
		t.Fatalf("version = %d", got.Version)
	}

	// The view holds version 1; the read waits until it holds version 2.
	res = c.mustAwait("/v1/orders/"+o.id.String()+"?min_version=2", c.later(advanceOrder(o.id, 2, "confirmed")...))
	res.decode(t, &got)
	if got.Version != 2 || got.Status != "confirmed" {
		t.Fatalf("order = %+v, want version 2 confirmed", got)
	}
	if etag := res.header.Get("ETag"); etag != `W/"order-`+o.id.String()+`-v2"` {
		t.Fatalf("ETag = %q", etag)
	}

	// An order the view does not hold yet appears while the read waits.
	fresh := newOrder("c-1", t0)
	res = c.mustAwait("/v1/orders/"+fresh.id.String()+"?min_version=1", c.later(insertOrder(fresh)...))
	res.decode(t, &got)
	if got.OrderID != fresh.id.String() || got.Version != 1 {
		t.Fatalf("fresh order = %s", res.body)
	}

	var stock query.Stock
	res = c.mustAwait("/v1/inventory/SKU-1?min_version=2", c.later(sql(`update stock set on_hand = 5, version = 2 where sku = 'SKU-1'`)))
	res.decode(t, &stock)
	if stock.Version != 2 || stock.OnHand != 5 {
		t.Fatalf("stock = %+v, want version 2 with 5 on hand", stock)
	}
}

func TestMinVersionBound(t *testing.T) {
	t.Parallel()
	const bound = 300 * time.Millisecond
	c := MustAPI(t, query.Config{MinVersionWait: bound})
	o := newOrder("c-1", t0)
	c.insertOrder(o)
	c.exec(`insert into stock (sku, on_hand, reserved, updated_at, version) values ('SKU-1', 1, 0, now(), 3)`)

	tests := []struct {
		name   string
		path   string
		detail string
	}{
		{"order behind", "/v1/orders/" + o.id.String() + "?min_version=5", "holds version 1 of order"},
		{"order absent", "/v1/orders/" + uuid.Must(uuid.NewV7()).String() + "?min_version=1", "has no order"},
		{"stock behind", "/v1/inventory/SKU-1?min_version=4", "holds version 3 of SKU SKU-1"},
		{"stock absent", "/v1/inventory/SKU-2?min_version=1", "has no SKU SKU-2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := *c
			c.t = t
			// A client cannot stretch the bound.
			res := c.get(tt.path + "&wait=10s")
			if res.status != http.StatusPreconditionFailed || res.header.Get("Retry-After") != "1" ||
				res.header.Get("Content-Type") != httpapi.ProblemContentType {
				t.Fatalf("%d %v %s, want 412 problem with Retry-After: 1", res.status, res.header, res.body)
			}
			var prob httpapi.Problem
			res.decode(t, &prob)
			if prob.Type != "urn:orderflow:problem:view-behind" || !strings.Contains(prob.Detail, tt.detail) {
				t.Fatalf("problem = %s, want view-behind mentioning %q", res.body, tt.detail)
			}
			if res.elapsed < bound {
				t.Fatalf("answered after %s, before the bound %s", res.elapsed, bound)
			}
		})
	}
}
