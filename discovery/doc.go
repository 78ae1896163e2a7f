// Package discovery registers orderflow roles in Consul and finds the healthy
// instances of other roles, so the gateway routes only to instances whose
// health check passes.
//
// # Registration
//
// Each role calls [Register] on start with its name ("command", "query",
// "relay", …), a unique id ([InstanceID]: service, hostname and port), the
// address and port other processes reach it on, and the URL of its readiness
// endpoint. The agent runs an HTTP check against that URL every CheckInterval;
// the returned func deregisters the instance and is called on graceful
// shutdown. An instance that dies without deregistering is reaped by the agent
// once its check has been critical for DeregisterCriticalAfter.
//
// # Health-check contract
//
// Consul maps the check's HTTP answer to a status: any 2xx is passing, 429
// Too Many Requests is warning, anything else (and a timeout) is critical. A
// new check starts critical, so an instance receives traffic only after its
// first passing check. The [Resolver] asks for passing instances only, so both
// warning and critical instances leave the gateway's rotation.
//
//   - Roles that serve traffic (command, query, gateway, payment provider)
//     register their plain GET /readyz: 200 "ready" or 200 "degraded" keep
//     them routable; 503 (a failed readiness check, or draining during
//     shutdown) makes them critical and they drop out within one blocking
//     query of the check turning.
//   - The relay registers GET /readyz?strict=1. Its Kafka circuit breaker
//     makes plain /readyz answer 200 "degraded", which Consul would call
//     passing and so hide. With strict=1, /readyz answers 429 (body status
//     "degraded") while the process is ready but degraded, so the relay shows
//     as warning in Consul: visible to operators and alerts, never reaped
//     (only critical checks are), and harmless to routing because nothing
//     routes to the relay. Ready stays 200; unavailable stays 503. The strict
//     mode belongs to the HTTP health handler (httpapi.Health), not to this
//     package.
//
// Roles that serve traffic must not use strict=1: a degraded command or query
// instance still answers requests, and warning would remove it from rotation.
//
// The agent runs the check, so HealthURL must be reachable from the agent
// (in docker compose: the role's service name, not localhost).
//
// # Resolution
//
// A [Resolver] keeps, per watched service, the base URLs ("http://host:port")
// of its passing instances, updated by blocking queries on the health
// endpoint; see [Resolver.Run] for how it follows Consul's blocking-query
// rules. Its Instances method is what the gateway's resolver interface asks
// for.
package discovery
