package main

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/orderflow/orderflow/gateway"
)

// secretSettings are the settings whose values are never printed: not as
// flag defaults in -h, not in the logged configuration.
var secretSettings = map[string]bool{"DATABASE_URL": true, "ORDERFLOW_JWT_SECRET": true}

// gatewayServices are the services the gateway routes to, with the setting
// naming their static instances. A required one must have instances when
// the gateway runs without Consul.
var gatewayServices = []struct {
	name, env string
	required  bool
}{
	{gateway.ServiceCommand, "ORDERFLOW_GATEWAY_COMMAND_URLS", true},
	{gateway.ServiceQuery, "ORDERFLOW_GATEWAY_QUERY_URLS", true},
	{gateway.ServiceProjector, "ORDERFLOW_GATEWAY_PROJECTOR_URLS", false},
}

var (
	tagPattern  = regexp.MustCompile(`^[A-Za-z0-9._:=/-]{1,100}$`)
	hostPattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$`)
)

// RunsGateway reports whether the process runs the gateway role.
func (c Config) RunsGateway() bool { return slices.Contains(c.Roles, "gateway") }

// RunsAPI reports whether the process runs any role besides the gateway:
// those share one HTTP server and need PostgreSQL.
func (c Config) RunsAPI() bool {
	return slices.ContainsFunc(c.Roles, func(r string) bool { return r != "gateway" })
}

// loadGatewayConfig reads the gateway's settings, appending every problem
// to errs. The secret, issuer and audience are checked only when the
// process runs the gateway.
func loadGatewayConfig(cfg Config, vals map[string]*string, intIn func(string, int, int) int,
	duration func(string, time.Duration, time.Duration) time.Duration, errs *[]error) GatewayConfig {
	g := GatewayConfig{Upstreams: map[string][]string{}}
	g.JWTSecret = []byte(*vals["ORDERFLOW_JWT_SECRET"])
	g.Issuer = *vals["ORDERFLOW_JWT_ISSUER"]
	g.Audience = *vals["ORDERFLOW_JWT_AUDIENCE"]
	if cfg.RunsGateway() {
		if len(g.JWTSecret) < gateway.MinSecretBytes {
			// The message gives the length, never the value.
			*errs = append(*errs, fmt.Errorf("ORDERFLOW_JWT_SECRET is required by the gateway role and must be at least %d bytes, got %d (for example: openssl rand -hex 32)", gateway.MinSecretBytes, len(g.JWTSecret)))
		}
		if g.Issuer == "" {
			*errs = append(*errs, errors.New("ORDERFLOW_JWT_ISSUER must not be empty"))
		}
		if g.Audience == "" {
			*errs = append(*errs, errors.New("ORDERFLOW_JWT_AUDIENCE must not be empty"))
		}
	}
	for _, s := range gatewayServices {
		urls, err := parseBaseURLs(*vals[s.env])
		if err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %w", s.env, err))
		}
		if len(urls) > 0 {
			g.Upstreams[s.name] = urls
		}
	}
	g.PerClientRate = positiveRate("ORDERFLOW_GATEWAY_CLIENT_RATE", *vals["ORDERFLOW_GATEWAY_CLIENT_RATE"], errs)
	g.PerClientBurst = intIn("ORDERFLOW_GATEWAY_CLIENT_BURST", 1, 1_000_000)
	g.GlobalRate = positiveRate("ORDERFLOW_GATEWAY_GLOBAL_RATE", *vals["ORDERFLOW_GATEWAY_GLOBAL_RATE"], errs)
	g.GlobalBurst = intIn("ORDERFLOW_GATEWAY_GLOBAL_BURST", 1, 10_000_000)
	g.MaxBodyBytes = int64(intIn("ORDERFLOW_GATEWAY_MAX_BODY_BYTES", 1, 64<<20))
	g.RequestTimeout = duration("ORDERFLOW_GATEWAY_REQUEST_TIMEOUT", 10*time.Millisecond, 10*time.Minute)
	g.BreakerFailures = uint32(intIn("ORDERFLOW_GATEWAY_BREAKER_FAILURES", 1, 1000))
	g.BreakerOpenTimeout = duration("ORDERFLOW_GATEWAY_BREAKER_OPEN_TIMEOUT", 10*time.Millisecond, time.Hour)
	if cfg.RunsGateway() && g.RequestTimeout > 0 && cfg.Server.WriteTimeout > 0 && g.RequestTimeout >= cfg.Server.WriteTimeout {
		*errs = append(*errs, fmt.Errorf("ORDERFLOW_GATEWAY_REQUEST_TIMEOUT (%s) must be below ORDERFLOW_HTTP_WRITE_TIMEOUT (%s), or the gateway's 504 could not be written", g.RequestTimeout, cfg.Server.WriteTimeout))
	}
	return g
}

// positiveRate parses a rate in requests per second: a positive number, or
// inf for no limit.
func positiveRate(env, v string, errs *[]error) float64 {
	r, err := strconv.ParseFloat(v, 64)
	if err != nil || !(r > 0) {
		*errs = append(*errs, fmt.Errorf("%s: want a positive number of requests per second or inf, got %q", env, v))
	}
	if math.IsInf(r, 1) {
		return float64(rate.Inf) // what the limiter takes for "no limit"
	}
	return r
}

// parseBaseURLs parses a comma-separated list of http(s) base URLs, each a
// scheme and host:port with nothing after them.
func parseBaseURLs(list string) ([]string, error) {
	var out []string
	for _, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("want comma-separated base URLs such as http://10.0.0.5:8080, got %q", raw)
		}
		base := u.Scheme + "://" + u.Host
		if slices.Contains(out, base) {
			return nil, fmt.Errorf("%s is listed twice", base)
		}
		out = append(out, base)
	}
	return out, nil
}

// loadConsulConfig reads the Consul settings, appending every problem to
// errs.
func loadConsulConfig(vals map[string]*string, duration func(string, time.Duration, time.Duration) time.Duration, errs *[]error) ConsulConfig {
	c := ConsulConfig{Addr: strings.TrimSpace(*vals["CONSUL_HTTP_ADDR"]), AdvertiseHost: *vals["ORDERFLOW_ADVERTISE_HOST"]}
	if c.Addr != "" {
		hostPort := c.Addr
		if scheme, rest, ok := strings.Cut(c.Addr, "://"); ok {
			if scheme != "http" && scheme != "https" {
				hostPort = "" // refused below
			} else {
				hostPort = rest
			}
		}
		if _, port, err := net.SplitHostPort(hostPort); err != nil || port == "" {
			*errs = append(*errs, fmt.Errorf("CONSUL_HTTP_ADDR: want host:port or http(s)://host:port, got %q", c.Addr))
		}
	}
	if h := c.AdvertiseHost; h != "" && net.ParseIP(h) == nil && !hostPattern.MatchString(h) {
		*errs = append(*errs, fmt.Errorf("ORDERFLOW_ADVERTISE_HOST: want a host name or IP address without port, got %q", h))
	}
	for _, t := range strings.Split(*vals["ORDERFLOW_CONSUL_TAGS"], ",") {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		if !tagPattern.MatchString(t) {
			*errs = append(*errs, fmt.Errorf("ORDERFLOW_CONSUL_TAGS: want tags of 1 to 100 letters, digits or . _ : = / -, got %q", t))
			continue
		}
		c.Tags = append(c.Tags, t)
	}
	c.CheckInterval = duration("ORDERFLOW_CONSUL_CHECK_INTERVAL", 100*time.Millisecond, 10*time.Minute)
	// The agent reaps critical services at most once a minute: shorter
	// values would not mean what they say.
	c.DeregisterAfter = duration("ORDERFLOW_CONSUL_DEREGISTER_AFTER", time.Minute, 24*time.Hour)
	return c
}

// rateText is a rate as the configuration spells it.
func rateText(r float64) string {
	if r == float64(rate.Inf) {
		return "inf"
	}
	return strconv.FormatFloat(r, 'g', -1, 64)
}
