package discovery_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/orderflow/orderflow/discovery"
	"github.com/orderflow/orderflow/discovery/consultest"
)

func mustParseDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("duration %q: %v", s, err)
	}
	return d
}

func TestRegisterSendsRegistration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                                string
		reg                                 discovery.Registration
		wantInterval, wantTimeout, wantDCSA time.Duration
	}{
		{
			name: "defaults",
			reg: discovery.Registration{
				Service: "command", ID: "command-host1-8080", Address: "10.1.2.3", Port: 8080,
				Tags: []string{"orderflow", "v1"}, HealthURL: "http://10.1.2.3:8080/readyz",
			},
			wantInterval: 5 * time.Second, wantTimeout: 2 * time.Second, wantDCSA: time.Minute,
		},
		{
			name: "relay strict readiness and custom durations",
			reg: discovery.Registration{
				Service: "relay", ID: "relay-host1-8081", Address: "relay", Port: 8081,
				HealthURL: "http://relay:8081/readyz?strict=1", CheckInterval: time.Second,
				CheckTimeout: 500 * time.Millisecond, DeregisterCriticalAfter: 30 * time.Second,
			},
			wantInterval: time.Second, wantTimeout: 500 * time.Millisecond, wantDCSA: 30 * time.Second,
		},
		{
			name: "short interval caps the default timeout",
			reg: discovery.Registration{
				Service: "query", ID: "query-host1-8082", Port: 8082,
				HealthURL: "http://query:8082/readyz", CheckInterval: time.Second,
			},
			wantInterval: time.Second, wantTimeout: time.Second, wantDCSA: time.Minute,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := consultest.MustNew(t)
			if _, err := discovery.Register(context.Background(), fake.Client(t), tt.reg); err != nil {
				t.Fatalf("Register: %v", err)
			}
			got := fake.Services()
			if len(got) != 1 {
				t.Fatalf("agent has %d services, want 1: %+v", len(got), got)
			}
			s := got[0]
			if s.Name != tt.reg.Service || s.ID != tt.reg.ID || s.Address != tt.reg.Address ||
				s.Port != tt.reg.Port || !slices.Equal(s.Tags, tt.reg.Tags) {
				t.Errorf("registered %+v, want %+v", s, tt.reg)
			}
			if !s.ReplaceExistingChecks {
				t.Error("register did not ask to replace existing checks")
			}
			if len(s.Checks) != 1 {
				t.Fatalf("checks = %+v, want one HTTP check", s.Checks)
			}
			c := s.Checks[0]
			if c.HTTP != tt.reg.HealthURL || c.Method != "GET" {
				t.Errorf("check %s %s, want GET %s", c.Method, c.HTTP, tt.reg.HealthURL)
			}
			if got := mustParseDuration(t, c.Interval); got != tt.wantInterval {
				t.Errorf("Interval = %v, want %v", got, tt.wantInterval)
			}
			if got := mustParseDuration(t, c.Timeout); got != tt.wantTimeout {
				t.Errorf("Timeout = %v, want %v", got, tt.wantTimeout)
			}
			if got := mustParseDuration(t, c.DeregisterCriticalServiceAfter); got != tt.wantDCSA {
				t.Errorf("DeregisterCriticalServiceAfter = %v, want %v", got, tt.wantDCSA)
			}
		})
	}
}

func TestRegisterDefaultsIDToInstanceID(t *testing.T) {
	t.Parallel()
	fake := consultest.MustNew(t)
	host, err := os.Hostname()
	if err != nil {
		t.Fatalf("hostname: %v", err)
	}
	reg := discovery.Registration{Service: "query", Port: 8082, HealthURL: "http://127.0.0.1:8082/readyz"}
	if _, err := discovery.Register(context.Background(), fake.Client(t), reg); err != nil {
		t.Fatalf("Register: %v", err)
	}
	got := fake.Services()
	if want := discovery.InstanceID("query", host, 8082); len(got) != 1 || got[0].ID != want {
		t.Errorf("services %+v, want one with ID %q", got, want)
	}
}

func TestDeregisterRemovesInstance(t *testing.T) {
	t.Parallel()
	fake := consultest.MustNew(t)
	client := fake.Client(t)
	ctx := context.Background()
	keep := discovery.Registration{Service: "command", ID: "command-b-8080", Port: 8080, HealthURL: "http://b:8080/readyz"}
	if _, err := discovery.Register(ctx, client, keep); err != nil {
		t.Fatal(err)
	}
	deregister, err := discovery.Register(ctx, client, discovery.Registration{
		Service: "command", ID: "command-a-8080", Port: 8080, HealthURL: "http://a:8080/readyz",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := deregister(ctx); err != nil {
		t.Fatalf("deregister: %v", err)
	}
	got := fake.Services()
	if len(got) != 1 || got[0].ID != keep.ID {
		t.Errorf("after deregister services = %+v, want only %s", got, keep.ID)
	}
	if err := deregister(ctx); err != nil {
		t.Errorf("second deregister: %v, want nil", err)
	}
}

func TestDeregisterToleratesAnInstanceAlreadyGone(t *testing.T) {
	t.Parallel()
	fake := consultest.MustNew(t)
	client := fake.Client(t)
	ctx := context.Background()
	deregister, err := discovery.Register(ctx, client, discovery.Registration{
		Service: "command", ID: "command-a-8080", Port: 8080, HealthURL: "http://a:8080/readyz",
	})
	if err != nil {
		t.Fatal(err)
	}
	// The agent reaped it (DeregisterCriticalAfter) before shutdown.
	if err := client.Agent().ServiceDeregister("command-a-8080"); err != nil {
		t.Fatal(err)
	}
	if err := deregister(ctx); err != nil {
		t.Errorf("deregister of a reaped instance: %v, want nil", err)
	}
}

func TestDeregisterReportsAgentErrors(t *testing.T) {
	t.Parallel()
	fake := consultest.MustNew(t)
	deregister, err := discovery.Register(context.Background(), fake.Client(t), discovery.Registration{
		Service: "command", ID: "command-a-8080", Port: 8080, HealthURL: "http://a:8080/readyz",
	})
	if err != nil {
		t.Fatal(err)
	}
	fake.Close()
	if err := deregister(context.Background()); err == nil {
		t.Error("deregister against a stopped agent returned nil")
	}
}

func TestRegisterRejectsInvalidRegistration(t *testing.T) {
	t.Parallel()
	valid := discovery.Registration{Service: "command", ID: "command-a-8080", Port: 8080, HealthURL: "http://a:8080/readyz"}
	tests := []struct {
		name   string
		mutate func(*discovery.Registration)
	}{
		{"empty service", func(r *discovery.Registration) { r.Service = "" }},
		{"zero port", func(r *discovery.Registration) { r.Port = 0 }},
		{"port too large", func(r *discovery.Registration) { r.Port = 70000 }},
		{"id with slash", func(r *discovery.Registration) { r.ID = "command/a" }},
		{"id with space", func(r *discovery.Registration) { r.ID = "command a" }},
		{"relative health URL", func(r *discovery.Registration) { r.HealthURL = "/readyz" }},
		{"health URL not http", func(r *discovery.Registration) { r.HealthURL = "tcp://a:8080" }},
		{"empty health URL", func(r *discovery.Registration) { r.HealthURL = "" }},
		{"negative interval", func(r *discovery.Registration) { r.CheckInterval = -time.Second }},
		{"timeout above interval", func(r *discovery.Registration) {
			r.CheckInterval, r.CheckTimeout = time.Second, 3*time.Second
		}},
	}
	fake := consultest.MustNew(t)
	client := fake.Client(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := valid
			tt.mutate(&reg)
			_, err := discovery.Register(context.Background(), client, reg)
			if !errors.Is(err, discovery.ErrInvalidRegistration) {
				t.Errorf("Register(%+v) = %v, want ErrInvalidRegistration", reg, err)
			}
		})
	}
	if got := fake.Services(); len(got) != 0 {
		t.Errorf("invalid registrations reached the agent: %+v", got)
	}
	if _, err := discovery.Register(context.Background(), nil, valid); !errors.Is(err, discovery.ErrInvalidRegistration) {
		t.Errorf("nil client: %v, want ErrInvalidRegistration", err)
	}
}

func TestRegisterReportsAgentErrors(t *testing.T) {
	t.Parallel()
	fake := consultest.MustNew(t)
	client := fake.Client(t)
	fake.Close()
	_, err := discovery.Register(context.Background(), client, discovery.Registration{
		Service: "command", ID: "command-a-8080", Port: 8080, HealthURL: "http://a:8080/readyz",
	})
	if err == nil || errors.Is(err, discovery.ErrInvalidRegistration) {
		t.Errorf("Register against a stopped agent = %v, want a transport error", err)
	}
}

func TestInstanceID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, service, host string
		port                int
		want                string
	}{
		{"plain", "command", "web-1", 8080, "command-web-1-8080"},
		{"fqdn keeps dots", "query", "node7.example.internal", 8082, "query-node7.example.internal-8082"},
		{"unsafe characters", "relay", "a/b c?d", 8081, "relay-a-b-c-d-8081"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := discovery.InstanceID(tt.service, tt.host, tt.port); got != tt.want {
				t.Errorf("InstanceID(%q, %q, %d) = %q, want %q", tt.service, tt.host, tt.port, got, tt.want)
			}
		})
	}
}
