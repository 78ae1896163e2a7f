package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/orderflow/orderflow/gateway"
	"github.com/orderflow/orderflow/internal/dbtest"
)

// response is an HTTP answer, read whole.
type response struct {
	status int
	header http.Header
	body   string
}

// MustDo sends method url with token as bearer (none when empty) and body
// as JSON (none when empty), and reads the answer.
func MustDo(t *testing.T, method, url, token, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, url, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: string(b)}
}

// MustToken mints a token the processes MustStart starts accept.
func MustToken(t *testing.T, subject, role string) string {
	t.Helper()
	tok, err := gateway.MintToken([]byte(testJWTSecret), settingDefault("ORDERFLOW_JWT_ISSUER"), settingDefault("ORDERFLOW_JWT_AUDIENCE"), subject, role, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// requestCount is how many requests of method on route, answered with
// status, an orderflow process has counted; 0 when none.
func (p *process) requestCount(t *testing.T, method, route string, status int) float64 {
	t.Helper()
	return max(0, p.Metric(t, fmt.Sprintf(`orderflow_http_request_duration_seconds_count{method=%q,route=%q,status="%d"}`, method, route, status)))
}

// Two command and two query instances, real processes, behind a gateway
// with static upstreams: requests reach both instances of each; a killed
// instance's breaker opens, GETs go to the other instance, a service with
// no live instance answers 503 at once; restarted instances get traffic
// again.
func TestGatewayRoutesAndFailsOver(t *testing.T) {
	// Not parallel: it runs five orderflow processes.
	db := dbtest.MustURL(t)
	backend := func(role string, port int) *process {
		return MustStart(t, map[string]string{
			"DATABASE_URL": db, "ORDERFLOW_ROLES": role,
			"ORDERFLOW_HTTP_ADDR": fmt.Sprintf("127.0.0.1:%d", port),
		})
	}
	ports := []int{freePort(t), freePort(t), freePort(t), freePort(t)}
	commands := []*process{backend("command", ports[0]), backend("command", ports[1])}
	queries := []*process{backend("query", ports[2]), backend("query", ports[3])}
	gw := MustStart(t, map[string]string{
		"ORDERFLOW_ROLES":                        "gateway",
		"ORDERFLOW_GATEWAY_COMMAND_URLS":         commands[0].base + "," + commands[1].base,
		"ORDERFLOW_GATEWAY_QUERY_URLS":           queries[0].base + "," + queries[1].base,
		"ORDERFLOW_GATEWAY_BREAKER_FAILURES":     "2",
		"ORDERFLOW_GATEWAY_BREAKER_OPEN_TIMEOUT": "1s",
		"ORDERFLOW_GATEWAY_CLIENT_RATE":          "inf",
		"ORDERFLOW_GATEWAY_GLOBAL_RATE":          "inf",
		"ORDERFLOW_HTTP_READ_HEADER_TIMEOUT":     "300ms",
	})
	admin := MustToken(t, "ops", gateway.RoleAdmin)
	addStock := func() response {
		return MustDo(t, http.MethodPost, gw.gateway+"/v1/inventory/SKU-R/stock", admin, `{"quantity":1}`)
	}
	readStock := func() response { return MustDo(t, http.MethodGet, gw.gateway+"/v1/inventory/SKU-R", admin, "") }
	const stockRoute, readRoute = "/v1/inventory/{sku}/stock", "/v1/inventory/{sku}"
	breakerOf := func(p *process) string { return `orderflow_breaker_state{name="gateway ` + p.base + `"}` }

	if res := MustDo(t, http.MethodGet, gw.gateway+"/readyz", "", ""); res.status != http.StatusOK || !strings.Contains(res.body, `"degraded"`) {
		t.Fatalf("gateway /readyz without a projector: %d %s, want 200 degraded", res.status, res.body)
	}

	t.Run("requests reach every instance", func(t *testing.T) {
		for range 10 {
			if res := addStock(); res.status != http.StatusOK {
				t.Fatalf("add stock: %d %s", res.status, res.body)
			}
			// No projector runs: the stock view stays empty, and 404 is
			// the query service's own answer.
			if res := readStock(); res.status != http.StatusNotFound || !strings.Contains(res.body, "urn:orderflow:problem:not-found") {
				t.Fatalf("read stock: %d %s", res.status, res.body)
			}
		}
		for i, p := range commands {
			if n := p.requestCount(t, "POST", stockRoute, 200); n != 5 {
				t.Errorf("command instance %d served %v of 10 commands, want 5 (round robin)", i+1, n)
			}
		}
		for i, p := range queries {
			if n := p.requestCount(t, "GET", readRoute, 404); n != 5 {
				t.Errorf("query instance %d served %v of 10 queries, want 5 (round robin)", i+1, n)
			}
		}
	})

	t.Run("a killed query instance: GETs retry on the other, its breaker opens", func(t *testing.T) {
		queries[1].Kill()
		before := queries[0].requestCount(t, "GET", readRoute, 404)
		for range 10 {
			if res := readStock(); res.status != http.StatusNotFound {
				t.Fatalf("read with one query instance dead: %d %s, want the live one's 404", res.status, res.body)
			}
		}
		if n := queries[0].requestCount(t, "GET", readRoute, 404) - before; n != 10 {
			t.Fatalf("the live query instance served %v of 10 reads", n)
		}
		if s := gw.Metric(t, breakerOf(queries[1])); s != 2 {
			t.Fatalf("breaker of the dead query instance is %v, want 2 (open)", s)
		}
	})

	t.Run("commands are not retried; with every command instance dead, 503 at once", func(t *testing.T) {
		commands[1].Kill()
		failed := 0
		for range 10 {
			switch res := addStock(); res.status {
			case http.StatusOK:
			case http.StatusBadGateway:
				failed++
			default:
				t.Fatalf("add stock with one command instance dead: %d %s", res.status, res.body)
			}
		}
		if failed != 2 || gw.Metric(t, breakerOf(commands[1])) != 2 {
			t.Fatalf("%d commands failed and the breaker is %v; want the 2 that open it", failed, gw.Metric(t, breakerOf(commands[1])))
		}
		commands[0].Kill()
		// Each breaker lets a probe through (a fast 502) once its open
		// timeout has passed; between probes the answer is 503.
		var (
			res  response
			took time.Duration
		)
		waitUntil(t, 10*time.Second, "a 503 once both command breakers are open", func() bool {
			start := time.Now()
			res = addStock()
			took = time.Since(start)
			return res.status == http.StatusServiceUnavailable
		})
		if res.header.Get("Retry-After") == "" || took > 200*time.Millisecond || !strings.Contains(res.body, "upstream-unavailable") {
			t.Fatalf("add stock with no command instance: %d in %s, Retry-After %q: %s; want a fast 503 with Retry-After",
				res.status, took, res.header.Get("Retry-After"), res.body)
		}
		if gw.Metric(t, breakerOf(commands[0])) != 2 || gw.Metric(t, breakerOf(commands[1])) != 2 {
			t.Fatal("503 while a command breaker is not open")
		}
	})

	t.Run("restarted instances get traffic again", func(t *testing.T) {
		commands[0], commands[1] = backend("command", ports[0]), backend("command", ports[1])
		queries[1] = backend("query", ports[3])
		waitUntil(t, 20*time.Second, "every restarted instance serves through the gateway", func() bool {
			addStock()
			readStock()
			return commands[0].requestCount(t, "POST", stockRoute, 200) > 0 && commands[1].requestCount(t, "POST", stockRoute, 200) > 0 &&
				queries[1].requestCount(t, "GET", readRoute, 404) > 0
		})
		for range 4 {
			if res := addStock(); res.status != http.StatusOK {
				t.Fatalf("add stock after the restart: %d %s", res.status, res.body)
			}
		}
	})

	t.Run("a client stalling in its headers is cut at the header timeout", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(gw.gateway, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: gateway\r\n"); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(conn)
		if took := time.Since(start); err != nil || took > 2*time.Second || strings.HasPrefix(string(got), "HTTP/1.1 200") {
			t.Fatalf("connection ended after %s with %q, %v; want it closed unanswered after about 300ms", took, got, err)
		}
	})
}

// Through the real binary, the gateway refuses bad tokens, keeps a
// customer to its own orders, and limits each client.
func TestGatewayAuthAndOwnership(t *testing.T) {
	// Not parallel: it runs a whole orderflow.
	env, _ := fullEnv(t)
	env["ORDERFLOW_ROLES"] = "gateway,command,query,relay,projector"
	env["ORDERFLOW_GATEWAY_CLIENT_RATE"] = "5"
	env["ORDERFLOW_GATEWAY_CLIENT_BURST"] = "20"
	p := MustStart(t, env)
	gw := p.gateway

	iss, aud := settingDefault("ORDERFLOW_JWT_ISSUER"), settingDefault("ORDERFLOW_JWT_AUDIENCE")
	claims := func(change func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": iss, "aud": aud, "sub": "c-1", "role": "customer", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
		if change != nil {
			change(c)
		}
		return c
	}
	sign := func(m jwt.SigningMethod, c jwt.MapClaims, key any) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	// An HMAC over the right secret under an RS256 header: algorithm
	// confusion from the other side.
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	input := enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(claims(nil))
	mac := hmac.New(sha256.New, []byte(testJWTSecret))
	mac.Write([]byte(input))
	rsHeaderHMAC := input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))

	secret := []byte(testJWTSecret)
	tests := []struct {
		name, token, detail string
	}{
		{"missing", "", "needs a bearer token"},
		{"expired", sign(jwt.SigningMethodHS256, claims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), secret), "expired"},
		{"wrong audience", sign(jwt.SigningMethodHS256, claims(func(c jwt.MapClaims) { c["aud"] = "someone-else" }), secret), "valid bearer token"},
		{"wrong issuer", sign(jwt.SigningMethodHS256, claims(func(c jwt.MapClaims) { c["iss"] = "mallory" }), secret), "valid bearer token"},
		{"wrong secret", sign(jwt.SigningMethodHS256, claims(nil), []byte(strings.Repeat("k", 40))), "valid bearer token"},
		{"alg none", sign(jwt.SigningMethodNone, claims(nil), jwt.UnsafeAllowNoneSignatureType), "valid bearer token"},
		{"RS256 signed", sign(jwt.SigningMethodRS256, claims(nil), rsaKey), "valid bearer token"},
		{"RS256 header over an HMAC", rsHeaderHMAC, "valid bearer token"},
		{"oversized", sign(jwt.SigningMethodHS256, claims(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("x", 5<<10) }), secret), "valid bearer token"},
	}
	for _, tt := range tests {
		t.Run("refused: "+tt.name, func(t *testing.T) {
			res := MustDo(t, http.MethodGet, gw+"/v1/inventory/SKU-1", tt.token, "")
			if res.status != http.StatusUnauthorized || !strings.Contains(res.body, tt.detail) || res.header.Get("WWW-Authenticate") == "" {
				t.Fatalf("%d %s (WWW-Authenticate %q), want 401 saying %q", res.status, res.body, res.header.Get("WWW-Authenticate"), tt.detail)
			}
		})
	}

	alice, bob, admin := MustToken(t, "c-1", "customer"), MustToken(t, "c-2", "customer"), MustToken(t, "ops", "admin")
	order := `{"customer_id":"c-1","lines":[{"sku":"SKU-1","quantity":1,"unit_price_cents":100}]}`
	if res := MustDo(t, http.MethodPost, gw+"/v1/orders", bob, order); res.status != http.StatusForbidden {
		t.Fatalf("c-2 placing an order for c-1: %d %s, want 403", res.status, res.body)
	}
	res := MustDo(t, http.MethodPost, gw+"/v1/orders", alice, order)
	var placed struct {
		OrderID string `json:"order_id"`
	}
	if res.status != http.StatusCreated || json.Unmarshal([]byte(res.body), &placed) != nil {
		t.Fatalf("c-1 placing its order: %d %s", res.status, res.body)
	}
	orderURL := gw + "/v1/orders/" + placed.OrderID
	if res := MustDo(t, http.MethodGet, orderURL+"?min_version=1", alice, ""); res.status != http.StatusOK || !strings.Contains(res.body, `"customer_id":"c-1"`) {
		t.Fatalf("c-1 reading its order: %d %s", res.status, res.body)
	}
	for _, tt := range []struct {
		name, method, url, body string
		want                    int
	}{
		{"read", http.MethodGet, orderURL, "", http.StatusNotFound},
		{"read its saga", http.MethodGet, orderURL + "/saga", "", http.StatusNotFound},
		{"cancel", http.MethodPost, orderURL + "/cancel", `{"reason":"mine now"}`, http.StatusNotFound},
		{"list", http.MethodGet, gw + "/v1/orders?customer_id=c-1", "", http.StatusForbidden},
		{"add stock", http.MethodPost, gw + "/v1/inventory/SKU-1/stock", `{"quantity":1}`, http.StatusForbidden},
	} {
		if res := MustDo(t, tt.method, tt.url, bob, tt.body); res.status != tt.want {
			t.Errorf("c-2 trying to %s c-1's order: %d %s, want %d", tt.name, res.status, res.body, tt.want)
		}
	}
	if res := MustDo(t, http.MethodGet, orderURL, admin, ""); res.status != http.StatusOK {
		t.Fatalf("admin reading c-1's order: %d %s", res.status, res.body)
	}
	if res := MustDo(t, http.MethodGet, orderURL, alice, ""); res.status != http.StatusOK || !strings.Contains(res.body, `"status"`) {
		t.Fatalf("c-1's order after c-2's attempts: %d %s", res.status, res.body)
	}

	t.Run("a client past its burst gets 429 with Retry-After", func(t *testing.T) {
		flood := MustToken(t, "c-flood", "customer")
		for i := range 40 {
			res := MustDo(t, http.MethodGet, gw+"/v1/inventory/SKU-1", flood, "")
			if res.status == http.StatusTooManyRequests {
				if res.header.Get("Retry-After") == "" || i < 20 {
					t.Fatalf("429 after %d requests, Retry-After %q; want it past the burst of 20, with Retry-After", i, res.header.Get("Retry-After"))
				}
				// Another client is not limited by this one.
				if res := MustDo(t, http.MethodGet, gw+"/v1/inventory/SKU-1", alice, ""); res.status == http.StatusTooManyRequests {
					t.Fatal("c-1 limited by c-flood's requests")
				}
				return
			}
		}
		t.Fatal("40 requests at once were never limited (rate 5/s, burst 20)")
	})
}
