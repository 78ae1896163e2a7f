package discovery_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/orderflow/orderflow/discovery"
)

// TestRealConsulAgent runs register → resolve → deregister against the agent
// named by CONSUL_HTTP_ADDR (for example a local `consul agent -dev`). The
// agent runs the HTTP check itself, so it must reach 127.0.0.1 of this
// machine.
func TestRealConsulAgent(t *testing.T) {
	if os.Getenv("CONSUL_HTTP_ADDR") == "" {
		// The one skip this package allows: no Consul agent can be installed
		// where the suite normally runs; the consultest stand-in covers the
		// same paths in every other test.
		t.Skip("CONSUL_HTTP_ADDR is not set: no real Consul agent to test against")
	}
	client, err := api.NewClient(api.DefaultConfig())
	if err != nil {
		t.Fatalf("consul client: %v", err)
	}

	role := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"status":"ready"}`))
	}))
	t.Cleanup(role.Close)
	host, portText, err := net.SplitHostPort(role.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		t.Fatal(err)
	}

	service := "orderflow-discovery-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	deregister, err := discovery.Register(ctx, client, discovery.Registration{
		Service:       service,
		ID:            discovery.InstanceID(service, "test", port),
		Address:       host,
		Port:          port,
		Tags:          []string{"test"},
		HealthURL:     role.URL + "/readyz",
		CheckInterval: time.Second,
		CheckTimeout:  time.Second,
	})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	t.Cleanup(func() { _ = deregister(context.Background()) })

	r := discovery.NewResolver(client, []string{service}, slog.New(slog.DiscardHandler))
	r.WaitTime = 5 * time.Second
	MustRun(t, r)
	want := "http://" + net.JoinHostPort(host, portText)
	waitFor(t, 30*time.Second, "the agent's check to pass and the resolver to list "+want,
		func() bool { return slices.Equal(r.Instances(service), []string{want}) })

	if err := deregister(ctx); err != nil {
		t.Fatalf("deregister: %v", err)
	}
	waitFor(t, 10*time.Second, "the deregistered instance to disappear", hasInstances(r, service))
}
