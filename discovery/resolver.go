package discovery

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
)

// Defaults for the Resolver's tuning fields.
const (
	DefaultWaitTime        = time.Minute
	DefaultMinInterval     = 100 * time.Millisecond
	DefaultRetryBackoff    = 500 * time.Millisecond
	DefaultMaxRetryBackoff = 30 * time.Second
)

// ErrAlreadyRunning is returned by Run when the Resolver is already running.
var ErrAlreadyRunning = errors.New("discovery: resolver already running")

// Resolver keeps the base URLs of the passing instances of a fixed set of
// services, updated by Consul blocking queries while Run runs. Its methods
// are safe for concurrent use.
type Resolver struct {
	// WaitTime bounds one blocking query (Consul's "wait"; it caps it at 10m
	// and adds up to WaitTime/16 of jitter). Zero means DefaultWaitTime.
	// Set the tuning fields before Run.
	WaitTime time.Duration
	// MinInterval is the least time between the starts of two queries for
	// the same service, so a watch whose index keeps moving (or an agent that
	// answers without blocking) cannot spin. Zero means DefaultMinInterval.
	MinInterval time.Duration
	// RetryBackoff is the first pause after a failed query; it doubles per
	// consecutive failure up to MaxRetryBackoff. Zero means the defaults.
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration

	client   *api.Client
	services []string
	logger   *slog.Logger
	running  atomic.Bool

	mu        sync.RWMutex
	instances map[string][]string // service → sorted base URLs
	fetched   map[string]bool     // service → answered at least once
}

// NewResolver returns a Resolver for services (duplicates are ignored). It
// panics on a nil client; a nil logger discards logs.
func NewResolver(client *api.Client, services []string, logger *slog.Logger) *Resolver {
	if client == nil {
		panic("discovery: NewResolver: nil consul client")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	services = slices.Clone(services)
	slices.Sort(services)
	return &Resolver{
		client:    client,
		services:  slices.Compact(services),
		logger:    logger,
		instances: map[string][]string{},
		fetched:   map[string]bool{},
	}
}

// Instances returns a fresh slice of the base URLs ("http://host:port",
// sorted) of service's passing instances as last seen, or nil for a service
// that has none or is not watched.
func (r *Resolver) Instances(service string) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Clone(r.instances[service])
}

// Ready reports whether every watched service has been answered by Consul at
// least once, so an empty Instances means "none passing", not "not known yet".
func (r *Resolver) Ready() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.fetched) == len(r.services)
}

// Run watches every service until ctx is done, then returns nil; it returns
// ErrAlreadyRunning if called while running. Consul errors never end it:
// they are logged, the last known instances are kept, and the query is
// retried with backoff.
//
// Each service has its own loop that follows Consul's blocking-query rules:
// the first query carries no index and answers at once; every later one
// carries the X-Consul-Index of the previous answer and waits up to WaitTime
// for a change. An index lower than the previous one (a snapshot restore, an
// agent restart) resets the loop to 0; an index below 1 is raised to 1, so no
// query after the first goes out with index 0, which would not block. Query
// starts are at least MinInterval apart. An answer is never taken as proof of
// a change: the instance list is rebuilt from every answer.
func (r *Resolver) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer r.running.Store(false)

	var wg sync.WaitGroup
	for _, service := range r.services {
		wg.Go(func() { r.watch(ctx, service) })
	}
	wg.Wait()
	<-ctx.Done() // with no services there is nothing to wait for but ctx
	return nil
}

func (r *Resolver) watch(ctx context.Context, service string) {
	wait := orDefault(r.WaitTime, DefaultWaitTime)
	minInterval := orDefault(r.MinInterval, DefaultMinInterval)
	backoff := orDefault(r.RetryBackoff, DefaultRetryBackoff)
	maxBackoff := orDefault(r.MaxRetryBackoff, DefaultMaxRetryBackoff)
	logger := r.logger.With("service", service)

	var index uint64
	failures := 0
	for ctx.Err() == nil {
		start := time.Now()
		entries, lastIndex, err := r.query(ctx, service, index, wait)
		if ctx.Err() != nil {
			return
		}
		pause := minInterval
		if err != nil {
			failures++
			// Keep the index: if the agent came back with a lower one, the
			// next answer resets the loop below.
			pause = max(pause, jitter(min(backoff<<min(failures-1, 20), maxBackoff)))
			logger.Warn("consul health query failed", "err", err, "failures", failures, "retry_in", pause)
		} else {
			failures = 0
			r.store(logger, service, entries)
			next := lastIndex
			if next < index {
				logger.Info("consul index went backwards; restarting blocking query", "previous", index, "index", lastIndex)
				next = 0
			}
			if next < 1 {
				next = 1
			}
			index = next
		}
		if !sleep(ctx, time.Until(start.Add(pause))) {
			return
		}
	}
}

// query runs one (blocking, when index > 0) health query for service.
func (r *Resolver) query(ctx context.Context, service string, index uint64, wait time.Duration) ([]*api.ServiceEntry, uint64, error) {
	// Bound the request in case the connection dies silently: the agent
	// answers within wait plus its jitter of wait/16.
	ctx, cancel := context.WithTimeout(ctx, wait+wait/16+10*time.Second)
	defer cancel()
	q := (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx)
	entries, meta, err := r.client.Health().Service(service, "", true, q)
	if err != nil {
		return nil, 0, err
	}
	return entries, meta.LastIndex, nil
}

// store replaces service's instances with the passing ones among entries.
func (r *Resolver) store(logger *slog.Logger, service string, entries []*api.ServiceEntry) {
	var urls []string
	for _, e := range entries {
		if e == nil || e.Service == nil {
			continue
		}
		// The query asked for passing instances only; checking again guards
		// against an agent that ignored the filter.
		if e.Checks.AggregatedStatus() != api.HealthPassing {
			continue
		}
		host := e.Service.Address
		if host == "" && e.Node != nil {
			host = e.Node.Address
		}
		if host == "" || e.Service.Port <= 0 {
			logger.Debug("skipping instance without address or port", "id", e.Service.ID)
			continue
		}
		urls = append(urls, "http://"+net.JoinHostPort(host, strconv.Itoa(e.Service.Port)))
	}
	slices.Sort(urls)
	urls = slices.Compact(urls)

	r.mu.Lock()
	changed := !r.fetched[service] || !slices.Equal(r.instances[service], urls)
	r.instances[service] = urls
	r.fetched[service] = true
	r.mu.Unlock()
	if changed {
		logger.Info("instances changed", "instances", urls)
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// jitter spreads retries of many instances over [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d < 2 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// sleep waits d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
