package apitest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/api/apitest"
)

// recorder is a testing.TB that records failures instead of failing the test,
// so a test can prove the validator fails when it should. Methods it does not
// override go to the real test.
type recorder struct {
	testing.TB
	failures []string
}

func (r *recorder) Helper()           {}
func (r *recorder) Error(args ...any) { r.failures = append(r.failures, fmt.Sprint(args...)) }
func (r *recorder) Errorf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatal(args ...any)                 { r.Error(args...) }
func (r *recorder) Fatalf(format string, args ...any) { r.Errorf(format, args...) }
func (r *recorder) Fail()                             { r.failures = append(r.failures, "Fail called") }
func (r *recorder) FailNow()                          { r.Fail() }
func (r *recorder) Failed() bool                      { return len(r.failures) > 0 }

const orderID = "0190f2a4-7c1e-7b6e-9d51-3f0c2a9b8e11"

func jsonHeader(extra ...string) http.Header {
	h := http.Header{"Content-Type": {"application/json"}}
	for i := 0; i+1 < len(extra); i += 2 {
		h.Set(extra[i], extra[i+1])
	}
	return h
}

var problemHeader = http.Header{"Content-Type": {"application/problem+json"}}

func TestCheckResponse(t *testing.T) {
	t.Parallel()
	v := apitest.MustValidator(t)

	accepted := `{"order_id":"` + orderID + `","stream_id":"order-` + orderID + `","version":1}`
	created := jsonHeader("Location", "/v1/orders/"+orderID)

	tests := []struct {
		name   string
		method string
		path   string
		status int
		header http.Header
		body   string
		// want is empty for a response that must pass; otherwise every
		// substring must appear in the one failure reported.
		want []string
	}{
		{
			name: "valid 201 OrderAccepted", method: "POST", path: "/v1/orders",
			status: 201, header: created, body: accepted,
		},
		{
			name: "valid 201 with charset and lower-case method", method: "post", path: "/v1/orders",
			status: 201, header: jsonHeader("Content-Type", "application/json; charset=utf-8", "Location", "/v1/orders/"+orderID),
			body: accepted,
		},
		{
			name: "valid 200 cancel, templated path with query string", method: "POST",
			path: "/v1/orders/" + orderID + "/cancel?trace=1", status: 200, header: jsonHeader(),
			body: `{"order_id":"` + orderID + `","stream_id":"order-` + orderID + `","version":2}`,
		},
		{
			name: "valid 400 validation problem", method: "POST", path: "/v1/orders",
			status: 400, header: problemHeader,
			body: `{"type":"about:blank","title":"Bad Request","status":400,"detail":"invalid order",` +
				`"request_id":"r-1","errors":[{"field":"lines[0].quantity","detail":"must be at least 1"}]}`,
		},
		{
			name: "valid 409 conflict", method: "POST", path: "/v1/orders/" + orderID + "/cancel",
			status: 409, header: problemHeader,
			body: `{"type":"https://orderflow.dev/problems/order-closed","title":"Conflict","status":409}`,
		},
		{
			name: "valid 200 StockAccepted", method: "POST", path: "/v1/inventory/SKU-RED-M/stock",
			status: 200, header: jsonHeader(),
			body: `{"sku":"SKU-RED-M","stream_id":"sku-SKU-RED-M","version":3}`,
		},
		{
			name: "valid 200 stream events, last page", method: "GET",
			path: "/v1/streams/order-" + orderID + "/events?from=1&limit=10", status: 200, header: jsonHeader(),
			body: `{"stream_id":"order-` + orderID + `","next_from":null,"events":[{"event_id":"` + orderID + `",` +
				`"stream_id":"order-` + orderID + `","version":1,"type":"OrderPlaced","schema_version":1,` +
				`"data":{"order_id":"` + orderID + `"},"metadata":{"correlation_id":"c-1","command_id":"k-1"},` +
				`"recorded_at":"2025-01-02T03:04:05.123456Z","position":"812.0"}]}`,
		},
		{
			name: "valid 200 stream events, more to come", method: "GET",
			path: "/v1/streams/sku-A/events", status: 200, header: jsonHeader(),
			body: `{"stream_id":"sku-A","events":[],"next_from":101}`,
		},
		{
			name: "valid healthz", method: "GET", path: "/healthz",
			status: 200, header: jsonHeader(), body: `{"status":"ok"}`,
		},
		{
			name: "valid readyz degraded is 200", method: "GET", path: "/readyz",
			status: 200, header: jsonHeader(), body: `{"status":"degraded","checks":{"kafka":"timeout"}}`,
		},
		{
			name: "valid readyz unavailable is 503", method: "GET", path: "/readyz",
			status: 503, header: jsonHeader(), body: `{"status":"unavailable","checks":{"postgres":"connection refused"}}`,
		},
		{
			name: "valid metrics, text/plain only checked for its type", method: "GET", path: "/metrics",
			status: 200, header: http.Header{"Content-Type": {"text/plain; version=0.0.4; charset=utf-8"}},
			body: "# HELP up whether up\n# TYPE up gauge\nup 1\n",
		},
		{
			name: "valid openapi.json", method: "GET", path: "/openapi.json",
			status: 200, header: jsonHeader(), body: string(api.OpenAPI()),
		},

		{
			name: "missing required field", method: "POST", path: "/v1/orders",
			status: 201, header: created,
			body: `{"order_id":"` + orderID + `","stream_id":"order-` + orderID + `"}`,
			want: []string{"placeOrder", "201", "OrderAccepted", "version"},
		},
		{
			name: "extra field", method: "POST", path: "/v1/orders",
			status: 201, header: created,
			body: `{"order_id":"` + orderID + `","stream_id":"order-` + orderID + `","version":1,"total":5}`,
			want: []string{"placeOrder", "201", "OrderAccepted", "total"},
		},
		{
			name: "wrong type", method: "POST", path: "/v1/orders",
			status: 201, header: created,
			body: `{"order_id":"` + orderID + `","stream_id":"order-` + orderID + `","version":"1"}`,
			want: []string{"placeOrder", "201", "version", "integer"},
		},
		{
			name: "number out of range", method: "POST", path: "/v1/orders",
			status: 201, header: created,
			body: `{"order_id":"` + orderID + `","stream_id":"order-` + orderID + `","version":0}`,
			want: []string{"placeOrder", "version", "minimum"},
		},
		{
			name: "format is asserted: order_id not a uuid", method: "POST", path: "/v1/orders",
			status: 201, header: created,
			body: `{"order_id":"42","stream_id":"order-42","version":1}`,
			want: []string{"placeOrder", "order_id", "uuid"},
		},
		{
			name: "body not JSON", method: "POST", path: "/v1/orders",
			status: 201, header: created, body: `{"order_id":`,
			want: []string{"placeOrder", "not JSON"},
		},
		{
			name: "missing required Location header", method: "POST", path: "/v1/orders",
			status: 201, header: jsonHeader(), body: accepted,
			want: []string{"placeOrder", "201", "Location"},
		},
		{
			name: "undocumented status", method: "POST", path: "/v1/orders",
			status: 404, header: problemHeader, body: `{"type":"about:blank","title":"Not Found","status":404}`,
			want: []string{"placeOrder", "404", "not documented"},
		},
		{
			name: "undocumented status 418 on cancel", method: "POST", path: "/v1/orders/" + orderID + "/cancel",
			status: 418, header: problemHeader, body: `{"type":"about:blank","title":"oops","status":418}`,
			want: []string{"cancelOrder", "418", "not documented"},
		},
		{
			name: "wrong content type for a problem", method: "POST", path: "/v1/orders",
			status: 400, header: jsonHeader(), body: `{"type":"about:blank","title":"Bad Request","status":400}`,
			want: []string{"placeOrder", "400", "application/json", "application/problem+json"},
		},
		{
			name: "wrong content type for success", method: "POST", path: "/v1/orders",
			status: 201, header: http.Header{"Content-Type": {"text/plain"}, "Location": {"/v1/orders/" + orderID}},
			body: accepted, want: []string{"placeOrder", "201", "text/plain"},
		},
		{
			name: "no content type", method: "GET", path: "/healthz",
			status: 200, header: http.Header{}, body: `{"status":"ok"}`,
			want: []string{"getHealth", "no Content-Type"},
		},
		{
			name: "problem with extra member", method: "POST", path: "/v1/inventory/SKU-1/stock",
			status: 422, header: problemHeader,
			body: `{"type":"about:blank","title":"Unprocessable","status":422,"code":"reused"}`,
			want: []string{"addStock", "422", "Problem", "code"},
		},
		{
			name: "readyz 503 claiming ready", method: "GET", path: "/readyz",
			status: 503, header: jsonHeader(), body: `{"status":"ready","checks":{}}`,
			want: []string{"getReadiness", "503", "status"},
		},
		{
			name: "readyz 200 claiming unavailable", method: "GET", path: "/readyz",
			status: 200, header: jsonHeader(), body: `{"status":"unavailable","checks":{}}`,
			want: []string{"getReadiness", "200", "status"},
		},
		{
			name: "bad position token", method: "GET", path: "/v1/streams/sku-A/events",
			status: 200, header: jsonHeader(),
			body: `{"stream_id":"sku-A","next_from":null,"events":[{"event_id":"` + orderID + `","stream_id":"sku-A",` +
				`"version":1,"type":"StockAdded","schema_version":1,"data":{},"metadata":{},` +
				`"recorded_at":"2025-01-02T03:04:05Z","position":"812"}]}`,
			want: []string{"readStreamEvents", "position"},
		},
		{
			name: "unknown path", method: "GET", path: "/v1/nope",
			status: 200, header: jsonHeader(), body: `{}`,
			want: []string{"/v1/nope", "matches no path template"},
		},
		{
			name: "extra path segment", method: "POST", path: "/v1/orders/" + orderID + "/cancel/now",
			status: 200, header: jsonHeader(), body: accepted,
			want: []string{"matches no path template"},
		},
		{
			name: "undocumented method on a known path", method: "DELETE", path: "/v1/orders",
			status: 200, header: jsonHeader(), body: accepted,
			want: []string{"no DELETE operation", "POST /v1/orders"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{TB: t}
			v.CheckResponse(rec, tt.method, tt.path, tt.status, tt.header, []byte(tt.body))
			checkFailures(t, rec, tt.want)
		})
	}
}

func TestCheckRequest(t *testing.T) {
	t.Parallel()
	v := apitest.MustValidator(t)

	line := func(sku string) string {
		return `{"sku":"` + sku + `","quantity":2,"unit_price_cents":1999}`
	}
	lines := func(n int) string {
		ls := make([]string, n)
		for i := range ls {
			ls[i] = line(fmt.Sprintf("SKU-%d", i))
		}
		return "[" + strings.Join(ls, ",") + "]"
	}

	tests := []struct {
		name   string
		method string
		path   string
		body   string
		want   []string
	}{
		{name: "valid order", method: "POST", path: "/v1/orders",
			body: `{"customer_id":"cust-42","lines":` + lines(50) + `}`},
		{name: "valid cancel without body", method: "POST", path: "/v1/orders/" + orderID + "/cancel"},
		{name: "valid cancel with reason", method: "POST", path: "/v1/orders/" + orderID + "/cancel",
			body: `{"reason":"changed my mind"}`},
		{name: "valid stock", method: "POST", path: "/v1/inventory/SKU-1/stock", body: `{"quantity":1000000}`},

		{name: "order without lines", method: "POST", path: "/v1/orders",
			body: `{"customer_id":"cust-42"}`, want: []string{"placeOrder", "lines"}},
		{name: "order with no lines", method: "POST", path: "/v1/orders",
			body: `{"customer_id":"cust-42","lines":[]}`, want: []string{"placeOrder", "lines"}},
		{name: "order with 51 lines", method: "POST", path: "/v1/orders",
			body: `{"customer_id":"cust-42","lines":` + lines(51) + `}`, want: []string{"placeOrder", "lines"}},
		{name: "zero quantity", method: "POST", path: "/v1/orders",
			body: `{"customer_id":"c","lines":[{"sku":"A","quantity":0,"unit_price_cents":1}]}`,
			want: []string{"placeOrder", "quantity"}},
		{name: "float price", method: "POST", path: "/v1/orders",
			body: `{"customer_id":"c","lines":[{"sku":"A","quantity":1,"unit_price_cents":19.99}]}`,
			want: []string{"placeOrder", "unit_price_cents"}},
		{name: "bad customer id", method: "POST", path: "/v1/orders",
			body: `{"customer_id":"-x","lines":[` + line("A") + `]}`, want: []string{"placeOrder", "customer_id"}},
		{name: "unknown field", method: "POST", path: "/v1/orders",
			body: `{"customer_id":"c","lines":[` + line("A") + `],"coupon":"X"}`, want: []string{"placeOrder", "coupon"}},
		{name: "stock without body", method: "POST", path: "/v1/inventory/SKU-1/stock",
			want: []string{"addStock", "required"}},
		{name: "stock too large", method: "POST", path: "/v1/inventory/SKU-1/stock",
			body: `{"quantity":1000001}`, want: []string{"addStock", "quantity"}},
		{name: "reason too long", method: "POST", path: "/v1/orders/" + orderID + "/cancel",
			body: `{"reason":"` + strings.Repeat("x", 501) + `"}`, want: []string{"cancelOrder", "reason"}},
		{name: "body where none is documented", method: "GET", path: "/healthz",
			body: `{}`, want: []string{"getHealth", "no request body"}},
		{name: "unknown path", method: "POST", path: "/v2/orders",
			body: `{}`, want: []string{"matches no path template"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{TB: t}
			v.CheckRequest(rec, tt.method, tt.path, []byte(tt.body))
			checkFailures(t, rec, tt.want)
		})
	}
}

// checkFailures requires no failure when want is empty, else exactly one
// failure containing every substring of want.
func checkFailures(t *testing.T, rec *recorder, want []string) {
	t.Helper()
	if len(want) == 0 {
		if len(rec.failures) != 0 {
			t.Fatalf("want no failure, got %d:\n%s", len(rec.failures), strings.Join(rec.failures, "\n---\n"))
		}
		return
	}
	if len(rec.failures) != 1 {
		t.Fatalf("want exactly one failure mentioning %q, got %d:\n%s",
			want, len(rec.failures), strings.Join(rec.failures, "\n---\n"))
	}
	for _, w := range want {
		if !strings.Contains(rec.failures[0], w) {
			t.Errorf("failure does not mention %q:\n%s", w, rec.failures[0])
		}
	}
}

func TestCheckDocument(t *testing.T) {
	t.Parallel()
	if err := apitest.MustValidator(t).CheckDocument(); err != nil {
		t.Fatalf("the document has broken references or schemas:\n%v", err)
	}
}

func TestCheckDocumentFindsBrokenDocuments(t *testing.T) {
	t.Parallel()
	// Each case breaks the parsed document at one place.
	set := func(doc map[string]any, value any, path ...string) bool {
		node := doc
		for _, k := range path[:len(path)-1] {
			next, ok := node[k].(map[string]any)
			if !ok {
				return false
			}
			node = next
		}
		if _, ok := node[path[len(path)-1]]; !ok {
			return false
		}
		node[path[len(path)-1]] = value
		return true
	}
	tests := []struct {
		name    string
		path    []string
		value   any
		wantErr string
	}{
		{
			name:    "dangling schema $ref in a response",
			path:    []string{"paths", "/v1/inventory/{sku}/stock", "post", "responses", "200", "content", "application/json", "schema"},
			value:   map[string]any{"$ref": "#/components/schemas/Nope"},
			wantErr: "Nope",
		},
		{
			name:    "dangling $ref nested in a component schema",
			path:    []string{"components", "schemas", "RecordedEvent", "properties", "metadata"},
			value:   map[string]any{"$ref": "#/components/schemas/Metadata"},
			wantErr: "Metadata",
		},
		{
			name:    "dangling response $ref",
			path:    []string{"paths", "/v1/orders/{id}/cancel", "post", "responses", "404"},
			value:   map[string]any{"$ref": "#/components/responses/Missing"},
			wantErr: "Missing",
		},
		{
			name:    "schema that does not compile",
			path:    []string{"components", "schemas", "StreamVersion", "type"},
			value:   "int",
			wantErr: "compile",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var parsed map[string]any
			if err := json.Unmarshal(api.OpenAPI(), &parsed); err != nil {
				t.Fatal(err)
			}
			if !set(parsed, tt.value, tt.path...) {
				t.Fatalf("the document has nothing at %v; update the test", tt.path)
			}
			doc, err := json.Marshal(parsed)
			if err != nil {
				t.Fatal(err)
			}
			v, err := apitest.NewValidator(doc)
			if err != nil {
				t.Fatalf("NewValidator: %v", err)
			}
			err = v.CheckDocument()
			if err == nil {
				t.Fatal("CheckDocument found nothing wrong")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error does not mention %q:\n%v", tt.wantErr, err)
			}
		})
	}
}

func TestNewValidatorRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  string
	}{
		{"not JSON", `{"openapi": "3.1.0",`},
		{"trailing garbage", `{"openapi": "3.1.0", "paths": {}} x`},
		{"OpenAPI 3.0", `{"openapi": "3.0.3", "info": {}, "paths": {}}`},
		{"no paths", `{"openapi": "3.1.0", "info": {}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := apitest.NewValidator([]byte(tt.doc)); err == nil {
				t.Fatal("NewValidator accepted it")
			}
		})
	}
}

func TestDocument(t *testing.T) {
	t.Parallel()
	doc := api.OpenAPI()
	if !json.Valid(doc) {
		t.Fatal("api.OpenAPI() is not valid JSON")
	}
	var parsed struct {
		OpenAPI string `json:"openapi"`
		Tags    []struct {
			Name string `json:"name"`
		} `json:"tags"`
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(doc, &parsed); err != nil {
		t.Fatalf("decode document: %v", err)
	}
	if !regexp.MustCompile(`^3\.1\.\d+$`).MatchString(parsed.OpenAPI) {
		t.Errorf("openapi = %q, want 3.1.x", parsed.OpenAPI)
	}
	var tags []string
	for _, tg := range parsed.Tags {
		tags = append(tags, tg.Name)
	}

	ids := map[string]string{}
	ops := 0
	for path, item := range parsed.Paths {
		for key, raw := range item {
			switch key {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
			default:
				continue // parameters, summary, …
			}
			ops++
			name := strings.ToUpper(key) + " " + path
			var op struct {
				OperationID string   `json:"operationId"`
				Summary     string   `json:"summary"`
				Tags        []string `json:"tags"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if op.OperationID == "" {
				t.Errorf("%s has no operationId", name)
			} else if other, dup := ids[op.OperationID]; dup {
				t.Errorf("%s and %s share operationId %q", name, other, op.OperationID)
			} else {
				ids[op.OperationID] = name
			}
			if op.Summary == "" {
				t.Errorf("%s has no summary", name)
			}
			if len(op.Tags) == 0 {
				t.Errorf("%s has no tag", name)
			}
			for _, tg := range op.Tags {
				if !slices.Contains(tags, tg) {
					t.Errorf("%s has tag %q, not declared in the document's tags %v", name, tg, tags)
				}
			}
		}
	}
	if ops == 0 {
		t.Fatal("the document has no operations")
	}
}

// TestOperations pins the contract's operations so that adding or dropping
// one is a deliberate change to this list too.
func TestOperations(t *testing.T) {
	t.Parallel()
	want := []apitest.Operation{
		{Method: "GET", Path: "/admin/projections"},
		{Method: "POST", Path: "/admin/projections/rebuild"},
		{Method: "POST", Path: "/admin/projections/{name}/rebuild"},
		{Method: "GET", Path: "/healthz"},
		{Method: "GET", Path: "/metrics"},
		{Method: "GET", Path: "/openapi.json"},
		{Method: "GET", Path: "/readyz"},
		{Method: "GET", Path: "/v1/inventory/{sku}"},
		{Method: "POST", Path: "/v1/inventory/{sku}/stock"},
		{Method: "GET", Path: "/v1/orders"},
		{Method: "POST", Path: "/v1/orders"},
		{Method: "GET", Path: "/v1/orders/{id}"},
		{Method: "POST", Path: "/v1/orders/{id}/cancel"},
		{Method: "GET", Path: "/v1/orders/{id}/saga"},
		{Method: "GET", Path: "/v1/sagas"},
		{Method: "GET", Path: "/v1/stats/sales"},
		{Method: "GET", Path: "/v1/streams/{id}/events"},
	}
	got := apitest.MustValidator(t).Operations()
	if !slices.Equal(got, want) {
		t.Fatalf("Operations() =\n%v\nwant\n%v", got, want)
	}
}
