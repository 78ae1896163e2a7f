package main

import (
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orderflow/orderflow/discovery"
	"github.com/orderflow/orderflow/discovery/consultest"
	"github.com/orderflow/orderflow/gateway"
	"github.com/orderflow/orderflow/internal/dbtest"
	"github.com/orderflow/orderflow/internal/kafkatest"
)

// registrationsOf returns the stand-in's registrations of the instances
// listening on base's port.
func registrationsOf(agent *consultest.Server, base string) map[string]consultest.Registration {
	out := map[string]consultest.Registration{}
	for _, r := range agent.Services() {
		if base == "http://127.0.0.1:"+strconv.Itoa(r.Port) {
			out[r.Name] = r
		}
	}
	return out
}

// Every role registers in Consul (the in-process stand-in) when it starts,
// with its own check, and deregisters on SIGTERM; the gateway routes to the
// instances whose checks pass, following the agent's blocking queries.
func TestConsulRegistrationAndDiscovery(t *testing.T) {
	// Not parallel: it runs two orderflow processes.
	agent := consultest.MustNew(t)
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	backend := MustStart(t, map[string]string{
		"DATABASE_URL": dbtest.MustURL(t), "KAFKA_BROKERS": strings.Join(kafkatest.MustBrokers(t), ","),
		"ORDERFLOW_KAFKA_TOPIC_PREFIX": kafkatest.UniquePrefix(t), "ORDERFLOW_KAFKA_PARTITIONS": "1",
		"ORDERFLOW_ROLES": "command,query,relay", "CONSUL_HTTP_ADDR": agent.URL,
		"ORDERFLOW_CONSUL_TAGS": "orderflow,test", "ORDERFLOW_CONSUL_CHECK_INTERVAL": "1s",
	})
	port, _ := strconv.Atoi(backend.base[strings.LastIndex(backend.base, ":")+1:])

	regs := registrationsOf(agent, backend.base)
	if len(regs) != 3 {
		t.Fatalf("registered at start: %+v, want command, query and relay", agent.Services())
	}
	for _, role := range []string{"command", "query", "relay"} {
		r := regs[role]
		check := backend.base + "/readyz"
		if role == "relay" {
			check += "?strict=1" // so an open Kafka breaker shows as warning
		}
		if r.ID != discovery.InstanceID(role, hostname, port) || r.Address != "127.0.0.1" || r.Port != port || !slices.Equal(r.Tags, []string{"orderflow", "test"}) {
			t.Errorf("%s registered as %+v", role, r)
		}
		if len(r.Checks) != 1 || r.Checks[0].HTTP != check || r.Checks[0].Interval != "1s" || r.Checks[0].DeregisterCriticalServiceAfter != "1m0s" {
			t.Fatalf("%s check %+v, want GET %s every 1s", role, r.Checks, check)
		}
		// The agent would run the check; it passes.
		if res := MustDo(t, http.MethodGet, check, "", ""); res.status != http.StatusOK {
			t.Fatalf("%s check %s: %d %s", role, check, res.status, res.body)
		}
	}

	gw := MustStart(t, map[string]string{"ORDERFLOW_ROLES": "gateway", "CONSUL_HTTP_ADDR": agent.URL})
	if r := registrationsOf(agent, gw.gateway)["gateway"]; len(r.Checks) != 1 || r.Checks[0].HTTP != gw.gateway+"/readyz" {
		t.Fatalf("gateway registered as %+v", r)
	}
	admin := MustToken(t, "ops", gateway.RoleAdmin)
	addStock := func() int {
		return MustDo(t, http.MethodPost, gw.gateway+"/v1/inventory/SKU-C/stock", admin, `{"quantity":1}`).status
	}
	readStock := func() int { return MustDo(t, http.MethodGet, gw.gateway+"/v1/inventory/SKU-C", admin, "").status }

	// A new check starts critical: nothing to route to yet.
	if code, res := addStock(), MustDo(t, http.MethodGet, gw.gateway+"/readyz", "", ""); code != http.StatusServiceUnavailable || res.status != http.StatusServiceUnavailable {
		t.Fatalf("before any check passed: add stock %d, gateway /readyz %d %s; want 503s", code, res.status, res.body)
	}
	agent.SetCheckStatus(regs["command"].ID, consultest.StatusPassing)
	agent.SetCheckStatus(regs["query"].ID, consultest.StatusPassing)
	waitUntil(t, 10*time.Second, "the gateway routes to the passing instances", func() bool {
		return addStock() == http.StatusOK && readStock() == http.StatusNotFound // no projector: the view is empty
	})
	agent.SetCheckStatus(regs["query"].ID, consultest.StatusCritical)
	waitUntil(t, 10*time.Second, "the gateway drops the critical query instance", func() bool {
		return readStock() == http.StatusServiceUnavailable
	})
	if code := addStock(); code != http.StatusOK {
		t.Fatalf("commands while the query instance is critical: %d", code)
	}

	backend.Stop(t)
	if regs := registrationsOf(agent, backend.base); len(regs) != 0 {
		t.Fatalf("still registered after SIGTERM: %+v", regs)
	}
	gw.Stop(t)
	if left := agent.Services(); len(left) != 0 {
		t.Fatalf("still registered after both stopped: %+v", left)
	}
}

// With ORDERFLOW_SHUTDOWN_DELAY, a stopping process leaves Consul and fails
// /readyz at once, but keeps serving for the delay: a router that has not
// noticed yet still reaches it (a POST is never retried elsewhere), and only
// then are the listeners closed.
func TestShutdownDelayKeepsServingAfterLeaving(t *testing.T) {
	agent := consultest.MustNew(t)
	p := MustStart(t, map[string]string{
		"DATABASE_URL": dbtest.MustURL(t), "ORDERFLOW_ROLES": "command,query", "CONSUL_HTTP_ADDR": agent.URL,
		"ORDERFLOW_SHUTDOWN_DELAY": "3s",
	})
	if regs := registrationsOf(agent, p.base); len(regs) != 2 {
		t.Fatalf("registered at start: %+v, want command and query", agent.Services())
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the process leaves Consul", func() bool { return len(registrationsOf(agent, p.base)) == 0 })
	status := func(method, path, body string) int {
		req, _ := http.NewRequest(method, p.base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := status(http.MethodPost, "/v1/inventory/SKU-LATE/stock", `{"quantity":1}`); code != http.StatusOK {
		t.Fatalf("a command right after the process left Consul: %d, want 200 (still serving)", code)
	}
	if code := status(http.MethodGet, "/readyz", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while stopping: %d, want 503", code)
	}
	p.awaitCleanExit(t)
	if code := status(http.MethodGet, "/healthz", ""); code != 0 {
		t.Fatalf("still answering after exit: %d", code)
	}
}
