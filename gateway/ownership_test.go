package gateway_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/gateway"
)

const (
	aliceOrder   = "0190f2a4-7c1e-7b6e-9d51-3f0c2a9b8e11"
	aliceOrder2  = "0190f2a4-7c1e-7b6e-9d51-3f0c2a9b8e12"
	bobOrder     = "0190f2a4-7c1e-7b6e-9d51-3f0c2a9b8e22"
	missingOrder = "0190f2a4-7c1e-7b6e-9d51-3f0c2a9b8e33"
)

func TestCustomerReachesOnlyItsOwnOrders(t *testing.T) {
	t.Parallel()
	h := MustHarness(t, baseConfig(), 2)
	h.orders.Store(aliceOrder, "alice")
	h.orders.Store(bobOrder, "bob")
	alice := MustToken(t, "alice", gateway.RoleCustomer)
	admin := MustToken(t, "ops", gateway.RoleAdmin)

	tests := []struct {
		name, token, method, path, body string
		want                            int
		forwarded                       string // service the request must reach; "" for none
	}{
		{"own order", alice, http.MethodGet, "/v1/orders/" + aliceOrder, "", http.StatusOK, gateway.ServiceQuery},
		{"own saga", alice, http.MethodGet, "/v1/orders/" + aliceOrder + "/saga", "", http.StatusOK, gateway.ServiceQuery},
		{"cancel own", alice, http.MethodPost, "/v1/orders/" + aliceOrder + "/cancel", "", http.StatusOK, gateway.ServiceCommand},
		{"another's order", alice, http.MethodGet, "/v1/orders/" + bobOrder, "", http.StatusNotFound, ""},
		{"another's saga", alice, http.MethodGet, "/v1/orders/" + bobOrder + "/saga", "", http.StatusNotFound, ""},
		{"cancel another's", alice, http.MethodPost, "/v1/orders/" + bobOrder + "/cancel", "", http.StatusNotFound, ""},
		{"missing order", alice, http.MethodGet, "/v1/orders/" + missingOrder, "", http.StatusNotFound, ""},
		{"cancel missing", alice, http.MethodPost, "/v1/orders/" + missingOrder + "/cancel", "", http.StatusNotFound, ""},
		{"another's order, waiting for a version", alice, http.MethodGet, "/v1/orders/" + bobOrder + "?min_version=2", "", http.StatusPreconditionFailed, ""},
		{"bad order id", alice, http.MethodGet, "/v1/orders/not-a-uuid", "", http.StatusBadRequest, ""},
		{"list another's", alice, http.MethodGet, "/v1/orders?customer_id=bob", "", http.StatusForbidden, ""},
		{"list own and another's", alice, http.MethodGet, "/v1/orders?customer_id=alice&customer_id=bob", "", http.StatusForbidden, ""},
		{"list own", alice, http.MethodGet, "/v1/orders?customer_id=alice&status=pending", "", http.StatusOK, gateway.ServiceQuery},
		{"list without customer", alice, http.MethodGet, "/v1/orders?limit=5", "", http.StatusOK, gateway.ServiceQuery},
		{"place for another", alice, http.MethodPost, "/v1/orders", `{"customer_id":"bob","lines":[]}`, http.StatusForbidden, ""},
		{"place for another, duplicate key", alice, http.MethodPost, "/v1/orders", `{"customer_id":"alice","customer_id":"bob"}`, http.StatusForbidden, ""},
		{"place without customer", alice, http.MethodPost, "/v1/orders", `{"lines":[]}`, http.StatusForbidden, ""},
		{"place malformed", alice, http.MethodPost, "/v1/orders", `{"customer_id":`, http.StatusBadRequest, ""},
		{"place for itself", alice, http.MethodPost, "/v1/orders", `{"customer_id":"alice","lines":[{"sku":"s-1","quantity":1,"unit_price_cents":100}]}`, http.StatusOK, gateway.ServiceCommand},
		{"add stock", alice, http.MethodPost, "/v1/inventory/sku-1/stock", `{"quantity":5}`, http.StatusForbidden, ""},
		{"audit trail", alice, http.MethodGet, "/v1/streams/order-" + bobOrder + "/events", "", http.StatusForbidden, ""},
		{"all sagas", alice, http.MethodGet, "/v1/sagas", "", http.StatusForbidden, ""},
		{"admin projections", alice, http.MethodGet, "/admin/projections", "", http.StatusForbidden, ""},
		{"admin rebuild", alice, http.MethodPost, "/admin/projections/order_details/rebuild", "", http.StatusForbidden, ""},
		{"admin rebuild all", alice, http.MethodPost, "/admin/projections/rebuild", "", http.StatusForbidden, ""},
		{"admin unknown path", alice, http.MethodGet, "/admin/other", "", http.StatusForbidden, ""},
		{"admin reads another's order", admin, http.MethodGet, "/v1/orders/" + bobOrder, "", http.StatusOK, gateway.ServiceQuery},
		{"admin cancels another's", admin, http.MethodPost, "/v1/orders/" + bobOrder + "/cancel", "", http.StatusOK, gateway.ServiceCommand},
		{"admin lists another's", admin, http.MethodGet, "/v1/orders?customer_id=bob", "", http.StatusOK, gateway.ServiceQuery},
		{"admin places for another", admin, http.MethodPost, "/v1/orders", `{"customer_id":"bob"}`, http.StatusOK, gateway.ServiceCommand},
		{"admin projections as admin", admin, http.MethodGet, "/admin/projections", "", http.StatusOK, gateway.ServiceProjector},
		{"admin unknown path as admin", admin, http.MethodGet, "/admin/other", "", http.StatusNotFound, ""},
	}
	var notFoundBody string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.reset()
			res := h.do(t, tt.method, tt.path, tt.token, tt.body)
			if tt.want == http.StatusOK {
				if res.status != http.StatusOK {
					t.Fatalf("status %d, want 200; body %s", res.status, res.body)
				}
			} else {
				p := res.problem(t, tt.want)
				if tt.want == http.StatusNotFound && tt.token == alice {
					// Another's order and a missing one must read alike.
					delete(p, "instance")
					delete(p, "request_id")
					delete(p, "detail")
					if s := p["type"].(string) + p["title"].(string); notFoundBody == "" {
						notFoundBody = s
					} else if s != notFoundBody {
						t.Errorf("404 %q differs from another 404 %q", s, notFoundBody)
					}
				}
			}
			for _, svc := range []string{gateway.ServiceCommand, gateway.ServiceProjector} {
				calls := h.callsTo(svc)
				if (svc == tt.forwarded) != (len(calls) > 0) {
					t.Errorf("%s got %d calls, forwarded to %q", svc, len(calls), tt.forwarded)
				}
				if svc == tt.forwarded && tt.body != "" && calls[0].body != tt.body {
					t.Errorf("forwarded body %q, want %q", calls[0].body, tt.body)
				}
			}
			// The query service sees at most an ownership lookup, unless the
			// request itself was forwarded there.
			calls := h.callsTo(gateway.ServiceQuery)
			path, _, _ := strings.Cut(tt.path, "?")
			if tt.forwarded == gateway.ServiceQuery {
				if len(calls) == 0 || calls[len(calls)-1].path != path {
					t.Errorf("query calls %+v, want the last one for %s", calls, path)
				}
				return
			}
			for _, c := range calls {
				if c.method != http.MethodGet || !strings.HasPrefix(path, c.path) || len(calls) > 1 {
					t.Errorf("query got %s %s, want at most an ownership lookup", c.method, c.path)
				}
			}
		})
	}
}

func TestOrderLookupPassesMinVersion(t *testing.T) {
	t.Parallel()
	h := MustHarness(t, baseConfig(), 1)
	h.orders.Store(aliceOrder, "alice")
	alice := MustToken(t, "alice", gateway.RoleCustomer)

	res := h.do(t, http.MethodGet, "/v1/orders/"+aliceOrder+"/saga?min_version=3", alice, "")
	if res.status != http.StatusOK {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	calls := h.callsTo(gateway.ServiceQuery)
	if len(calls) != 2 {
		t.Fatalf("query got %d calls, want the lookup and the read", len(calls))
	}
	if calls[0].path != "/v1/orders/"+aliceOrder || calls[0].query != "min_version=3" {
		t.Errorf("lookup %s?%s, want the order with min_version=3", calls[0].path, calls[0].query)
	}
	if calls[1].path != "/v1/orders/"+aliceOrder+"/saga" || calls[1].query != "min_version=3" {
		t.Errorf("read %s?%s", calls[1].path, calls[1].query)
	}
	if got := calls[0].header.Get(gateway.ClientHeader); got != "alice" {
		t.Errorf("lookup as %q, want alice", got)
	}

	// An order whose owner the gateway does not know yet (see
	// TestOwnerIsLookedUpOnce).
	h.reset()
	h.orders.Store(aliceOrder2, "alice")
	if res := h.do(t, http.MethodPost, "/v1/orders/"+aliceOrder2+"/cancel", alice, ""); res.status != http.StatusOK {
		t.Fatalf("cancel %d: %s", res.status, res.body)
	}
	calls = h.callsTo(gateway.ServiceQuery)
	if len(calls) != 1 || calls[0].query != "min_version=1" {
		t.Fatalf("cancel lookup %+v, want one with min_version=1 (wait for a just-placed order)", calls)
	}

	h.reset()
	if res := h.do(t, http.MethodGet, "/v1/orders?status=pending", alice, ""); res.status != http.StatusOK {
		t.Fatalf("list %d: %s", res.status, res.body)
	}
	calls = h.callsTo(gateway.ServiceQuery)
	if len(calls) != 1 {
		t.Fatalf("query got %d calls", len(calls))
	}
	q, err := url.ParseQuery(calls[0].query)
	if err != nil || q.Get("customer_id") != "alice" || q.Get("status") != "pending" || len(q["customer_id"]) != 1 {
		t.Fatalf("list forwarded with %q, want customer_id=alice and status kept", calls[0].query)
	}
}

// An order's customer never changes: the gateway looks it up once, keeps
// it, and later requests for the order, by its owner or anyone else, go
// upstream without a lookup. A missing order is not kept.
func TestOwnerIsLookedUpOnce(t *testing.T) {
	t.Parallel()
	h := MustHarness(t, baseConfig(), 2)
	h.orders.Store(aliceOrder, "alice")
	alice, bob := MustToken(t, "alice", gateway.RoleCustomer), MustToken(t, "bob", gateway.RoleCustomer)

	if res := h.do(t, http.MethodGet, "/v1/orders/"+aliceOrder, alice, ""); res.status != http.StatusOK {
		t.Fatalf("first read %d: %s", res.status, res.body)
	}
	if n := len(h.callsTo(gateway.ServiceQuery)); n != 2 {
		t.Fatalf("first read made %d query calls, want the lookup and the read", n)
	}
	for _, tt := range []struct {
		name, token, method, path string
		want, queryCalls          int
	}{
		{"its owner reads it again", alice, http.MethodGet, "/v1/orders/" + aliceOrder, http.StatusOK, 1},
		{"its owner reads its saga", alice, http.MethodGet, "/v1/orders/" + aliceOrder + "/saga", http.StatusOK, 1},
		{"its owner cancels it", alice, http.MethodPost, "/v1/orders/" + aliceOrder + "/cancel", http.StatusOK, 0},
		{"another customer reads it", bob, http.MethodGet, "/v1/orders/" + aliceOrder, http.StatusNotFound, 0},
		{"another customer cancels it", bob, http.MethodPost, "/v1/orders/" + aliceOrder + "/cancel", http.StatusNotFound, 0},
		{"another customer waits for a version of it", bob, http.MethodGet, "/v1/orders/" + aliceOrder + "?min_version=1", http.StatusPreconditionFailed, 0},
	} {
		h.reset()
		res := h.do(t, tt.method, tt.path, tt.token, "")
		if res.status != tt.want {
			t.Fatalf("%s: %d %s, want %d", tt.name, res.status, res.body, tt.want)
		}
		if n := len(h.callsTo(gateway.ServiceQuery)); n != tt.queryCalls {
			t.Errorf("%s: %d query calls, want %d (no lookup)", tt.name, n, tt.queryCalls)
		}
	}

	h.reset()
	if res := h.do(t, http.MethodGet, "/v1/orders/"+missingOrder, bob, ""); res.status != http.StatusNotFound {
		t.Fatalf("missing order: %d %s", res.status, res.body)
	}
	h.orders.Store(missingOrder, "bob") // placed after the 404
	if res := h.do(t, http.MethodGet, "/v1/orders/"+missingOrder, bob, ""); res.status != http.StatusOK {
		t.Fatalf("order placed after a 404: %d %s, want it found", res.status, res.body)
	}
}
