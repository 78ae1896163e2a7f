package paymentprovider_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/paymentprovider"
)

type chargeBody struct {
	ChargeID      string `json:"charge_id"`
	OrderID       string `json:"order_id"`
	AmountCents   int64  `json:"amount_cents"`
	Status        string `json:"status"`
	DeclineReason string `json:"decline_reason"`
}

type refundBody struct {
	RefundID    string `json:"refund_id"`
	ChargeID    string `json:"charge_id"`
	AmountCents int64  `json:"amount_cents"`
	Status      string `json:"status"`
}

func chargeJSON(orderID string, amount int64, key string) string {
	return fmt.Sprintf(`{"order_id":%q,"amount_cents":%d,"idempotency_key":%q}`, orderID, amount, key)
}

func refundJSON(chargeID string, amount int64, key string) string {
	return fmt.Sprintf(`{"charge_id":%q,"amount_cents":%d,"idempotency_key":%q}`, chargeID, amount, key)
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     paymentprovider.Config
		nErrors int
	}{
		{name: "zero", cfg: paymentprovider.Config{}},
		{name: "full", cfg: paymentprovider.Config{Latency: time.Second, FailureRate: 1, Outage: true}},
		{name: "rate above 1", cfg: paymentprovider.Config{FailureRate: 1.5}, nErrors: 1},
		{name: "rate NaN", cfg: paymentprovider.Config{FailureRate: math.NaN()}, nErrors: 1},
		{name: "negative latency and rate", cfg: paymentprovider.Config{Latency: -time.Second, FailureRate: -0.1}, nErrors: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if tt.nErrors == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			joined, ok := err.(interface{ Unwrap() []error })
			if !ok || len(joined.Unwrap()) != tt.nErrors {
				t.Fatalf("Validate() = %v, want %d joined errors", err, tt.nErrors)
			}
			if _, err := paymentprovider.NewServer(tt.cfg, slog.New(slog.DiscardHandler)); err == nil {
				t.Fatal("NewServer accepted an invalid config")
			}
		})
	}
	if _, err := paymentprovider.NewServer(paymentprovider.Config{}, nil); err == nil {
		t.Fatal("NewServer accepted a nil logger")
	}
}

func TestChargeByFailureRate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		rate       float64
		wantStatus string
		wantReason string
	}{
		{name: "rate 0 captures", rate: 0, wantStatus: paymentprovider.StatusCaptured},
		{name: "rate 1 declines", rate: 1, wantStatus: paymentprovider.StatusDeclined, wantReason: paymentprovider.SimulatedDeclineReason},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := MustProvider(t, paymentprovider.Config{FailureRate: tt.rate}, nil)
			var got chargeBody
			p.do(t, http.MethodPost, "/v1/charges", "", chargeJSON("o-1", 1250, "k-1")).decode(t, http.StatusCreated, &got)
			if got.Status != tt.wantStatus || got.DeclineReason != tt.wantReason || got.ChargeID == "" ||
				got.OrderID != "o-1" || got.AmountCents != 1250 {
				t.Fatalf("charge = %+v, want status %q reason %q for o-1/1250", got, tt.wantStatus, tt.wantReason)
			}
			want := paymentprovider.State{FailureRate: tt.rate, Charges: 1}
			if tt.wantStatus == paymentprovider.StatusDeclined {
				want.Declines = 1
			} else {
				want.CapturedCents = 1250
			}
			if st := p.srv.State(); st != want {
				t.Fatalf("state = %+v, want %+v", st, want)
			}
		})
	}
}

func TestDeclineIsDeterministicPerKey(t *testing.T) {
	t.Parallel()
	cfg := paymentprovider.Config{FailureRate: 0.5}
	a, b := MustProvider(t, cfg, nil), MustProvider(t, cfg, nil)
	seen := map[string]int{}
	for i := range 40 {
		key := fmt.Sprintf("key-%d", i)
		var x, y chargeBody
		a.do(t, http.MethodPost, "/v1/charges", "", chargeJSON("o", 1, key)).decode(t, http.StatusCreated, &x)
		b.do(t, http.MethodPost, "/v1/charges", "", chargeJSON("other-order", 99, key)).decode(t, http.StatusCreated, &y)
		if x.Status != y.Status {
			t.Fatalf("key %s: %s on one provider, %s on another", key, x.Status, y.Status)
		}
		seen[x.Status]++
	}
	if seen[paymentprovider.StatusCaptured] == 0 || seen[paymentprovider.StatusDeclined] == 0 {
		t.Fatalf("at rate 0.5 over 40 keys got %v, want both outcomes", seen)
	}
}

func TestChargeIdempotent(t *testing.T) {
	t.Parallel()
	p := MustProvider(t, paymentprovider.Config{}, nil)
	body := chargeJSON("o-1", 500, "k-1")
	first := p.do(t, http.MethodPost, "/v1/charges", "", body)
	var c chargeBody
	first.decode(t, http.StatusCreated, &c)

	// The same request again, reformatted: same body, 200, nothing new.
	again := p.do(t, http.MethodPost, "/v1/charges", "", `{ "idempotency_key": "k-1", "amount_cents": 500, "order_id": "o-1" }`)
	again.decode(t, http.StatusOK, nil)
	if string(again.body) != string(first.body) {
		t.Fatalf("retry body = %s, want %s", again.body, first.body)
	}
	want := paymentprovider.State{Charges: 1, CapturedCents: 500}
	if st := p.srv.State(); st != want {
		t.Fatalf("state = %+v, want %+v", st, want)
	}

	for name, other := range map[string]string{
		"other amount": chargeJSON("o-1", 501, "k-1"),
		"other order":  chargeJSON("o-2", 500, "k-1"),
	} {
		pr := p.do(t, http.MethodPost, "/v1/charges", "", other).problem(t, http.StatusUnprocessableEntity)
		if !strings.HasSuffix(pr.Type, "idempotency-key-reused") {
			t.Fatalf("%s: problem type = %q", name, pr.Type)
		}
	}
	if st := p.srv.State(); st != want {
		t.Fatalf("after reused keys state = %+v, want %+v", st, want)
	}

	// A declined charge is replayed as declined too.
	p.do(t, http.MethodPut, "/admin/config", "", `{"failure_rate":1}`).decode(t, http.StatusOK, nil)
	var d1, d2 chargeBody
	p.do(t, http.MethodPost, "/v1/charges", "", chargeJSON("o-3", 7, "k-3")).decode(t, http.StatusCreated, &d1)
	p.do(t, http.MethodPost, "/v1/charges", "", chargeJSON("o-3", 7, "k-3")).decode(t, http.StatusOK, &d2)
	if d1 != d2 || d1.Status != paymentprovider.StatusDeclined {
		t.Fatalf("declined charge %+v replayed as %+v", d1, d2)
	}
	// And the first key still answers captured: the rate applies to new charges.
	var c2 chargeBody
	p.do(t, http.MethodPost, "/v1/charges", "", body).decode(t, http.StatusOK, &c2)
	if c2 != c {
		t.Fatalf("after rate change retry = %+v, want %+v", c2, c)
	}
}

// A void returns the charge made under its key as it is; a key voided
// first can never be charged: every charge under it, whatever its order
// and amount, gets the void's decline. A void moves no money.
func TestVoids(t *testing.T) {
	t.Parallel()
	p := MustProvider(t, paymentprovider.Config{}, nil)
	var charged, found chargeBody
	p.do(t, http.MethodPost, "/v1/charges", "", chargeJSON("o-1", 500, "charge:o-1")).decode(t, http.StatusCreated, &charged)
	p.do(t, http.MethodPost, "/v1/voids", "", `{"idempotency_key":"charge:o-1"}`).decode(t, http.StatusOK, &found)
	if found != charged || found.Status != paymentprovider.StatusCaptured {
		t.Fatalf("void of a charged key = %+v, want the charge %+v", found, charged)
	}

	var voided, again, late chargeBody
	p.do(t, http.MethodPost, "/v1/voids", "", `{"idempotency_key":"charge:o-2"}`).decode(t, http.StatusCreated, &voided)
	if voided.ChargeID == "" || voided.Status != paymentprovider.StatusDeclined || voided.DeclineReason != paymentprovider.VoidedDeclineReason {
		t.Fatalf("void of a fresh key = %+v, want a decline with reason %q", voided, paymentprovider.VoidedDeclineReason)
	}
	p.do(t, http.MethodPost, "/v1/voids", "", `{"idempotency_key":"charge:o-2"}`).decode(t, http.StatusOK, &again)
	p.do(t, http.MethodPost, "/v1/charges", "", chargeJSON("o-2", 700, "charge:o-2")).decode(t, http.StatusOK, &late)
	if again != voided || late != voided {
		t.Fatalf("after the void: void again %+v, charge %+v; want both %+v", again, late, voided)
	}
	want := paymentprovider.State{Charges: 1, CapturedCents: 500}
	if st := p.srv.State(); st != want {
		t.Fatalf("state = %+v, want %+v (a void charges nothing)", st, want)
	}
	// Nothing to refund on a void.
	p.do(t, http.MethodPost, "/v1/refunds", "", refundJSON(voided.ChargeID, 1, "refund:o-2")).problem(t, http.StatusNotFound)
}

func TestRefunds(t *testing.T) {
	t.Parallel()
	p := MustProvider(t, paymentprovider.Config{}, nil)
	charge := func(orderID string, amount int64) string {
		t.Helper()
		var c chargeBody
		p.do(t, http.MethodPost, "/v1/charges", "", chargeJSON(orderID, amount, "charge-"+orderID)).decode(t, http.StatusCreated, &c)
		return c.ChargeID
	}
	refund := func(chargeID string, amount int64, key string) response {
		t.Helper()
		return p.do(t, http.MethodPost, "/v1/refunds", "", refundJSON(chargeID, amount, key))
	}

	full := charge("full", 1000)
	var r refundBody
	refund(full, 1000, "r-full").decode(t, http.StatusCreated, &r)
	if r.RefundID == "" || r.ChargeID != full || r.AmountCents != 1000 || r.Status != paymentprovider.StatusRefunded {
		t.Fatalf("refund = %+v", r)
	}
	var again refundBody
	refund(full, 1000, "r-full").decode(t, http.StatusOK, &again)
	if again != r {
		t.Fatalf("replayed refund = %+v, want %+v", again, r)
	}
	refund(full, 1, "r-full-more").problem(t, http.StatusConflict)
	refund(full, 999, "r-full").problem(t, http.StatusUnprocessableEntity)

	partial := charge("partial", 1000)
	refund(partial, 300, "r-p1").decode(t, http.StatusCreated, nil)
	refund(partial, 700, "r-p2").decode(t, http.StatusCreated, nil)
	refund(partial, 1, "r-p3").problem(t, http.StatusConflict)

	over := charge("over", 100)
	refund(over, 101, "r-over").problem(t, http.StatusConflict)
	refund(over, 60, "r-over-1").decode(t, http.StatusCreated, nil)
	refund(over, 41, "r-over-2").problem(t, http.StatusConflict)

	refund("ch_unknown", 1, "r-unknown").problem(t, http.StatusNotFound)

	p.do(t, http.MethodPut, "/admin/config", "", `{"failure_rate":1}`).decode(t, http.StatusOK, nil)
	declined := charge("declined", 100)
	refund(declined, 100, "r-declined").problem(t, http.StatusNotFound)

	want := paymentprovider.State{FailureRate: 1, Charges: 4, Declines: 1, Refunds: 4, CapturedCents: 2100, RefundedCents: 2060}
	if st := p.srv.State(); st != want {
		t.Fatalf("state = %+v, want %+v", st, want)
	}
}

func TestOutageAnswers503AtOnce(t *testing.T) {
	t.Parallel()
	// With a minute of latency, only an immediate answer beats the deadline.
	p := MustProvider(t, paymentprovider.Config{Latency: time.Minute, Outage: true}, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, path := range []string{"/v1/charges", "/v1/refunds"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.url+path, strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		res, err := p.http.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s: %d %s, want 503 problem+json", path, res.StatusCode, res.Header.Get("Content-Type"))
		}
	}
	// Admin and health endpoints stay up, and turning the outage off works.
	p.do(t, http.MethodGet, "/healthz", "", "").decode(t, http.StatusOK, nil)
	var out struct{ Down bool }
	p.do(t, http.MethodPut, "/admin/outage", "", `{"down":false}`).decode(t, http.StatusOK, &out)
	if out.Down {
		t.Fatal("PUT /admin/outage {down:false} answered down")
	}
	p.do(t, http.MethodPut, "/admin/config", "", `{"latency_ms":0}`).decode(t, http.StatusOK, nil)
	p.do(t, http.MethodPost, "/v1/charges", "", chargeJSON("o", 1, "k")).decode(t, http.StatusCreated, nil)
}

func TestAdmin(t *testing.T) {
	t.Parallel()
	p := MustProvider(t, paymentprovider.Config{Latency: 20 * time.Millisecond, FailureRate: 0.25}, nil)
	var st paymentprovider.State
	p.do(t, http.MethodGet, "/admin/state", "", "").decode(t, http.StatusOK, &st)
	if want := (paymentprovider.State{LatencyMS: 20, FailureRate: 0.25}); st != want {
		t.Fatalf("state = %+v, want %+v", st, want)
	}
	var out struct {
		Down bool `json:"down"`
	}
	p.do(t, http.MethodPut, "/admin/outage", "", `{"down":true}`).decode(t, http.StatusOK, &out)
	if !out.Down || !p.srv.State().Down {
		t.Fatalf("outage answer %+v, state %+v; want down", out, p.srv.State())
	}
	p.do(t, http.MethodPut, "/admin/config", "", `{"failure_rate":0.75}`).decode(t, http.StatusOK, &st)
	if want := (paymentprovider.State{Down: true, LatencyMS: 20, FailureRate: 0.75}); st != want {
		t.Fatalf("after failure_rate: %+v, want %+v", st, want)
	}
	p.do(t, http.MethodPut, "/admin/config", "", `{"latency_ms":0}`).decode(t, http.StatusOK, &st)
	if want := (paymentprovider.State{Down: true, FailureRate: 0.75}); st != want {
		t.Fatalf("after latency_ms: %+v, want %+v", st, want)
	}
	p.do(t, http.MethodPut, "/admin/config", "", `{}`).decode(t, http.StatusOK, &st)
	if want := (paymentprovider.State{Down: true, FailureRate: 0.75}); st != want {
		t.Fatalf("after empty config: %+v, want %+v", st, want)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	p := MustProvider(t, paymentprovider.Config{}, nil)
	var c chargeBody
	p.do(t, http.MethodPost, "/v1/charges", "", chargeJSON("o-1", 100, "existing")).decode(t, http.StatusCreated, &c)
	before := p.srv.State()

	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		status      int
	}{
		{"charge malformed json", http.MethodPost, "/v1/charges", "", `{"order_id":"o",`, 400},
		{"charge not an object", http.MethodPost, "/v1/charges", "", `[1,2]`, 400},
		{"charge empty body", http.MethodPost, "/v1/charges", "", ``, 400},
		{"charge unknown field", http.MethodPost, "/v1/charges", "", `{"order_id":"o","amount_cents":1,"idempotency_key":"bad-1","currency":"EUR"}`, 400},
		{"charge negative amount", http.MethodPost, "/v1/charges", "", chargeJSON("o", -1, "bad-2"), 400},
		{"charge amount as string", http.MethodPost, "/v1/charges", "", `{"order_id":"o","amount_cents":"1","idempotency_key":"bad-3"}`, 400},
		{"charge fractional amount", http.MethodPost, "/v1/charges", "", `{"order_id":"o","amount_cents":1.5,"idempotency_key":"bad-4"}`, 400},
		{"charge missing order_id", http.MethodPost, "/v1/charges", "", `{"amount_cents":1,"idempotency_key":"bad-5"}`, 400},
		{"charge missing amount", http.MethodPost, "/v1/charges", "", `{"order_id":"o","idempotency_key":"bad-6"}`, 400},
		{"charge missing key", http.MethodPost, "/v1/charges", "", `{"order_id":"o","amount_cents":1}`, 400},
		{"charge empty order_id", http.MethodPost, "/v1/charges", "", chargeJSON("", 1, "bad-7"), 400},
		{"charge key with space", http.MethodPost, "/v1/charges", "", chargeJSON("o", 1, "bad key"), 400},
		{"charge trailing data", http.MethodPost, "/v1/charges", "", chargeJSON("o", 1, "bad-8") + `{}`, 400},
		{"charge wrong content type", http.MethodPost, "/v1/charges", "text/plain", chargeJSON("o", 1, "bad-9"), 415},
		{"charge too large", http.MethodPost, "/v1/charges", "", `{"order_id":"` + strings.Repeat("x", 70<<10) + `","amount_cents":1,"idempotency_key":"bad-10"}`, 413},
		{"charge wrong method", http.MethodGet, "/v1/charges", "", ``, 405},
		{"void malformed json", http.MethodPost, "/v1/voids", "", `{"idempotency_key":`, 400},
		{"void missing key", http.MethodPost, "/v1/voids", "", `{}`, 400},
		{"void key with space", http.MethodPost, "/v1/voids", "", `{"idempotency_key":"bad key"}`, 400},
		{"void unknown field", http.MethodPost, "/v1/voids", "", `{"idempotency_key":"bad-v1","order_id":"o"}`, 400},
		{"void wrong content type", http.MethodPost, "/v1/voids", "text/plain", `{"idempotency_key":"bad-v2"}`, 415},
		{"refund malformed json", http.MethodPost, "/v1/refunds", "", `{"charge_id"`, 400},
		{"refund unknown field", http.MethodPost, "/v1/refunds", "", `{"charge_id":"` + c.ChargeID + `","amount_cents":1,"idempotency_key":"bad-r1","reason":"x"}`, 400},
		{"refund negative amount", http.MethodPost, "/v1/refunds", "", refundJSON(c.ChargeID, -5, "bad-r2"), 400},
		{"refund missing charge_id", http.MethodPost, "/v1/refunds", "", `{"amount_cents":1,"idempotency_key":"bad-r3"}`, 400},
		{"refund missing amount", http.MethodPost, "/v1/refunds", "", `{"charge_id":"` + c.ChargeID + `","idempotency_key":"bad-r4"}`, 400},
		{"refund missing key", http.MethodPost, "/v1/refunds", "", `{"charge_id":"` + c.ChargeID + `","amount_cents":1}`, 400},
		{"refund wrong content type", http.MethodPost, "/v1/refunds", "application/xml", refundJSON(c.ChargeID, 1, "bad-r5"), 415},
		{"outage malformed json", http.MethodPut, "/admin/outage", "", `{"down":`, 400},
		{"outage missing down", http.MethodPut, "/admin/outage", "", `{}`, 400},
		{"outage down as string", http.MethodPut, "/admin/outage", "", `{"down":"true"}`, 400},
		{"outage unknown field", http.MethodPut, "/admin/outage", "", `{"down":true,"for":"1m"}`, 400},
		{"config failure_rate 1.5", http.MethodPut, "/admin/config", "", `{"failure_rate":1.5}`, 400},
		{"config failure_rate negative", http.MethodPut, "/admin/config", "", `{"failure_rate":-0.1}`, 400},
		{"config bad rate with good latency", http.MethodPut, "/admin/config", "", `{"latency_ms":50,"failure_rate":1.5}`, 400},
		{"config negative latency", http.MethodPut, "/admin/config", "", `{"latency_ms":-1,"failure_rate":0}`, 400},
		{"config latency too large", http.MethodPut, "/admin/config", "", `{"latency_ms":999999999999}`, 400},
		{"config unknown field", http.MethodPut, "/admin/config", "", `{"outage":true}`, 400},
		{"config wrong content type", http.MethodPut, "/admin/config", "text/plain", `{"failure_rate":0}`, 415},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: each case checks that the shared state did not move.
			p.do(t, tt.method, tt.path, tt.contentType, tt.body).problem(t, tt.status)
			if st := p.srv.State(); st != before {
				t.Fatalf("state = %+v, want unchanged %+v", st, before)
			}
		})
	}
	// No bad request used up its idempotency key, and the good charge is intact.
	p.do(t, http.MethodPost, "/v1/charges", "", chargeJSON("o", 1, "bad-2")).decode(t, http.StatusCreated, nil)
	p.do(t, http.MethodPost, "/v1/refunds", "", refundJSON(c.ChargeID, 1, "bad-r2")).decode(t, http.StatusCreated, nil)
	var again chargeBody
	p.do(t, http.MethodPost, "/v1/charges", "", chargeJSON("o-1", 100, "existing")).decode(t, http.StatusOK, &again)
	if again != c {
		t.Fatalf("existing charge = %+v, want %+v", again, c)
	}
}

func TestConcurrentRetriesChargeOnce(t *testing.T) {
	t.Parallel()
	p := MustProvider(t, paymentprovider.Config{}, nil)
	const n = 16
	ids := make(chan string, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			req, _ := http.NewRequest(http.MethodPost, p.url+"/v1/charges", strings.NewReader(chargeJSON("o", 42, "same")))
			req.Header.Set("Content-Type", "application/json")
			res, err := p.http.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer res.Body.Close()
			var c chargeBody
			if err := jsonDecode(res, &c); err != nil {
				errs <- err
				return
			}
			ids <- c.ChargeID
		}()
	}
	seen := map[string]bool{}
	for range n {
		select {
		case err := <-errs:
			t.Fatal(err)
		case id := <-ids:
			seen[id] = true
		}
	}
	if len(seen) != 1 {
		t.Fatalf("%d concurrent retries made charges %v, want one", n, seen)
	}
	if st := p.srv.State(); st.Charges != 1 || st.CapturedCents != 42 {
		t.Fatalf("state = %+v, want one charge of 42", st)
	}
}

func jsonDecode(res *http.Response, v any) error {
	if res.StatusCode != http.StatusCreated && res.StatusCode != http.StatusOK {
		return errors.New("unexpected status " + res.Status)
	}
	return json.NewDecoder(res.Body).Decode(v)
}
