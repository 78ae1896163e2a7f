package gateway

import "slices"

// The services the gateway routes to, as a Resolver names them.
const (
	// ServiceCommand is the write side: commands and the audit trail.
	ServiceCommand = "command"
	// ServiceQuery is the read side over the projected views.
	ServiceQuery = "query"
	// ServiceProjector serves the projection admin API.
	ServiceProjector = "projector"
)

// services lists every service the gateway routes to; it is ready when the
// command and query services have an instance each, and degraded while the
// projector has none.
var services = [...]string{ServiceCommand, ServiceQuery, ServiceProjector}

// Resolver finds the instances of a service. The gateway calls it on every
// request, so it must answer from memory (a Consul-backed resolver keeps its
// list current with blocking queries) and be safe for concurrent use.
type Resolver interface {
	// Instances returns the base URLs ("http://host:port") of the healthy
	// instances of service, or none. The caller does not modify the slice.
	Instances(service string) []string
}

// StaticResolver is a fixed list of instances per service, for when Consul
// is not configured and for tests.
type StaticResolver map[string][]string

var _ Resolver = StaticResolver(nil)

// Instances returns a copy of the instances listed for service.
func (s StaticResolver) Instances(service string) []string { return slices.Clone(s[service]) }
