// Package gateway is orderflow's single entry point for clients. It promises
// that a request reaches an upstream only when its bearer token is valid and
// its caller may make it (a customer touches only its own orders), within
// the per-client and global rate limits, with a bounded body and a bounded
// time, and that a service whose instances are all down is answered with a
// 503 at once instead of a wait: every instance sits behind its own circuit
// breaker.
//
// Upstreams receive the caller's identity in X-Orderflow-Client (the token's
// sub) and X-Orderflow-Role; copies a client sends are dropped, and so is its
// Authorization header. An Idempotency-Key is rewritten to "<client>/<key>"
// (a client id never holds '/'), so two clients that pick the same key never
// share a command id; a rewritten key that would pass the command API's 255
// characters becomes "<client>/sha256:<hex of the key>".
package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httputil"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/breaker"
	"github.com/orderflow/orderflow/httpapi"
)

// Headers the gateway sets on every request it forwards.
const (
	// ClientHeader carries the authenticated client id (the token's sub).
	ClientHeader = "X-Orderflow-Client"
	// RoleHeader carries the authenticated role, RoleCustomer or RoleAdmin.
	RoleHeader = "X-Orderflow-Role"
)

// Config configures a Gateway. Zero values take the documented defaults.
type Config struct {
	// JWTSecret is the HS256 key tokens are verified with (required, at
	// least MinSecretBytes).
	JWTSecret []byte
	// Issuer and Audience must match a token's iss and aud (required).
	Issuer   string
	Audience string
	// MaxBodyBytes bounds a request body; a larger one gets 413 (default
	// 64 KiB).
	MaxBodyBytes int64
	// RequestTimeout bounds the time spent on a request's upstream calls
	// (ownership lookup included); past it the client gets 504 (default 10s).
	RequestTimeout time.Duration
	// PerClientRate and PerClientBurst limit each client (by token subject;
	// a request without a valid token by remote IP), in requests per second
	// (default 50/s, burst 100). rate.Inf disables the limit.
	PerClientRate  float64
	PerClientBurst int
	// GlobalRate and GlobalBurst limit all requests together (default
	// 2000/s, burst 4000). rate.Inf disables the limit.
	GlobalRate  float64
	GlobalBurst int
	// BreakerFailures is how many consecutive failures (connection errors,
	// timeouts, 502/503/504) open an instance's breaker (default 5).
	BreakerFailures uint32
	// BreakerOpenTimeout is how long an open breaker skips its instance
	// before letting one probe through (default 5s); it is also the
	// Retry-After of a 503 for a service with no available instance.
	BreakerOpenTimeout time.Duration
	// Transport carries requests to upstream instances (default a tuned
	// *http.Transport with a 2s dial timeout and no proxy).
	Transport http.RoundTripper
	// Gatherer is what GET /metrics serves (default a registry of
	// Collectors and the breaker state metric). A process that registers
	// Collectors in its own registry passes that registry here.
	Gatherer prometheus.Gatherer
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.JWTSecret) < MinSecretBytes {
		errs = append(errs, fmt.Errorf("gateway: JWT secret must be at least %d bytes, got %d", MinSecretBytes, len(c.JWTSecret)))
	}
	if c.Issuer == "" {
		errs = append(errs, errors.New("gateway: issuer is empty"))
	}
	if c.Audience == "" {
		errs = append(errs, errors.New("gateway: audience is empty"))
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("gateway: negative max body bytes %d", c.MaxBodyBytes))
	}
	if c.RequestTimeout < 0 {
		errs = append(errs, fmt.Errorf("gateway: negative request timeout %s", c.RequestTimeout))
	}
	if c.PerClientRate < 0 || math.IsNaN(c.PerClientRate) {
		errs = append(errs, fmt.Errorf("gateway: per-client rate must be positive, got %v", c.PerClientRate))
	}
	if c.PerClientBurst < 0 {
		errs = append(errs, fmt.Errorf("gateway: negative per-client burst %d", c.PerClientBurst))
	}
	if c.GlobalRate < 0 || math.IsNaN(c.GlobalRate) {
		errs = append(errs, fmt.Errorf("gateway: global rate must be positive, got %v", c.GlobalRate))
	}
	if c.GlobalBurst < 0 {
		errs = append(errs, fmt.Errorf("gateway: negative global burst %d", c.GlobalBurst))
	}
	if c.BreakerOpenTimeout < 0 {
		errs = append(errs, fmt.Errorf("gateway: negative breaker open timeout %s", c.BreakerOpenTimeout))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	c.JWTSecret = bytes.Clone(c.JWTSecret)
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 64 << 10
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 10 * time.Second
	}
	if c.PerClientRate == 0 {
		c.PerClientRate = 50
	}
	if c.PerClientBurst == 0 {
		c.PerClientBurst = 100
	}
	if c.GlobalRate == 0 {
		c.GlobalRate = 2000
	}
	if c.GlobalBurst == 0 {
		c.GlobalBurst = 4000
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = 5
	}
	if c.BreakerOpenTimeout == 0 {
		c.BreakerOpenTimeout = 5 * time.Second
	}
	if c.Transport == nil {
		c.Transport = NewTransport()
	}
	return c
}

// Gateway routes client requests to the command, query and projector
// services. Build it with New; it is safe for concurrent use.
type Gateway struct {
	cfg      Config
	logger   *slog.Logger
	parser   *jwt.Parser
	clients  *clientLimiters
	global   *rate.Limiter
	balancer *balancer
	proxy    *httputil.ReverseProxy
	metrics  *metrics
	health   *httpapi.Health
	handler  http.Handler
	owners   *ownerCache
	tokens   tokenCache
}

// New returns a Gateway that sends requests to the instances upstreams
// names. It returns cfg's problems joined, or an error when upstreams is
// nil. A nil logger discards.
func New(cfg Config, upstreams Resolver, logger *slog.Logger) (*Gateway, error) {
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if upstreams == nil {
		errs = append(errs, errors.New("gateway: nil resolver"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	g := &Gateway{
		cfg:     cfg,
		logger:  logger,
		parser:  newParser(cfg.Issuer, cfg.Audience),
		clients: newClientLimiters(rate.Limit(cfg.PerClientRate), cfg.PerClientBurst),
		global:  rate.NewLimiter(rate.Limit(cfg.GlobalRate), cfg.GlobalBurst),
		metrics: newMetrics(),
		health:  httpapi.NewHealth(),
		owners:  newOwnerCache(),
		tokens:  newTokenCache(),
	}
	g.balancer = &balancer{
		resolver: upstreams, transport: cfg.Transport,
		failures: cfg.BreakerFailures, open: cfg.BreakerOpenTimeout,
		logger: logger, metrics: g.metrics,
		breakers: map[string]*breaker.Breaker{}, next: map[string]*atomic.Uint64{},
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite:        rewrite,
		Transport:      g.balancer,
		ModifyResponse: stripUpstreamHeaders,
		ErrorHandler:   g.upstreamFailed,
		BufferPool:     NewBufferPool(),
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	for _, s := range services {
		check := func(_ context.Context) error {
			if len(upstreams.Instances(s)) == 0 {
				return fmt.Errorf("no healthy %s instance", s)
			}
			return nil
		}
		// Clients need commands and queries; without the projector only
		// the admin API is missing.
		if s == ServiceProjector {
			g.health.AddDegraded("upstream "+s, check)
			continue
		}
		g.health.Add("upstream "+s, check)
	}
	gatherer := cfg.Gatherer
	if gatherer == nil {
		reg := prometheus.NewRegistry()
		for _, c := range append(g.Collectors(), breaker.Collector()) {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("gateway: register metrics: %w", err)
			}
		}
		gatherer = reg
	}
	g.handler = g.routes(gatherer)
	return g, nil
}

// Handler returns the gateway's HTTP handler. Serve it with
// httpapi.NewServer, whose timeouts bound slow clients.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Collectors returns the gateway's metrics, to register once: requests and
// latency by route and status, rate-limit rejections and upstream attempts.
// The per-instance breaker states are breaker.Collector's.
func (g *Gateway) Collectors() []prometheus.Collector { return g.metrics.collectors() }

// Drain makes GET /readyz answer 503 so load balancers stop sending new
// requests before shutdown.
func (g *Gateway) Drain() { g.health.Drain() }

// routes is the route table. Every /v1 and /admin route needs a valid token
// and passes the rate limits; the gateway's own endpoints (health, metrics,
// the OpenAPI document) need neither.
func (g *Gateway) routes(gatherer prometheus.Gatherer) http.Handler {
	r := httpapi.NewRouter(g.logger, nil)
	r.Use(g.metrics.observe)
	g.health.Mount(r, gatherer)
	r.Method(http.MethodGet, "/openapi.json", api.Handler()) // the contract clients are held to, without a token
	r.Group(func(r chi.Router) {
		r.Use(g.authenticateAndLimit)
		r.Post("/v1/orders", g.forward(ServiceCommand, g.ownPlacement))
		r.Post("/v1/orders/{id}/cancel", g.forward(ServiceCommand, g.ownOrder(true)))
		r.Post("/v1/inventory/{sku}/stock", g.forward(ServiceCommand, g.adminOnly))
		r.Get("/v1/streams/{id}/events", g.forward(ServiceCommand, g.adminOnly))
		r.Get("/v1/orders", g.forward(ServiceQuery, g.ownListing))
		r.Get("/v1/orders/{id}", g.forward(ServiceQuery, g.ownOrder(false)))
		r.Get("/v1/orders/{id}/saga", g.forward(ServiceQuery, g.ownOrder(false)))
		r.Get("/v1/sagas", g.forward(ServiceQuery, g.adminOnly))
		r.Get("/v1/inventory/{sku}", g.forward(ServiceQuery, anyone))
		r.Get("/v1/stats/sales", g.forward(ServiceQuery, g.adminOnly))
		r.Handle("/admin", g.forward(ServiceProjector, g.adminArea))
		r.Handle("/admin/*", g.forward(ServiceProjector, g.adminArea))
	})
	return r
}
