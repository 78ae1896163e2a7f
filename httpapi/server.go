package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ServerConfig bounds an HTTP server.
type ServerConfig struct {
	Addr              string
	ReadHeaderTimeout time.Duration // default 5s
	ReadTimeout       time.Duration // default 15s
	WriteTimeout      time.Duration // default 30s
	IdleTimeout       time.Duration // default 120s
	MaxHeaderBytes    int           // default 64 KiB
}

// NewServer returns an http.Server for h with every timeout set.
func NewServer(cfg ServerConfig, h http.Handler, logger *slog.Logger) *http.Server {
	def := func(d, v time.Duration) time.Duration {
		if d <= 0 {
			return v
		}
		return d
	}
	maxHeader := cfg.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = 64 << 10
	}
	return &http.Server{
		Addr:              cfg.Addr,
		Handler:           h,
		ReadHeaderTimeout: def(cfg.ReadHeaderTimeout, 5*time.Second),
		ReadTimeout:       def(cfg.ReadTimeout, 15*time.Second),
		WriteTimeout:      def(cfg.WriteTimeout, 30*time.Second),
		IdleTimeout:       def(cfg.IdleTimeout, 120*time.Second),
		MaxHeaderBytes:    maxHeader,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// Serve runs srv on ln until ctx ends, then shuts it down, giving requests in
// flight up to drain to finish.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, drain time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("http server %s: shutdown: %w", ln.Addr(), err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Check reports whether one dependency is usable.
type Check func(ctx context.Context) error

// Health holds the readiness checks of a process and whether it is draining.
type Health struct {
	mu        sync.Mutex
	checks    map[string]Check
	degraders map[string]Check
	draining  bool
}

// NewHealth returns a Health with no checks.
func NewHealth() *Health { return &Health{checks: map[string]Check{}, degraders: map[string]Check{}} }

// AddDegraded registers a named check whose failure leaves the process
// ready but degraded: /readyz still answers 200, with status "degraded".
func (h *Health) AddDegraded(name string, c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.degraders[name] = c
}

// Add registers a named readiness check.
func (h *Health) Add(name string, c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[name] = c
}

// Drain makes /readyz fail so load balancers stop sending work.
func (h *Health) Drain() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.draining = true
}

type readiness struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// Mount adds GET /healthz (the process is alive), GET /readyz (200 "ready"
// when every check passes, 200 "degraded" when only degraded checks fail, 503
// "unavailable" when a check fails or the process is draining) and GET
// /metrics.
//
// GET /readyz?strict=1 answers "degraded" with 429 instead of 200, for a
// health checker that should see degradation: Consul counts 429 as warning
// (and any other non-2xx as critical). A strict value that is not a boolean
// gets 400.
func (h *Health) Mount(r chi.Router, gatherer prometheus.Gatherer) {
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		JSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", func(w http.ResponseWriter, r *http.Request) {
		strict := false
		if v := r.URL.Query()["strict"]; len(v) > 0 {
			var err error
			if strict, err = strconv.ParseBool(v[0]); err != nil || len(v) > 1 {
				Error(w, r, nil, &RequestError{Status: http.StatusBadRequest, Slug: "validation", Title: "The request is invalid",
					Detail: "strict must be one of 1, true, 0, false.", Fields: []FieldError{{Field: "strict", Detail: "must be a boolean"}}})
				return
			}
		}
		h.mu.Lock()
		checks := maps.Clone(h.checks)
		degraders := maps.Clone(h.degraders)
		draining := h.draining
		h.mu.Unlock()

		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		out := readiness{Status: "ready", Checks: map[string]string{}}
		for name, c := range checks {
			if err := c(ctx); err != nil {
				out.Status, out.Checks[name] = "unavailable", err.Error()
				continue
			}
			out.Checks[name] = "ok"
		}
		for name, c := range degraders {
			if err := c(ctx); err != nil {
				if out.Status == "ready" {
					out.Status = "degraded"
				}
				out.Checks[name] = err.Error()
				continue
			}
			out.Checks[name] = "ok"
		}
		if draining {
			out.Status, out.Checks["shutdown"] = "unavailable", "draining"
		}
		status := http.StatusOK
		switch {
		case out.Status == "unavailable":
			status = http.StatusServiceUnavailable
		case out.Status == "degraded" && strict:
			status = http.StatusTooManyRequests
		}
		w.Header().Set("Cache-Control", "no-store")
		JSON(w, status, out)
	})
	r.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
}
