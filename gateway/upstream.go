package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orderflow/orderflow/breaker"
)

// errUnavailable is the outcome of a request no instance could take: the
// service has none, or every one has its breaker open. It becomes a 503.
var errUnavailable = errors.New("gateway: no upstream instance available")

// errFailureStatus marks a 502, 503 or 504 answer as a failure of the
// instance for its breaker; the response itself is still relayed.
var errFailureStatus = errors.New("gateway: upstream answered with a failure status")

// NewTransport returns the transport the gateway uses when Config.Transport
// is nil. It is tuned for many short requests to a few internal hosts: no
// proxy from the environment, a short dial timeout (a host that drops SYNs
// must not eat the whole request budget) and enough idle connections per
// host that a burst does not redial.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   128,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// balancer is the RoundTripper behind the reverse proxy and the ownership
// lookups. A request names a service as its URL host ("http://query/v1/...");
// the balancer sends it to that service's instances round-robin, each behind
// its own breaker, skipping instances whose breaker is open.
type balancer struct {
	resolver  Resolver
	transport http.RoundTripper
	failures  uint32
	open      time.Duration
	logger    *slog.Logger
	metrics   *metrics

	mu       sync.Mutex
	breakers map[string]*breaker.Breaker // by instance base URL
	next     map[string]*atomic.Uint64   // round-robin position by service
}

func (b *balancer) breaker(instance string) (*breaker.Breaker, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if br, ok := b.breakers[instance]; ok {
		return br, nil
	}
	br, err := breaker.New(breaker.Config{Name: "gateway " + instance, Failures: b.failures, OpenTimeout: b.open}, b.logger)
	if err != nil {
		return nil, err
	}
	b.breakers[instance] = br
	return br, nil
}

func (b *balancer) counter(service string) *atomic.Uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.next[service]
	if !ok {
		c = new(atomic.Uint64)
		b.next[service] = c
	}
	return c
}

// RoundTrip sends req to one instance of the service named by req.URL.Host.
// A GET or HEAD whose first attempt fails to connect or gets a 502 or 503 is
// tried once more on the next available instance; other requests are never
// retried, since a POST that reached an instance may have taken effect. It
// returns errUnavailable, at once, when no instance can take the request.
func (b *balancer) RoundTrip(req *http.Request) (*http.Response, error) {
	service := req.URL.Host
	instances := b.resolver.Instances(service)
	if len(instances) == 0 {
		return nil, fmt.Errorf("%w: %s has no instance", errUnavailable, service)
	}
	n := uint64(len(instances))
	start := b.counter(service).Add(1) - 1
	var (
		tried    bool
		lastResp *http.Response
		lastErr  error
	)
	for i := range n {
		instance := instances[(start+i)%n]
		br, err := b.breaker(instance)
		if err != nil {
			return nil, err
		}
		if br.State() == "open" {
			b.metrics.upstream.WithLabelValues(service, "open").Inc()
			continue
		}
		resp, called, err := b.attempt(req, br, instance, tried)
		if !called {
			// Half-open with its probe already in flight.
			b.metrics.upstream.WithLabelValues(service, "open").Inc()
			continue
		}
		b.metrics.upstream.WithLabelValues(service, outcome(resp, err)).Inc()
		if tried {
			discard(lastResp)
			return resp, err
		}
		if !retryable(req) || !worthRetry(req, resp, err) {
			return resp, err
		}
		tried, lastResp, lastErr = true, resp, err
	}
	if tried {
		return lastResp, lastErr
	}
	return nil, fmt.Errorf("%w: every instance of %s has its breaker open", errUnavailable, service)
}

// attempt sends req to instance through br. called is false when the breaker
// refused without calling the instance.
func (b *balancer) attempt(req *http.Request, br *breaker.Breaker, instance string, again bool) (resp *http.Response, called bool, err error) {
	out, err := outbound(req, instance, again)
	if err != nil {
		return nil, true, err
	}
	berr := br.Do(func() error {
		called = true
		resp, err = b.transport.RoundTrip(out)
		switch {
		case err != nil && errors.Is(req.Context().Err(), context.Canceled):
			// The client left; that says nothing about the instance.
			return fmt.Errorf("%w: %w", context.Canceled, err)
		case err != nil:
			return err
		case resp.StatusCode == http.StatusBadGateway, resp.StatusCode == http.StatusServiceUnavailable,
			resp.StatusCode == http.StatusGatewayTimeout:
			return errFailureStatus
		}
		return nil
	})
	if !called {
		return nil, false, berr
	}
	return resp, true, err
}

// outbound is req addressed to instance. A second attempt gets a fresh copy
// of the body. The copy is shallow but for the URL: a RoundTripper does not
// modify the request's header, so attempts can share it.
func outbound(req *http.Request, instance string, again bool) (*http.Request, error) {
	base, err := url.Parse(instance)
	if err != nil || base.Host == "" {
		return nil, fmt.Errorf("gateway: instance %q is not a base URL", instance)
	}
	out := req.WithContext(req.Context())
	u := *req.URL
	out.URL = &u
	out.URL.Scheme, out.URL.Host = base.Scheme, base.Host
	if p := strings.TrimSuffix(base.Path, "/"); p != "" {
		out.URL.Path = p + req.URL.Path
		if req.URL.RawPath != "" {
			out.URL.RawPath = strings.TrimSuffix(base.EscapedPath(), "/") + req.URL.RawPath
		}
	}
	out.Host = ""
	if again && req.GetBody != nil {
		if out.Body, err = req.GetBody(); err != nil {
			return nil, fmt.Errorf("gateway: replay body: %w", err)
		}
	}
	return out, nil
}

// retryable reports whether req may be sent twice: an idempotent read whose
// body, if any, can be replayed.
func retryable(req *http.Request) bool {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return false
	}
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// worthRetry reports whether the first attempt failed in a way another
// instance may not: it could not be reached, or it said it is unavailable.
func worthRetry(req *http.Request, resp *http.Response, err error) bool {
	if req.Context().Err() != nil {
		return false
	}
	if err != nil {
		return true
	}
	return resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable
}

func outcome(resp *http.Response, err error) string {
	switch {
	case err != nil:
		return "error"
	case resp.StatusCode >= 500:
		return "5xx"
	}
	return "ok"
}

// discard closes a response the caller will not see, reading a little of it
// first so its connection can be reused.
func discard(resp *http.Response) {
	if resp == nil {
		return
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	_ = resp.Body.Close()
}

// bufferPool lends the reverse proxy the buffers it copies response bodies
// through, instead of a new 32 KiB one per request.
type bufferPool struct{ pool sync.Pool }

// NewBufferPool returns the buffer pool of the gateway's reverse proxy.
func NewBufferPool() httputil.BufferPool {
	return &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (p *bufferPool) Get() []byte { return *p.pool.Get().(*[]byte) }

func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }
