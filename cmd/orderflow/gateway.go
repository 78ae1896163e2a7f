package main

import (
	"context"
	"log/slog"
	"slices"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/discovery"
	"github.com/orderflow/orderflow/gateway"
)

// newGateway builds the gateway role. With Consul it routes to the passing
// instances a discovery.Resolver keeps current (stop ends its blocking
// queries); without, to the static URLs of cfg, and for a service without
// any to apiURL, this process's own API, when the process runs that role.
func newGateway(ctx context.Context, cfg Config, consul *consulapi.Client, reg *prometheus.Registry, apiURL string, logger *slog.Logger) (gw *gateway.Gateway, stop func(), err error) {
	stop = func() {}
	var upstreams gateway.Resolver
	if consul != nil {
		names := make([]string, 0, len(gatewayServices))
		for _, s := range gatewayServices {
			names = append(names, s.name)
		}
		r := discovery.NewResolver(consul, names, logger)
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = r.Run(rctx) // only ErrAlreadyRunning, impossible here
		}()
		stop = func() { cancel(); <-done }
		upstreams = r
	} else {
		static := gateway.StaticResolver{}
		for _, s := range gatewayServices {
			urls := cfg.Gateway.Upstreams[s.name]
			if len(urls) == 0 && apiURL != "" && slices.Contains(cfg.Roles, s.name) {
				urls = []string{apiURL}
			}
			static[s.name] = urls
		}
		logger.Info("gateway upstreams (static)", "upstreams", map[string][]string(static))
		upstreams = static
	}
	gcfg := cfg.Gateway.Config
	gcfg.Gatherer = reg
	if gw, err = gateway.New(gcfg, upstreams, logger); err == nil {
		err = registerAll(reg, gw.Collectors()...)
	}
	if err != nil {
		stop()
		return nil, nil, err
	}
	return gw, stop, nil
}
