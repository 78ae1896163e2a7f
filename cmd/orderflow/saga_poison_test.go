package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/orderflow/orderflow/breaker"
	"github.com/orderflow/orderflow/paymentprovider"
	"github.com/orderflow/orderflow/saga"
)

// The saga's dead letters are the errors no retry can help, as a real
// provider and client produce them; an outage, an open breaker or a
// cancelled context are retried.
func TestSagaPoison(t *testing.T) {
	t.Parallel()
	logger := slog.New(slog.DiscardHandler)
	srv, err := paymentprovider.NewServer(paymentprovider.Config{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	down, err := paymentprovider.NewServer(paymentprovider.Config{Outage: true}, logger)
	if err != nil {
		t.Fatal(err)
	}
	client := func(h http.Handler) *paymentprovider.Client {
		ts := httptest.NewServer(h)
		t.Cleanup(ts.Close)
		br, err := breaker.New(breaker.Config{Name: "test", Failures: 1}, logger)
		if err != nil {
			t.Fatal(err)
		}
		c, err := paymentprovider.NewClient(ts.URL, ts.Client(), br)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	up, out := client(srv.Handler()), client(down.Handler())
	elsewhere := client(http.NotFoundHandler()) // a URL where no provider answers
	ctx := context.Background()

	// As the refund reaction wraps them.
	_, unknownCharge := up.Refund(ctx, "ch-unknown", 100, "refund:x")
	_, wrongURL := elsewhere.Charge(ctx, "o-0", 100, "charge:o-0")
	_, outage := out.Charge(ctx, "o-1", 100, "charge:o-1")
	_, open := out.Charge(ctx, "o-2", 100, "charge:o-2") // the breaker opened on the outage
	cancelled, stop := context.WithCancel(ctx)
	stop()
	_, gone := up.Charge(cancelled, "o-3", 100, "charge:o-3")
	for _, tt := range []struct {
		name   string
		err    error
		poison bool
	}{
		{"malformed trigger", errors.Join(saga.ErrMalformed, errors.New("no type")), true},
		{"refund of a charge the provider does not know", fmt.Errorf("refund order x: %w", unknownCharge), true},
		{"a 404 that is not the provider's refusal (a wrong URL)", fmt.Errorf("charge order x: %w", wrongURL), false},
		{"provider outage", fmt.Errorf("charge order x: %w", outage), false},
		{"breaker open", fmt.Errorf("charge order x: %w", open), false},
		{"context cancelled", fmt.Errorf("charge order x: %w", gone), false},
		{"database error", errors.New("connection reset"), false},
	} {
		if tt.err == nil {
			t.Fatalf("%s: the provider gave no error", tt.name)
		}
		if got := sagaPoison(tt.err); got != tt.poison {
			t.Errorf("%s (%v): poison %v, want %v", tt.name, tt.err, got, tt.poison)
		}
	}
	if !errors.Is(unknownCharge, paymentprovider.ErrRejected) || !errors.Is(wrongURL, paymentprovider.ErrRejected) || !errors.Is(open, breaker.ErrOpen) {
		t.Fatalf("the provider's errors are not what this test is about: %v; %v; %v", unknownCharge, wrongURL, open)
	}
}
