package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/orderflow/orderflow/httpapi"
)

// endpoint is one HTTP server of the process: the gateway, or the API of
// the other roles.
type endpoint struct {
	ln      net.Listener
	handler http.Handler
	drain   func()   // makes /readyz answer 503
	roles   []string // registered in Consul under these service names
}

// runServers serves every endpoint until ctx ends or one server fails,
// registering them in Consul (when consul is not nil) once they accept
// connections. Then it drains: every /readyz turns 503, the instances
// deregister, and the servers shut down in order, each finishing its
// requests in flight within what is left of cfg.ShutdownTimeout.
func runServers(ctx context.Context, cfg Config, consul *consulapi.Client, endpoints []endpoint, logger *slog.Logger) error {
	servers := make([]*http.Server, len(endpoints))
	served := make(chan error, len(endpoints))
	for i, e := range endpoints {
		servers[i] = httpapi.NewServer(cfg.Server, e.handler, logger)
		go func() { served <- servers[i].Serve(e.ln) }()
	}
	running := len(servers)

	deregister, err := register(ctx, cfg.Consul, consul, endpoints, logger)
	if err == nil {
		logger.Info("serving HTTP", servingAddrs(cfg, endpoints)...)
		select {
		case <-ctx.Done():
			logger.Info("shutting down: draining")
		case serr := <-served: // a server stopped by itself
			running--
			err = fmt.Errorf("http server: %w", serr)
		}
	}
	for _, e := range endpoints {
		e.drain()
	}
	if deregister != nil {
		deregister()
	}
	// Still serving, and telling whoever asks that it is stopping: a
	// gateway or load balancer that has not noticed yet would otherwise send
	// requests to closed ports, and a POST is never retried elsewhere.
	if cfg.ShutdownDelay > 0 {
		logger.Info("shutting down: serving a while longer while routers notice", "delay", cfg.ShutdownDelay)
		time.Sleep(cfg.ShutdownDelay) // a fixed grace period, not a condition to await
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	for i, srv := range servers {
		if serr := srv.Shutdown(sctx); serr != nil {
			err = errors.Join(err, fmt.Errorf("http server %s: shutdown: %w", endpoints[i].ln.Addr(), serr))
		}
	}
	for range running {
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, fmt.Errorf("http server: %w", serr))
		}
	}
	logger.Info("stopped", "err", err)
	return err
}

// servingAddrs are the attributes of the "serving HTTP" log line: addr is
// ORDERFLOW_HTTP_ADDR's listener; roles_addr serves the roles other than
// the gateway, gateway_addr the gateway.
func servingAddrs(cfg Config, endpoints []endpoint) []any {
	attrs := []any{"roles", cfg.Roles}
	for i, e := range endpoints {
		if i == 0 {
			attrs = append(attrs, "addr", e.ln.Addr().String())
		}
		key := "roles_addr"
		if e.roles[0] == "gateway" {
			key = "gateway_addr"
		}
		attrs = append(attrs, key, e.ln.Addr().String())
	}
	return attrs
}

// dialURL is the base URL a local client reaches a listener on: an
// unspecified host (":8081") becomes the loopback address.
func dialURL(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return "http://" + addr.String()
	}
	host := tcp.IP
	if host == nil || host.IsUnspecified() {
		host = net.IPv4(127, 0, 0, 1)
	}
	return "http://" + net.JoinHostPort(host.String(), fmt.Sprint(tcp.Port))
}
