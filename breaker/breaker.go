// Package breaker is the circuit breaker every outbound producer or client of
// orderflow goes through: gobreaker v2 with configurable thresholds, context
// cancellation counted as neither success nor failure, each state change
// logged once, and the state exported as a metric.
package breaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// ErrOpen is returned without calling through while the breaker is open (or
// half-open with its probe in flight).
var ErrOpen = errors.New("breaker: open")

// Config sets when a breaker opens and how it probes.
type Config struct {
	// Name labels logs and metrics ("kafka", "payment-provider").
	Name string
	// Failures is how many consecutive failures open the breaker (default 5).
	Failures uint32
	// OpenTimeout is how long it stays open before a half-open probe
	// (default 5s).
	OpenTimeout time.Duration
	// HalfOpenRequests is how many probes may run while half-open (default 1).
	HalfOpenRequests uint32
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("breaker: empty name"))
	}
	if c.OpenTimeout < 0 {
		errs = append(errs, fmt.Errorf("breaker %s: negative open timeout", c.Name))
	}
	return errors.Join(errs...)
}

// State values exported by the state metric.
const (
	StateClosed   = 0
	StateHalfOpen = 1
	StateOpen     = 2
)

// Breaker guards calls to one dependency.
type Breaker struct {
	cb *gobreaker.CircuitBreaker[struct{}]
}

var stateGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "orderflow_breaker_state",
	Help: "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
}, []string{"name"})

// Collector returns the state metric of every breaker, to register once.
func Collector() prometheus.Collector { return stateGauge }

// New returns a closed breaker.
func New(cfg Config, logger *slog.Logger) (*Breaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Failures == 0 {
		cfg.Failures = 5
	}
	if cfg.OpenTimeout == 0 {
		cfg.OpenTimeout = 5 * time.Second
	}
	if cfg.HalfOpenRequests == 0 {
		cfg.HalfOpenRequests = 1
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	gauge := stateGauge.WithLabelValues(cfg.Name)
	gauge.Set(StateClosed)
	cb := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        cfg.Name,
		MaxRequests: cfg.HalfOpenRequests,
		Timeout:     cfg.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.Failures },
		IsExcluded: func(err error) bool {
			var ex excluded
			return errors.Is(err, context.Canceled) || errors.As(err, &ex)
		},
		OnStateChange: func(name string, from, to gobreaker.State) {
			logger.Warn("circuit breaker state changed", "breaker", name, "from", from.String(), "to", to.String())
			switch to {
			case gobreaker.StateClosed:
				gauge.Set(StateClosed)
			case gobreaker.StateHalfOpen:
				gauge.Set(StateHalfOpen)
			case gobreaker.StateOpen:
				gauge.Set(StateOpen)
			}
		},
	})
	return &Breaker{cb: cb}, nil
}

// Excluded wraps an error that says nothing of the service behind the
// breaker, such as the caller's own deadline passing: returned by Do's fn,
// it counts neither as a failure nor as a success. (A cancelled context is
// always excluded.) The error is err's, unwrapping to it.
func Excluded(err error) error { return excluded{err} }

type excluded struct{ err error }

func (e excluded) Error() string { return e.err.Error() }
func (e excluded) Unwrap() error { return e.err }

// Do calls fn through the breaker. While the breaker is open it returns
// ErrOpen at once without calling fn; otherwise it returns fn's error.
func (b *Breaker) Do(fn func() error) error {
	_, err := b.cb.Execute(func() (struct{}, error) { return struct{}{}, fn() })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return fmt.Errorf("%w: %s", ErrOpen, b.cb.Name())
	}
	return err
}

// Open reports whether the breaker refuses calls now (open or half-open).
func (b *Breaker) Open() bool { return b.cb.State() != gobreaker.StateClosed }

// State returns "closed", "half-open" or "open".
func (b *Breaker) State() string { return b.cb.State().String() }
