package paymentprovider_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/orderflow/orderflow/breaker"
	"github.com/orderflow/orderflow/paymentprovider"
)

func TestNewClientFailsFast(t *testing.T) {
	t.Parallel()
	br, err := breaker.New(breaker.Config{Name: t.Name()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		url  string
		http *http.Client
		br   *breaker.Breaker
		opts []paymentprovider.Option
	}{
		{name: "nil http client", url: "http://provider", br: br},
		{name: "nil breaker", url: "http://provider", http: http.DefaultClient},
		{name: "relative url", url: "/provider", http: http.DefaultClient, br: br},
		{name: "other scheme", url: "ftp://provider", http: http.DefaultClient, br: br},
		{name: "unparsable url", url: "http://[::1", http: http.DefaultClient, br: br},
		{name: "zero timeout", url: "http://provider", http: http.DefaultClient, br: br, opts: []paymentprovider.Option{paymentprovider.WithTimeout(0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := paymentprovider.NewClient(tt.url, tt.http, tt.br, tt.opts...); err == nil {
				t.Fatal("NewClient accepted it")
			}
		})
	}
}

func TestClientCharge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		rate       float64
		wantStatus string
		wantReason string
	}{
		{name: "captured", rate: 0, wantStatus: paymentprovider.StatusCaptured},
		{name: "declined is a result", rate: 1, wantStatus: paymentprovider.StatusDeclined, wantReason: paymentprovider.SimulatedDeclineReason},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := MustProvider(t, paymentprovider.Config{FailureRate: tt.rate}, nil)
			// One failure would open it: a decline must count as a success.
			c, br := MustClient(t, p, breaker.Config{Failures: 1, OpenTimeout: time.Hour})
			got, err := c.Charge(t.Context(), "o-1", 990, "k-1")
			if err != nil {
				t.Fatal(err)
			}
			if got.ID == "" || got.Status != tt.wantStatus || got.DeclineReason != tt.wantReason {
				t.Fatalf("Charge = %+v, want status %q reason %q", got, tt.wantStatus, tt.wantReason)
			}
			again, err := c.Charge(t.Context(), "o-1", 990, "k-1")
			if err != nil {
				t.Fatal(err)
			}
			if again != got {
				t.Fatalf("retry = %+v, want %+v", again, got)
			}
			if st := p.srv.State(); st.Charges != 1 {
				t.Fatalf("state = %+v, want one charge", st)
			}
			if br.State() != "closed" {
				t.Fatalf("breaker %s, want closed", br.State())
			}
		})
	}
}

// Void finds a charge made under its key, and bars one that was not.
func TestClientVoid(t *testing.T) {
	t.Parallel()
	p := MustProvider(t, paymentprovider.Config{}, nil)
	c, br := MustClient(t, p, breaker.Config{Failures: 1, OpenTimeout: time.Hour})
	charged, err := c.Charge(t.Context(), "o-1", 990, "k-1")
	if err != nil {
		t.Fatal(err)
	}
	if found, err := c.Void(t.Context(), "k-1"); err != nil || found != charged {
		t.Fatalf("Void of a charged key = %+v, %v; want %+v", found, err, charged)
	}
	voided, err := c.Void(t.Context(), "k-2")
	if err != nil || voided.Status != paymentprovider.StatusDeclined || voided.DeclineReason != paymentprovider.VoidedDeclineReason {
		t.Fatalf("Void of a fresh key = %+v, %v; want a decline with reason %q", voided, err, paymentprovider.VoidedDeclineReason)
	}
	if late, err := c.Charge(t.Context(), "o-2", 100, "k-2"); err != nil || late != voided {
		t.Fatalf("Charge after the void = %+v, %v; want %+v", late, err, voided)
	}
	if _, err := c.Void(t.Context(), "bad key"); !errors.Is(err, paymentprovider.ErrRejected) {
		t.Fatalf("Void with a bad key: %v, want ErrRejected", err)
	}
	if br.State() != "closed" {
		t.Fatalf("breaker %s, want closed", br.State())
	}
}

func TestClientRefund(t *testing.T) {
	t.Parallel()
	p := MustProvider(t, paymentprovider.Config{}, nil)
	c, _ := MustClient(t, p, breaker.Config{})
	ch, err := c.Charge(t.Context(), "o-1", 1000, "charge-o-1")
	if err != nil {
		t.Fatal(err)
	}
	r1, err := c.Refund(t.Context(), ch.ID, 400, "refund-1")
	if err != nil {
		t.Fatal(err)
	}
	if r1.ID == "" || r1.ChargeID != ch.ID || r1.AmountCents != 400 || r1.Status != paymentprovider.StatusRefunded {
		t.Fatalf("Refund = %+v", r1)
	}
	again, err := c.Refund(t.Context(), ch.ID, 400, "refund-1")
	if err != nil || again != r1 {
		t.Fatalf("retried Refund = %+v, %v; want %+v", again, err, r1)
	}
	if _, err := c.Refund(t.Context(), ch.ID, 600, "refund-2"); err != nil {
		t.Fatal(err)
	}
	if st := p.srv.State(); st.Refunds != 2 || st.RefundedCents != 1000 {
		t.Fatalf("state = %+v, want 2 refunds of 1000 cents", st)
	}
}

func TestClientRejectionsDoNotOpenBreaker(t *testing.T) {
	t.Parallel()
	p := MustProvider(t, paymentprovider.Config{}, nil)
	c, br := MustClient(t, p, breaker.Config{Failures: 1, OpenTimeout: time.Hour})
	ch, err := c.Charge(t.Context(), "o-1", 100, "charge-o-1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		call   func() error
		status int
	}{
		{"unknown charge", func() error { _, err := c.Refund(t.Context(), "ch_nope", 1, "r-1"); return err }, http.StatusNotFound},
		{"over-refund", func() error { _, err := c.Refund(t.Context(), ch.ID, 101, "r-2"); return err }, http.StatusConflict},
		{"key reused", func() error { _, err := c.Charge(t.Context(), "o-2", 100, "charge-o-1"); return err }, http.StatusUnprocessableEntity},
		{"negative amount", func() error { _, err := c.Charge(t.Context(), "o-3", -1, "charge-o-3"); return err }, http.StatusBadRequest},
		{"empty key", func() error { _, err := c.Charge(t.Context(), "o-4", 1, ""); return err }, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, paymentprovider.ErrRejected) || errors.Is(err, paymentprovider.ErrUnavailable) {
				t.Fatalf("err = %v, want ErrRejected only", err)
			}
			var se *paymentprovider.StatusError
			if !errors.As(err, &se) || se.StatusCode != tt.status || se.Title == "" {
				t.Fatalf("err = %#v, want a *StatusError %d with a title", err, tt.status)
			}
			if br.State() != "closed" {
				t.Fatalf("breaker %s after a rejection, want closed", br.State())
			}
		})
	}
	if _, err := c.Charge(t.Context(), "o-5", 1, "charge-o-5"); err != nil {
		t.Fatalf("Charge after rejections: %v", err)
	}
}

func TestClientBreakerOpensOnOutageAndRecovers(t *testing.T) {
	t.Parallel()
	p := MustProvider(t, paymentprovider.Config{Outage: true}, nil)
	const failures = 3
	c, br := MustClient(t, p, breaker.Config{Failures: failures, OpenTimeout: 100 * time.Millisecond})

	for i := range failures {
		_, err := c.Charge(t.Context(), "o-1", 100, "k-1")
		var se *paymentprovider.StatusError
		if !errors.Is(err, paymentprovider.ErrUnavailable) || !errors.As(err, &se) || se.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("charge %d during outage: %v, want ErrUnavailable with 503", i, err)
		}
	}
	if got := p.requests.Load(); got != failures {
		t.Fatalf("%d requests reached the provider, want %d", got, failures)
	}
	if br.State() != "open" {
		t.Fatalf("breaker %s after %d failures, want open", br.State(), failures)
	}
	if _, err := c.Charge(t.Context(), "o-1", 100, "k-1"); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("Charge with the breaker open: %v, want breaker.ErrOpen", err)
	}
	if _, err := c.Refund(t.Context(), "ch_x", 1, "r-1"); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("Refund with the breaker open: %v, want breaker.ErrOpen", err)
	}
	if got := p.requests.Load(); got != failures {
		t.Fatalf("%d requests reached the provider with the breaker open, want still %d", got, failures)
	}

	p.do(t, http.MethodPut, "/admin/outage", "", `{"down":false}`).decode(t, http.StatusOK, nil)
	eventually(t, 5*time.Second, "breaker half-open", func() bool { return br.State() == "half-open" })
	got, err := c.Charge(t.Context(), "o-1", 100, "k-1")
	if err != nil || got.Status != paymentprovider.StatusCaptured {
		t.Fatalf("probe Charge = %+v, %v; want captured", got, err)
	}
	if br.State() != "closed" {
		t.Fatalf("breaker %s after a successful probe, want closed", br.State())
	}
	if got := p.requests.Load(); got != failures+1 {
		t.Fatalf("%d requests reached the provider, want %d", got, failures+1)
	}
	if st := p.srv.State(); st.Charges != 1 {
		t.Fatalf("state = %+v, want exactly one charge", st)
	}
}

func TestClientLatency(t *testing.T) {
	t.Parallel()
	const latency = 150 * time.Millisecond
	p := MustProvider(t, paymentprovider.Config{Latency: latency}, nil)
	c, _ := MustClient(t, p, breaker.Config{})
	start := time.Now()
	if _, err := c.Charge(t.Context(), "o-1", 1, "k-1"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < latency {
		t.Fatalf("Charge took %s, want at least the latency %s", took, latency)
	}
}

func TestClientCancelReturnsPromptly(t *testing.T) {
	t.Parallel()
	arrived, finished := make(chan struct{}, 1), make(chan struct{}, 1)
	p := MustProvider(t, paymentprovider.Config{Latency: time.Minute}, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			next.ServeHTTP(w, r)
			finished <- struct{}{}
		})
	})
	// One failure would open it: a cancellation must count as none.
	c, br := MustClient(t, p, breaker.Config{Failures: 1, OpenTimeout: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Charge(ctx, "o-1", 1, "k-1")
		errc <- err
	}()
	<-arrived
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) || errors.Is(err, paymentprovider.ErrUnavailable) {
			t.Fatalf("cancelled Charge: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled Charge did not return")
	}
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
		t.Fatal("the provider kept waiting out its latency after the caller left")
	}
	if br.State() != "closed" {
		t.Fatalf("breaker %s after a cancellation, want closed", br.State())
	}
	if st := p.srv.State(); st.Charges != 0 {
		t.Fatalf("state = %+v, want no charge", st)
	}
}

func TestClientTimeoutIsAFailure(t *testing.T) {
	t.Parallel()
	p := MustProvider(t, paymentprovider.Config{Latency: time.Minute}, nil)
	c, br := MustClient(t, p, breaker.Config{Failures: 1, OpenTimeout: time.Hour}, paymentprovider.WithTimeout(50*time.Millisecond))
	start := time.Now()
	_, err := c.Charge(t.Context(), "o-1", 1, "k-1")
	if !errors.Is(err, paymentprovider.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Charge past its timeout: %v, want ErrUnavailable and DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("Charge took %s with a 50ms timeout", took)
	}
	if br.State() != "open" {
		t.Fatalf("breaker %s after a timeout with Failures 1, want open", br.State())
	}
}

// An outage that begins while a request waits out the latency refuses it
// too: the provider is down when it would have handled it.
func TestOutageRefusesRequestsAlreadyWaiting(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	p := MustProvider(t, paymentprovider.Config{Latency: time.Second}, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/charges" {
				arrived <- struct{}{}
			}
			next.ServeHTTP(w, r)
		})
	})
	c, _ := MustClient(t, p, breaker.Config{Failures: 5, OpenTimeout: time.Hour})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Charge(t.Context(), "o-1", 1, "k-1")
		errc <- err
	}()
	<-arrived
	p.do(t, http.MethodPut, "/admin/outage", "", `{"down":true}`).decode(t, http.StatusOK, nil)
	if err := <-errc; !errors.Is(err, paymentprovider.ErrUnavailable) {
		t.Fatalf("Charge waiting when the outage began: %v, want ErrUnavailable", err)
	}
	if st := p.srv.State(); st.Charges != 0 {
		t.Fatalf("state = %+v, want no charge", st)
	}
}

// A caller whose own deadline passes gave up; the provider did not fail
// (its per-call timeout, above, is the provider's failure).
func TestClientCallerDeadlineIsNoFailure(t *testing.T) {
	t.Parallel()
	p := MustProvider(t, paymentprovider.Config{Latency: time.Minute}, nil)
	c, br := MustClient(t, p, breaker.Config{Failures: 1, OpenTimeout: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Charge(ctx, "o-1", 1, "k-1")
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, paymentprovider.ErrUnavailable) {
		t.Fatalf("Charge past the caller's deadline: %v, want DeadlineExceeded and not ErrUnavailable", err)
	}
	if br.State() != "closed" {
		t.Fatalf("breaker %s after the caller's deadline with Failures 1, want closed", br.State())
	}
}

func TestClientMalformedResponseIsAFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr error
	}{
		{name: "not json", status: http.StatusCreated, body: `<html>`},
		{name: "unknown status", status: http.StatusCreated, body: `{"charge_id":"ch_1","status":"pending"}`},
		{name: "no charge id", status: http.StatusCreated, body: `{"status":"captured"}`},
		{name: "bad gateway without problem", status: http.StatusBadGateway, body: `oops`},
		{name: "too many requests", status: http.StatusTooManyRequests, body: `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			t.Cleanup(ts.Close)
			br, err := breaker.New(breaker.Config{Name: t.Name(), Failures: 1, OpenTimeout: time.Hour}, nil)
			if err != nil {
				t.Fatal(err)
			}
			c, err := paymentprovider.NewClient(ts.URL, ts.Client(), br)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Charge(t.Context(), "o", 1, "k"); !errors.Is(err, paymentprovider.ErrUnavailable) {
				t.Fatalf("Charge = %v, want ErrUnavailable", err)
			}
			if br.State() != "open" {
				t.Fatalf("breaker %s, want open", br.State())
			}
		})
	}
}
