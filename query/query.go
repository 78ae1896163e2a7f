// Package query is orderflow's read side: a REST API over the read views the
// projector keeps (order details, orders by customer, stock, daily sales,
// saga timeline). It
// promises answers that match the OpenAPI document (package api), stable
// keyset pagination, an ETag on every 200 with 304 for a matching
// If-None-Match, and read-your-writes: a read with min_version waits,
// bounded, until the view has applied that version of the stream.
package query

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults of Config.
const (
	DefaultMinVersionWait = 2 * time.Second
	DefaultPollInterval   = 10 * time.Millisecond
)

// Config tunes the query API. The zero value is usable: every zero field
// takes its default.
type Config struct {
	// MinVersionWait bounds how long a read with min_version (GET
	// /v1/orders/{id}, GET /v1/orders/{id}/saga, GET /v1/inventory/{sku})
	// waits for the view to reach that version of the stream. When the bound
	// passes first, the read answers 412 Precondition Failed (problem type
	// urn:orderflow:problem:view-behind) naming the version the view has,
	// with Retry-After: 1. Clients cannot lengthen it. Default
	// DefaultMinVersionWait.
	MinVersionWait time.Duration
	// PollInterval is how often a waiting read re-reads its row. Default
	// DefaultPollInterval.
	PollInterval time.Duration
}

// withDefaults returns c with every zero field set to its default, or an
// error naming every field that is out of range.
func (c Config) withDefaults() (Config, error) {
	var errs []error
	if c.MinVersionWait < 0 {
		errs = append(errs, fmt.Errorf("MinVersionWait %s is negative", c.MinVersionWait))
	}
	if c.PollInterval < 0 {
		errs = append(errs, fmt.Errorf("PollInterval %s is negative", c.PollInterval))
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("query: config: %w", err)
	}
	if c.MinVersionWait == 0 {
		c.MinVersionWait = DefaultMinVersionWait
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	return c, nil
}

// API is the query REST API: GET /v1/orders/{id}, GET /v1/orders, GET
// /v1/orders/{id}/saga, GET /v1/sagas, GET /v1/inventory/{sku} and GET
// /v1/stats/sales.
type API struct {
	pool   *pgxpool.Pool
	cfg    Config
	logger *slog.Logger
}

// NewAPI returns the API over the read views in pool. It returns an error
// for a nil pool or logger or an invalid cfg.
func NewAPI(pool *pgxpool.Pool, cfg Config, logger *slog.Logger) (*API, error) {
	if pool == nil || logger == nil {
		return nil, errors.New("query: NewAPI: nil dependency")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &API{pool: pool, cfg: cfg, logger: logger}, nil
}

// Mount adds the API's routes to r.
func (a *API) Mount(r chi.Router) {
	r.Get("/v1/orders/{id}", a.getOrder)
	r.Get("/v1/orders", a.listOrders)
	r.Get("/v1/orders/{id}/saga", a.getSaga)
	r.Get("/v1/sagas", a.listSagas)
	r.Get("/v1/inventory/{sku}", a.getStock)
	r.Get("/v1/stats/sales", a.salesStats)
}
