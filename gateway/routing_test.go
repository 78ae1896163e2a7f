package gateway_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/gateway"
)

const orderID = "0190f2a4-7c1e-7b6e-9d51-3f0c2a9b8e11"

func TestRoutesReachTheirServiceOnEveryInstance(t *testing.T) {
	t.Parallel()
	h := MustHarness(t, baseConfig(), 2)
	h.orders.Store(orderID, "admin-1")
	admin := MustToken(t, "admin-1", gateway.RoleAdmin)
	tests := []struct {
		name, method, path, service string
	}{
		{"place order", http.MethodPost, "/v1/orders", gateway.ServiceCommand},
		{"cancel order", http.MethodPost, "/v1/orders/" + orderID + "/cancel", gateway.ServiceCommand},
		{"add stock", http.MethodPost, "/v1/inventory/sku-1/stock", gateway.ServiceCommand},
		{"stream events", http.MethodGet, "/v1/streams/order-" + orderID + "/events", gateway.ServiceCommand},
		{"list orders", http.MethodGet, "/v1/orders?customer_id=c-1", gateway.ServiceQuery},
		{"get order", http.MethodGet, "/v1/orders/" + orderID, gateway.ServiceQuery},
		{"order saga", http.MethodGet, "/v1/orders/" + orderID + "/saga", gateway.ServiceQuery},
		{"list sagas", http.MethodGet, "/v1/sagas", gateway.ServiceQuery},
		{"stock", http.MethodGet, "/v1/inventory/sku-1", gateway.ServiceQuery},
		{"sales", http.MethodGet, "/v1/stats/sales", gateway.ServiceQuery},
		{"projections", http.MethodGet, "/admin/projections", gateway.ServiceProjector},
		{"rebuild", http.MethodPost, "/admin/projections/order_details/rebuild", gateway.ServiceProjector},
		{"rebuild all", http.MethodPost, "/admin/projections/rebuild", gateway.ServiceProjector},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.reset()
			body := ""
			if tt.method == http.MethodPost {
				body = `{"customer_id":"c-1"}`
			}
			for range 2 {
				if res := h.do(t, tt.method, tt.path, admin, body); res.status != http.StatusOK {
					t.Fatalf("status %d, want 200; body %s", res.status, res.body)
				}
			}
			path, _, _ := strings.Cut(tt.path, "?")
			for _, svc := range []string{gateway.ServiceCommand, gateway.ServiceQuery, gateway.ServiceProjector} {
				for _, u := range h.instances[svc] {
					calls := u.Calls()
					switch {
					case svc == tt.service && len(calls) != 1:
						t.Errorf("%s got %d calls, want 1 of the 2 (round-robin)", u.name, len(calls))
					case svc != tt.service && len(calls) != 0:
						t.Errorf("%s of another service got %d calls", u.name, len(calls))
					}
					for _, c := range calls {
						if c.method != tt.method || c.path != path {
							t.Errorf("%s got %s %s, want %s %s", u.name, c.method, c.path, tt.method, path)
						}
						if tt.method == http.MethodPost && c.body != body {
							t.Errorf("%s got body %q, want %q", u.name, c.body, body)
						}
					}
				}
			}
		})
	}
}

func TestGatewayEndpoints(t *testing.T) {
	t.Parallel()
	h := MustHarness(t, baseConfig(), 1)
	if res := h.do(t, http.MethodGet, "/healthz", "", ""); res.status != http.StatusOK {
		t.Fatalf("healthz %d", res.status)
	}
	if res := h.do(t, http.MethodGet, "/readyz", "", ""); res.status != http.StatusOK {
		t.Fatalf("readyz %d: %s", res.status, res.body)
	}
	// The API document, without a token, from the gateway itself.
	if res := h.do(t, http.MethodGet, "/openapi.json", "", ""); res.status != http.StatusOK ||
		!strings.HasPrefix(res.header.Get("Content-Type"), "application/json") || res.body != string(api.OpenAPI()) {
		t.Fatalf("openapi.json: %d %q, %d bytes; want 200, the document", res.status, res.header.Get("Content-Type"), len(res.body))
	}
	if calls := h.callsTo(gateway.ServiceQuery); len(calls) != 0 {
		t.Fatalf("openapi.json went upstream: %v", calls)
	}
	h.do(t, http.MethodGet, "/v1/inventory/sku-1", MustToken(t, "c-1", gateway.RoleCustomer), "")
	res := h.do(t, http.MethodGet, "/metrics", "", "")
	for _, want := range []string{
		`orderflow_gateway_requests_total{method="GET",route="/v1/inventory/{sku}",status="200"} 1`,
		`orderflow_gateway_request_duration_seconds_count{method="GET",route="/v1/inventory/{sku}",status="200"} 1`,
		`orderflow_gateway_upstream_attempts_total{outcome="ok",service="query"} 1`,
	} {
		if !strings.Contains(res.body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Methods nobody defined share one label: a client sending a new one
	// each time must not grow the metrics.
	for i := range 3 {
		h.do(t, fmt.Sprintf("INVENTED%d", i), "/v1/inventory/sku-1", "", "")
	}
	after := h.do(t, http.MethodGet, "/metrics", "", "").body
	if strings.Contains(after, "INVENTED") || !strings.Contains(after, `method="other"`) {
		t.Errorf("invented methods in the metrics, or not counted as other:\n%s", after)
	}
	for _, path := range []string{"/nowhere", "/v1/orders/x/y/z", "/v2/orders"} {
		p := h.do(t, http.MethodGet, path, "", "").problem(t, http.StatusNotFound)
		if p["type"] != "urn:orderflow:problem:not-found" {
			t.Errorf("%s: problem type %v", path, p["type"])
		}
	}

	t.Run("degraded without a projector instance", func(t *testing.T) {
		gw := MustGateway(t, baseConfig(), gateway.StaticResolver{
			gateway.ServiceCommand: {"http://127.0.0.1:1"}, gateway.ServiceQuery: {"http://127.0.0.1:2"},
		})
		rec := serve(gw, http.MethodGet, "/readyz")
		if body := rec.Body.String(); rec.Code != http.StatusOK || !strings.Contains(body, `"degraded"`) || !strings.Contains(body, "no healthy projector instance") {
			t.Fatalf("readyz %d %s, want 200 degraded naming the projector", rec.Code, body)
		}
	})
	t.Run("not ready without a command or query instance", func(t *testing.T) {
		for _, missing := range []string{gateway.ServiceCommand, gateway.ServiceQuery} {
			upstreams := gateway.StaticResolver{
				gateway.ServiceCommand: {"http://127.0.0.1:1"}, gateway.ServiceQuery: {"http://127.0.0.1:2"},
				gateway.ServiceProjector: {"http://127.0.0.1:3"},
			}
			delete(upstreams, missing)
			rec := serve(MustGateway(t, baseConfig(), upstreams), http.MethodGet, "/readyz")
			if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "no healthy "+missing+" instance") {
				t.Fatalf("readyz without %s: %d %s, want 503 naming it", missing, rec.Code, rec.Body)
			}
		}
	})
	t.Run("draining", func(t *testing.T) {
		h.gw.Drain()
		if res := h.do(t, http.MethodGet, "/readyz", "", ""); res.status != http.StatusServiceUnavailable {
			t.Fatalf("readyz while draining %d, want 503", res.status)
		}
	})
}

func TestNoInstanceIs503(t *testing.T) {
	t.Parallel()
	gw := MustGateway(t, baseConfig(), gateway.StaticResolver{})
	req := newRequest(http.MethodGet, "/v1/inventory/sku-1", MustToken(t, "c-1", gateway.RoleCustomer))
	rec := serveRequest(gw, req)
	res := response{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
	res.problem(t, http.StatusServiceUnavailable)
	if res.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
}
