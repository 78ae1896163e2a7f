package query_test

import (
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/httpapi"
	"github.com/orderflow/orderflow/query"
)

// rawCursor encodes b the way cursors are encoded, to forge bad ones.
func rawCursor(b ...byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestBadInput(t *testing.T) {
	t.Parallel()
	c := MustAPI(t, query.Config{})
	o := newOrder("c-1", t0)
	c.insertOrder(o)
	c.insertOrder(newOrder("c-1", t0.Add(time.Second)))
	c.exec(`insert into stock (sku, on_hand, reserved, updated_at, version) values ('SKU-1', 1, 0, now(), 1)`)
	order := "/v1/orders/" + o.id.String()

	page := c.mustOK("/v1/orders?customer_id=c-1&limit=1")
	var p query.OrderPage
	page.decode(t, &p)
	if p.NextCursor == nil {
		t.Fatalf("no next page: %s", page.body)
	}
	// A genuine cursor shape, to spoil in specific ways.
	good := append([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0}, o.id[:]...)
	wrongVersion := append([]byte{2}, good[1:]...)
	outOfRange := append([]byte{1, 0x80, 0, 0, 0, 0, 0, 0, 0}, o.id[:]...)

	tests := []struct {
		name  string
		path  string
		field string // the field the problem must name
	}{
		{"order id not a UUID", "/v1/orders/1234", "id"},
		{"order id in braces", "/v1/orders/%7B" + o.id.String()[:34] + "%7D", "id"},
		{"order id with urn prefix", "/v1/orders/urn:uuid:" + o.id.String(), "id"},
		{"min_version zero", order + "?min_version=0", "min_version"},
		{"min_version negative", order + "?min_version=-1", "min_version"},
		{"min_version not a number", order + "?min_version=abc", "min_version"},
		{"min_version a fraction", order + "?min_version=1.5", "min_version"},
		{"min_version empty", order + "?min_version=", "min_version"},
		{"min_version twice", order + "?min_version=1&min_version=1", "min_version"},
		{"min_version too large", order + "?min_version=99999999999999999999", "min_version"},

		{"SKU with a space", "/v1/inventory/SKU%201", "sku"},
		{"SKU starting with a dash", "/v1/inventory/-SKU", "sku"},
		{"SKU too long", "/v1/inventory/" + strings.Repeat("A", 65), "sku"},
		{"SKU with a slash", "/v1/inventory/SKU%2F1", "sku"},
		{"stock min_version zero", "/v1/inventory/SKU-1?min_version=0", "min_version"},
		{"stock min_version not a number", "/v1/inventory/SKU-1?min_version=x", "min_version"},

		{"customer_id missing", "/v1/orders", "customer_id"},
		{"customer_id missing, others given", "/v1/orders?limit=5&status=pending", "customer_id"},
		{"customer_id empty", "/v1/orders?customer_id=", "customer_id"},
		{"customer_id malformed", "/v1/orders?customer_id=-c", "customer_id"},
		{"customer_id too long", "/v1/orders?customer_id=" + strings.Repeat("c", 65), "customer_id"},
		{"customer_id twice", "/v1/orders?customer_id=c-1&customer_id=c-2", "customer_id"},
		{"status unknown", "/v1/orders?customer_id=c-1&status=shipped", "status"},
		{"status in capitals", "/v1/orders?customer_id=c-1&status=PENDING", "status"},
		{"status empty", "/v1/orders?customer_id=c-1&status=", "status"},
		{"status twice", "/v1/orders?customer_id=c-1&status=pending&status=pending", "status"},
		{"limit zero", "/v1/orders?customer_id=c-1&limit=0", "limit"},
		{"limit 101", "/v1/orders?customer_id=c-1&limit=101", "limit"},
		{"limit not a number", "/v1/orders?customer_id=c-1&limit=abc", "limit"},
		{"limit empty", "/v1/orders?customer_id=c-1&limit=", "limit"},
		{"limit twice", "/v1/orders?customer_id=c-1&limit=5&limit=5", "limit"},
		{"cursor not base64", "/v1/orders?customer_id=c-1&cursor=not*base64", "cursor"},
		{"cursor too short", "/v1/orders?customer_id=c-1&cursor=AAAA", "cursor"},
		{"cursor too long", "/v1/orders?customer_id=c-1&cursor=" + rawCursor(append(good, 0)...), "cursor"},
		{"cursor of another version", "/v1/orders?customer_id=c-1&cursor=" + rawCursor(wrongVersion...), "cursor"},
		{"cursor out of range", "/v1/orders?customer_id=c-1&cursor=" + rawCursor(outOfRange...), "cursor"},
		{"cursor padded", "/v1/orders?customer_id=c-1&cursor=" + base64.URLEncoding.EncodeToString(good), "cursor"},
		{"cursor empty", "/v1/orders?customer_id=c-1&cursor=", "cursor"},
		{"cursor twice", "/v1/orders?customer_id=c-1&cursor=" + *p.NextCursor + "&cursor=" + *p.NextCursor, "cursor"},

		{"saga order id not a UUID", "/v1/orders/1234/saga", "id"},
		{"saga order id with urn prefix", "/v1/orders/urn:uuid:" + o.id.String() + "/saga", "id"},
		{"saga min_version zero", order + "/saga?min_version=0", "min_version"},
		{"saga min_version not a number", order + "/saga?min_version=abc", "min_version"},

		{"state missing", "/v1/sagas", "state"},
		{"state missing, others given", "/v1/sagas?limit=5", "state"},
		{"state unknown", "/v1/sagas?state=pending", "state"},
		{"state in capitals", "/v1/sagas?state=STUCK", "state"},
		{"state empty", "/v1/sagas?state=", "state"},
		{"state twice", "/v1/sagas?state=stuck&state=stuck", "state"},
		{"sagas limit zero", "/v1/sagas?state=stuck&limit=0", "limit"},
		{"sagas limit 101", "/v1/sagas?state=stuck&limit=101", "limit"},
		{"sagas limit not a number", "/v1/sagas?state=stuck&limit=abc", "limit"},
		{"sagas limit negative", "/v1/sagas?state=stuck&limit=-1", "limit"},
		{"sagas cursor not base64", "/v1/sagas?state=stuck&cursor=not*base64", "cursor"},
		{"sagas cursor too short", "/v1/sagas?state=stuck&cursor=AAAA", "cursor"},
		{"sagas cursor of the orders list", "/v1/sagas?state=stuck&cursor=" + rawCursor(good...), "cursor"},
		{"sagas cursor of another version", "/v1/sagas?state=stuck&cursor=" + rawCursor(append([]byte{3}, good[1:]...)...), "cursor"},
		{"sagas cursor out of range", "/v1/sagas?state=stuck&cursor=" + rawCursor(append([]byte{2}, outOfRange[1:]...)...), "cursor"},
		{"sagas cursor empty", "/v1/sagas?state=stuck&cursor=", "cursor"},

		{"from missing", "/v1/stats/sales?to=2024-01-31", "from"},
		{"to missing", "/v1/stats/sales?from=2024-01-01", "to"},
		{"from not a date", "/v1/stats/sales?from=yesterday&to=2024-01-31", "from"},
		{"from without dashes", "/v1/stats/sales?from=20240101&to=2024-01-31", "from"},
		{"from month 13", "/v1/stats/sales?from=2024-13-01&to=2024-12-31", "from"},
		{"to February 30", "/v1/stats/sales?from=2024-02-01&to=2024-02-30", "to"},
		{"to with a time", "/v1/stats/sales?from=2024-02-01&to=2024-02-03T00:00:00Z", "to"},
		{"year zero", "/v1/stats/sales?from=0000-01-01&to=0000-01-02", "from"},
		{"from after to", "/v1/stats/sales?from=2024-02-02&to=2024-02-01", "to"},
		{"span of 367 days", "/v1/stats/sales?from=2023-01-01&to=2024-01-02", "to"},
		{"from twice", "/v1/stats/sales?from=2024-01-01&from=2024-01-01&to=2024-01-31", "from"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := *c
			c.t = t
			res := c.get(tt.path)
			if res.status != http.StatusBadRequest || res.header.Get("Content-Type") != httpapi.ProblemContentType {
				t.Fatalf("GET %s: %d %s %s, want a 400 problem", tt.path, res.status, res.header.Get("Content-Type"), res.body)
			}
			var prob httpapi.Problem
			res.decode(t, &prob)
			var fields []string
			for _, f := range prob.Errors {
				fields = append(fields, f.Field)
			}
			if prob.Type != "urn:orderflow:problem:validation" || !slices.Contains(fields, tt.field) {
				t.Fatalf("GET %s: problem %s, want validation naming %q", tt.path, res.body, tt.field)
			}
		})
	}
}

// A bad state names the states accepted.
func TestBadSagaStateNamesTheAcceptedOnes(t *testing.T) {
	t.Parallel()
	c := MustAPI(t, query.Config{})
	for _, path := range []string{"/v1/sagas", "/v1/sagas?state=pending"} {
		res := c.get(path)
		var prob httpapi.Problem
		res.decode(t, &prob)
		if res.status != http.StatusBadRequest || len(prob.Errors) != 1 || prob.Errors[0].Field != "state" ||
			!strings.Contains(prob.Errors[0].Detail, query.SagaStateStuck) {
			t.Fatalf("GET %s: %d %s, want a 400 naming %q", path, res.status, res.body, query.SagaStateStuck)
		}
	}
}
