package gateway

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/httpapi"
)

// metrics are the gateway's own collectors. They are per Gateway, not
// package globals, so tests can build as many gateways as they like; the
// process registers them once through Collectors.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	limited  *prometheus.CounterVec
	upstream *prometheus.CounterVec
}

func newMetrics() *metrics {
	labels := []string{"route", "method", "status"}
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_gateway_requests_total",
			Help: "Requests answered by the gateway, by route pattern, method and status.",
		}, labels),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orderflow_gateway_request_duration_seconds",
			Help:    "Gateway request latency, upstream included, by route pattern, method and status.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, labels),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_gateway_rate_limited_total",
			Help: "Requests refused with 429, by the limit that refused them (client or global).",
		}, []string{"limit"}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_gateway_upstream_attempts_total",
			Help: "Attempts to reach an upstream instance, by service and outcome (ok, 5xx, error, open: skipped by its breaker).",
		}, []string{"service", "outcome"}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.latency, m.limited, m.upstream}
}

// observe records every request under its chi route pattern, so ids in paths
// do not explode the label space.
func (m *metrics) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			status := sw.status
			if v := recover(); v != nil {
				if !sw.written {
					status = http.StatusInternalServerError
				}
				defer panic(v) // the recovery middleware outside answers it
			}
			route, method := httpapi.MetricLabels(r)
			code := strconv.Itoa(status)
			m.requests.WithLabelValues(route, method, code).Inc()
			m.latency.WithLabelValues(route, method, code).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(sw, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status  int
	written bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.written && code >= 200 {
		w.status, w.written = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.written = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush through the wrapper; the
// reverse proxy flushes streamed responses with it.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
