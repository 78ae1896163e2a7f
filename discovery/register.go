package discovery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// Defaults applied by Register to zero durations of a Registration.
const (
	DefaultCheckInterval           = 5 * time.Second
	DefaultCheckTimeout            = 2 * time.Second
	DefaultDeregisterCriticalAfter = time.Minute
)

// ErrInvalidRegistration is wrapped by the error Register returns for a
// Registration it refuses before talking to Consul.
var ErrInvalidRegistration = errors.New("invalid registration")

// Registration describes one instance of a role as Consul should know it.
type Registration struct {
	// Service is the role's name, the key others resolve it by ("command").
	Service string
	// ID is unique per instance; empty means InstanceID(Service, hostname, Port).
	ID string
	// Address is the host other processes reach this instance on; empty means
	// the agent's node address.
	Address string
	// Port is the port the role serves HTTP on.
	Port int
	// Tags are free-form labels (for example the build version).
	Tags []string
	// HealthURL is the absolute http(s) URL the agent checks; see the package
	// doc for which path each role registers.
	HealthURL string
	// CheckInterval is how often the agent runs the check (default 5s).
	CheckInterval time.Duration
	// CheckTimeout bounds one check; a timeout counts as critical (default
	// 2s, or CheckInterval if shorter; it may not exceed CheckInterval).
	CheckTimeout time.Duration
	// DeregisterCriticalAfter is how long a check may stay critical before the
	// agent removes the instance, so crashed instances do not linger (default 1m).
	DeregisterCriticalAfter time.Duration
}

// InstanceID returns "service-hostname-port" with every character outside
// [A-Za-z0-9._-] replaced by '-', so the id is unique per instance and safe in
// the agent's URL paths.
func InstanceID(service, hostname string, port int) string {
	return sanitizeID(service) + "-" + sanitizeID(hostname) + "-" + strconv.Itoa(port)
}

func sanitizeID(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '-'
	}, s)
}

// withDefaults fills the zero fields of reg and reports every problem at once.
func (reg Registration) withDefaults() (Registration, error) {
	if reg.ID == "" && reg.Service != "" {
		host, err := os.Hostname()
		if err != nil {
			return reg, fmt.Errorf("discovery: default instance id: %w", err)
		}
		reg.ID = InstanceID(reg.Service, host, reg.Port)
	}
	if reg.CheckInterval == 0 {
		reg.CheckInterval = DefaultCheckInterval
	}
	if reg.CheckTimeout == 0 {
		reg.CheckTimeout = min(DefaultCheckTimeout, reg.CheckInterval)
	}
	if reg.DeregisterCriticalAfter == 0 {
		reg.DeregisterCriticalAfter = DefaultDeregisterCriticalAfter
	}

	var errs []error
	if reg.Service == "" {
		errs = append(errs, errors.New("service name is empty"))
	}
	// The client puts the id into the deregister path unescaped.
	if strings.ContainsAny(reg.ID, "/?#% \t\r\n") {
		errs = append(errs, fmt.Errorf("id %q contains a character unsafe in a URL path", reg.ID))
	}
	if reg.Port < 1 || reg.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d is outside 1-65535", reg.Port))
	}
	if u, err := url.Parse(reg.HealthURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("health URL %q is not an absolute http(s) URL", reg.HealthURL))
	}
	if reg.CheckInterval < 0 || reg.CheckTimeout < 0 || reg.DeregisterCriticalAfter < 0 {
		errs = append(errs, errors.New("check durations must not be negative"))
	}
	if reg.CheckTimeout > reg.CheckInterval {
		errs = append(errs, fmt.Errorf("check timeout %s exceeds interval %s", reg.CheckTimeout, reg.CheckInterval))
	}
	if len(errs) > 0 {
		return reg, fmt.Errorf("discovery: %w: %w", ErrInvalidRegistration, errors.Join(errs...))
	}
	return reg, nil
}

// Register registers reg with the local agent, with an HTTP check on
// reg.HealthURL, replacing any earlier registration under the same id. It
// returns an error wrapping ErrInvalidRegistration for a bad reg (nothing is
// sent), or the agent's error. The returned func deregisters the instance;
// call it on graceful shutdown with a context that is not already cancelled.
// It treats an instance the agent no longer knows as deregistered; after it
// succeeded once, later calls return nil without asking the agent.
func Register(ctx context.Context, client *api.Client, reg Registration) (deregister func(context.Context) error, err error) {
	if client == nil {
		return nil, fmt.Errorf("discovery: %w: nil consul client", ErrInvalidRegistration)
	}
	reg, err = reg.withDefaults()
	if err != nil {
		return nil, err
	}
	svc := &api.AgentServiceRegistration{
		ID:      reg.ID,
		Name:    reg.Service,
		Tags:    reg.Tags,
		Address: reg.Address,
		Port:    reg.Port,
		Check: &api.AgentServiceCheck{
			Name:                           reg.Service + " readiness",
			HTTP:                           reg.HealthURL,
			Method:                         "GET",
			Interval:                       reg.CheckInterval.String(),
			Timeout:                        reg.CheckTimeout.String(),
			DeregisterCriticalServiceAfter: reg.DeregisterCriticalAfter.String(),
		},
	}
	// Replacing existing checks makes a restart under the same id idempotent:
	// a check left over from an earlier definition does not survive.
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	if err := client.Agent().ServiceRegisterOpts(svc, opts); err != nil {
		return nil, fmt.Errorf("discovery: register %s (%s): %w", reg.Service, reg.ID, err)
	}

	var (
		mu   sync.Mutex
		done bool
	)
	deregister = func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return nil
		}
		q := (&api.QueryOptions{}).WithContext(ctx)
		err := client.Agent().ServiceDeregisterOpts(reg.ID, q)
		// Already gone (reaped after DeregisterCriticalAfter, or an agent
		// restart) is the state deregistering asks for.
		var status api.StatusError
		if err != nil && !(errors.As(err, &status) && status.Code == http.StatusNotFound) {
			return fmt.Errorf("discovery: deregister %s (%s): %w", reg.Service, reg.ID, err)
		}
		done = true
		return nil
	}
	return deregister, nil
}
