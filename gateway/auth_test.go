package gateway_test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/orderflow/orderflow/gateway"
)

// tokenClaims builds the claims of a token; change alters them first.
func tokenClaims(change func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"iss": testIssuer, "aud": testAudience, "sub": "alice", "role": gateway.RoleCustomer,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	if change != nil {
		change(c)
	}
	return c
}

func mustSign(tb testing.TB, m jwt.SigningMethod, c jwt.MapClaims, key any) string {
	tb.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// hmacWithHeader signs claims with the gateway's secret by hand under any
// header, as an attacker would to try algorithm confusion.
func hmacWithHeader(tb testing.TB, header map[string]string, c jwt.MapClaims) string {
	tb.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			tb.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(header) + "." + enc(c)
	mac := hmac.New(sha256.New, testSecret)
	mac.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	h := MustHarness(t, baseConfig(), 1)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	none := mustSign(t, jwt.SigningMethodNone, tokenClaims(nil), jwt.UnsafeAllowNoneSignatureType)
	valid := mustSign(t, jwt.SigningMethodHS256, tokenClaims(nil), testSecret)
	big := mustSign(t, jwt.SigningMethodHS256, tokenClaims(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("x", 5<<10) }), testSecret)
	if len(big) <= 5<<10 {
		t.Fatalf("oversized token is only %d bytes", len(big))
	}
	tests := []struct {
		name   string
		header string // Authorization; "" sends none
		want   int
	}{
		{"missing", "", http.StatusUnauthorized},
		{"empty bearer", "Bearer ", http.StatusUnauthorized},
		{"not bearer", "Basic YWxpY2U6c2VjcmV0", http.StatusUnauthorized},
		{"malformed", "Bearer not.a.jwt", http.StatusUnauthorized},
		{"garbage", "Bearer " + strings.Repeat("A", 100), http.StatusUnauthorized},
		{"expired", "Bearer " + mustSign(t, jwt.SigningMethodHS256, tokenClaims(func(c jwt.MapClaims) {
			c["exp"] = time.Now().Add(-time.Minute).Unix()
		}), testSecret), http.StatusUnauthorized},
		{"no exp", "Bearer " + mustSign(t, jwt.SigningMethodHS256, tokenClaims(func(c jwt.MapClaims) { delete(c, "exp") }), testSecret), http.StatusUnauthorized},
		{"issued in the future", "Bearer " + mustSign(t, jwt.SigningMethodHS256, tokenClaims(func(c jwt.MapClaims) {
			c["iat"] = time.Now().Add(time.Hour).Unix()
		}), testSecret), http.StatusUnauthorized},
		{"wrong issuer", "Bearer " + mustSign(t, jwt.SigningMethodHS256, tokenClaims(func(c jwt.MapClaims) { c["iss"] = "someone-else" }), testSecret), http.StatusUnauthorized},
		{"no issuer", "Bearer " + mustSign(t, jwt.SigningMethodHS256, tokenClaims(func(c jwt.MapClaims) { delete(c, "iss") }), testSecret), http.StatusUnauthorized},
		{"wrong audience", "Bearer " + mustSign(t, jwt.SigningMethodHS256, tokenClaims(func(c jwt.MapClaims) { c["aud"] = "another-api" }), testSecret), http.StatusUnauthorized},
		{"wrong secret", "Bearer " + mustSign(t, jwt.SigningMethodHS256, tokenClaims(nil), []byte("another-secret-of-at-least-32-bytes!")), http.StatusUnauthorized},
		{"alg none", "Bearer " + none, http.StatusUnauthorized},
		{"HS256, signature stripped", "Bearer " + strings.TrimSuffix(valid, valid[strings.LastIndex(valid, ".")+1:]), http.StatusUnauthorized},
		{"RS256 signed", "Bearer " + mustSign(t, jwt.SigningMethodRS256, tokenClaims(nil), rsaKey), http.StatusUnauthorized},
		{"RS256 header, HMAC with the secret", "Bearer " + hmacWithHeader(t, map[string]string{"alg": "RS256", "typ": "JWT"}, tokenClaims(nil)), http.StatusUnauthorized},
		{"HS512 with the secret", "Bearer " + mustSign(t, jwt.SigningMethodHS512, tokenClaims(nil), testSecret), http.StatusUnauthorized},
		{"unknown role", "Bearer " + mustSign(t, jwt.SigningMethodHS256, tokenClaims(func(c jwt.MapClaims) { c["role"] = "root" }), testSecret), http.StatusUnauthorized},
		{"no subject", "Bearer " + mustSign(t, jwt.SigningMethodHS256, tokenClaims(func(c jwt.MapClaims) { delete(c, "sub") }), testSecret), http.StatusUnauthorized},
		{"subject with a slash", "Bearer " + mustSign(t, jwt.SigningMethodHS256, tokenClaims(func(c jwt.MapClaims) { c["sub"] = "a/b" }), testSecret), http.StatusUnauthorized},
		{"oversized (5 KiB)", "Bearer " + big, http.StatusUnauthorized},
		{"valid customer", "Bearer " + valid, http.StatusOK},
		{"valid customer, lower-case scheme", "bearer " + valid, http.StatusOK},
		{"valid admin", "Bearer " + MustToken(t, "ops", gateway.RoleAdmin), http.StatusOK},
		{"HS256 header, HMAC by hand", "Bearer " + hmacWithHeader(t, map[string]string{"alg": "HS256", "typ": "JWT"}, tokenClaims(nil)), http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.reset()
			req, err := http.NewRequest(http.MethodGet, h.url+"/v1/inventory/sku-1", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			res := h.send(t, req)
			if tt.want == http.StatusOK {
				if res.status != http.StatusOK {
					t.Fatalf("status %d, want 200; body %s", res.status, res.body)
				}
				if n := len(h.callsTo(gateway.ServiceQuery)); n != 1 {
					t.Fatalf("upstream got %d calls, want 1", n)
				}
				return
			}
			p := res.problem(t, tt.want)
			if got := res.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer ") || !strings.Contains(got, `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate %q", got)
			}
			if p["type"] != "urn:orderflow:problem:unauthorized" {
				t.Errorf("problem type %v", p["type"])
			}
			if n := len(h.callsTo(gateway.ServiceQuery)); n != 0 {
				t.Fatalf("an unauthenticated request reached the upstream (%d calls)", n)
			}
		})
	}
}

// The gateway remembers verified tokens, but not past their expiry.
func TestRememberedTokenExpires(t *testing.T) {
	t.Parallel()
	h := MustHarness(t, baseConfig(), 1)
	// exp has whole seconds: the token lives for between one and two.
	tok, err := gateway.MintToken(testSecret, testIssuer, testAudience, "alice", gateway.RoleCustomer, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if res := h.do(t, http.MethodGet, "/v1/inventory/sku-1", tok, ""); res.status != http.StatusOK {
			t.Fatalf("fresh token: %d %s", res.status, res.body)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		res := h.do(t, http.MethodGet, "/v1/inventory/sku-1", tok, "")
		if res.status == http.StatusUnauthorized {
			if p := res.problem(t, http.StatusUnauthorized); !strings.Contains(p["detail"].(string), "expired") {
				t.Fatalf("refused as %v, want expired", p["detail"])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a 2s token still accepted after 5s: %d", res.status)
		}
		time.Sleep(50 * time.Millisecond) // polling for the expiry
	}
}

func TestMintToken(t *testing.T) {
	t.Parallel()
	tok, err := gateway.MintToken(testSecret, testIssuer, testAudience, "alice", gateway.RoleCustomer, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return testSecret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer(testIssuer), jwt.WithAudience(testAudience), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatal(err)
	}
	c := parsed.Claims.(jwt.MapClaims)
	if c["sub"] != "alice" || c["role"] != gateway.RoleCustomer {
		t.Fatalf("claims %v", c)
	}
	exp, err := c.GetExpirationTime()
	if err != nil || time.Until(exp.Time) > time.Minute || time.Until(exp.Time) < 58*time.Second {
		t.Fatalf("exp %v (%v), want a minute from now", exp, err)
	}

	_, err = gateway.MintToken([]byte("short"), "", "", "a/b", "root", 0)
	if err == nil {
		t.Fatal("MintToken accepted bad arguments")
	}
	for _, want := range []string{"secret", "issuer", "audience", "subject", "role", "ttl"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	err := gateway.Config{MaxBodyBytes: -1, PerClientRate: -1, BreakerOpenTimeout: -1}.Validate()
	if err == nil {
		t.Fatal("zero config is valid")
	}
	for _, want := range []string{"secret", "issuer", "audience", "max body", "per-client rate", "breaker open timeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if err := baseConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := gateway.New(baseConfig(), nil, nil); err == nil {
		t.Fatal("New accepted a nil resolver")
	}
}
