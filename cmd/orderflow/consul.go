package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/orderflow/orderflow/discovery"
)

// deregisterTimeout bounds the deregistration calls on shutdown, so an
// agent that is gone does not hold the drain up.
const deregisterTimeout = 5 * time.Second

// newConsulClient returns a client of the agent at cfg.Addr, or nil when
// Consul is not configured.
func newConsulClient(cfg ConsulConfig) (*consulapi.Client, error) {
	if cfg.Addr == "" {
		return nil, nil
	}
	// NewClient takes an http:// or https:// prefix from Address; what this
	// config leaves empty (ACL token, TLS files) it reads from the CONSUL_*
	// variables, as the consul command does.
	c, err := consulapi.NewClient(&consulapi.Config{Address: cfg.Addr})
	if err != nil {
		return nil, fmt.Errorf("CONSUL_HTTP_ADDR: %w", err)
	}
	return c, nil
}

// registrations are the Consul registrations of the endpoints: one per
// role, named after it, at the address and port its server listens on,
// checked on /readyz. The relay's check is /readyz?strict=1, so an open
// Kafka breaker shows as warning (see package discovery).
func registrations(cfg ConsulConfig, endpoints []endpoint) ([]discovery.Registration, error) {
	var regs []discovery.Registration
	for _, e := range endpoints {
		host, port, err := advertised(cfg.AdvertiseHost, e.ln.Addr())
		if err != nil {
			return nil, err
		}
		base := "http://" + net.JoinHostPort(host, strconv.Itoa(port))
		for _, role := range e.roles {
			health := base + "/readyz"
			if role == "relay" {
				health += "?strict=1"
			}
			regs = append(regs, discovery.Registration{
				Service:                 role,
				Address:                 host,
				Port:                    port,
				Tags:                    cfg.Tags,
				HealthURL:               health,
				CheckInterval:           cfg.CheckInterval,
				DeregisterCriticalAfter: cfg.DeregisterAfter,
			})
		}
	}
	return regs, nil
}

// advertised is the host and port others reach a listener on: the
// configured host, else the listener's own host, else (when it listens on
// every interface) this machine's hostname.
func advertised(host string, addr net.Addr) (string, int, error) {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return "", 0, fmt.Errorf("register in Consul: %s is not a TCP address", addr)
	}
	switch {
	case host != "":
	case tcp.IP != nil && !tcp.IP.IsUnspecified():
		host = tcp.IP.String()
	default:
		h, err := os.Hostname()
		if err != nil {
			return "", 0, fmt.Errorf("register in Consul: no ORDERFLOW_ADVERTISE_HOST and no hostname: %w", err)
		}
		host = h
	}
	return host, tcp.Port, nil
}

// register registers every role of endpoints with the agent. The returned
// func deregisters them all, logging what fails; it is nil when consul is
// nil. On an error, what was registered is deregistered again.
func register(ctx context.Context, cfg ConsulConfig, consul *consulapi.Client, endpoints []endpoint, logger *slog.Logger) (func(), error) {
	if consul == nil {
		return nil, nil
	}
	regs, err := registrations(cfg, endpoints)
	if err != nil {
		return nil, err
	}
	type registered struct {
		reg        discovery.Registration
		deregister func(context.Context) error
	}
	var done []registered
	deregisterAll := func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deregisterTimeout)
		defer cancel()
		for _, r := range done {
			if err := r.deregister(ctx); err != nil {
				logger.Warn("could not deregister from Consul; the agent reaps the instance once its check stays critical",
					"service", r.reg.Service, "err", err, "reaped_after", cfg.DeregisterAfter)
				continue
			}
			logger.Info("deregistered from Consul", "service", r.reg.Service)
		}
	}
	for _, reg := range regs {
		dereg, err := discovery.Register(ctx, consul, reg)
		if err != nil {
			deregisterAll()
			return nil, fmt.Errorf("%w (is the agent at CONSUL_HTTP_ADDR=%s up?)", err, cfg.Addr)
		}
		done = append(done, registered{reg, dereg})
		logger.Info("registered in Consul", "service", reg.Service, "address", reg.Address, "port", reg.Port, "check", reg.HealthURL)
	}
	return deregisterAll, nil
}
