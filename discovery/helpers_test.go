package discovery_test

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/orderflow/orderflow/discovery"
)

// The gateway's resolver interface, as the gateway declares it.
var _ interface{ Instances(service string) []string } = (*discovery.Resolver)(nil)

// newTestResolver returns a resolver tuned for tests: short blocking waits
// (unless wait says otherwise), a short rate limit and quick retries.
func newTestResolver(client *api.Client, wait time.Duration, services ...string) *discovery.Resolver {
	r := discovery.NewResolver(client, services, slog.New(slog.DiscardHandler))
	r.WaitTime = wait
	r.MinInterval = 10 * time.Millisecond
	r.RetryBackoff = 10 * time.Millisecond
	r.MaxRetryBackoff = 50 * time.Millisecond
	return r
}

// MustRun runs r until the test ends, then checks that Run returned nil
// promptly after its context was cancelled.
func MustRun(tb testing.TB, r *discovery.Resolver) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(2 * time.Second):
			tb.Errorf("Run did not return within 2s of cancel")
		}
	})
}

// waitFor polls cond until it holds or within elapses; it returns how long
// that took and fails the test on timeout.
func waitFor(tb testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	tb.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			tb.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

// hasInstances returns a condition that holds when service's instances are
// exactly want.
func hasInstances(r *discovery.Resolver, service string, want ...string) func() bool {
	return func() bool { return slices.Equal(r.Instances(service), want) }
}
