// Package consultest is an in-process stand-in for a Consul agent, for tests
// of code that registers services and resolves them through
// github.com/hashicorp/consul/api.
//
// It implements exactly the endpoints package discovery uses, with Consul's
// documented JSON field names and blocking-query semantics:
//
//	PUT /v1/agent/service/register[?replace-existing-checks=true]
//	PUT /v1/agent/service/deregister/{id}
//	GET /v1/health/service/{name}[?passing=1][&index=N][&wait=D]
//
// Request bodies with fields it does not know are refused with 400, so a
// misspelled field fails the test instead of vanishing. It never runs the
// registered HTTP checks: a new check starts critical (as on a real agent,
// unless the registration sets Status), and tests move it with
// SetCheckStatus. It keeps one node ("consultest", 127.0.0.1) whose
// serfHealth check always passes, and one state index, like a Raft index:
// every change takes the next index, and the health query of a service
// reports the index of the last change that touched that service (or the
// current index for a service never seen).
package consultest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// Node identity of the stand-in agent.
const (
	NodeName    = "consultest"
	NodeAddress = "127.0.0.1"
	Datacenter  = "dc1"
)

// Check statuses, as Consul spells them.
const (
	StatusPassing  = "passing"
	StatusWarning  = "warning"
	StatusCritical = "critical"
)

// Blocking-query limits Consul documents: a query without wait waits 5m; no
// query waits longer than 10m.
const (
	DefaultWait = 5 * time.Minute
	MaxWait     = 10 * time.Minute
)

// Registration is a service as the stand-in recorded it from the last
// register request for its ID, with its checks' current statuses.
type Registration struct {
	ID                    string
	Name                  string
	Tags                  []string
	Address               string
	Port                  int
	Meta                  map[string]string
	Checks                []Check
	ReplaceExistingChecks bool // the request's replace-existing-checks flag

	createIndex, modifyIndex uint64
}

// Check is one recorded service check definition and its current status.
type Check struct {
	CheckID                        string
	Name                           string
	HTTP                           string
	Method                         string
	Header                         map[string][]string
	Interval                       string
	Timeout                        string
	DeregisterCriticalServiceAfter string
	Status                         string
}

// HealthRequest is one recorded GET /v1/health/service/{name}.
type HealthRequest struct {
	Service  string
	Index    uint64 // 0 when the request carried no index
	Wait     time.Duration
	Passing  bool
	Received time.Time
}

// Server is the stand-in agent. Its methods are safe for concurrent use.
type Server struct {
	// URL is the agent's base URL ("http://127.0.0.1:port").
	URL string

	tb   testing.TB
	srv  *httptest.Server
	done chan struct{}

	mu           sync.Mutex
	index        uint64
	changed      chan struct{} // closed and replaced on every change
	services     map[string]*Registration
	serviceIndex map[string]uint64 // service name → index of its last change
	requests     []HealthRequest
	blocked      map[string]int // service name → parked blocking queries
}

// MustNew starts a stand-in agent and stops it when the test ends; parked
// blocking queries are released first, so stopping never waits for them.
func MustNew(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{
		tb:           tb,
		done:         make(chan struct{}),
		index:        1,
		changed:      make(chan struct{}),
		services:     map[string]*Registration{},
		serviceIndex: map[string]uint64{},
		blocked:      map[string]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/agent/service/register", s.handleRegister)
	mux.HandleFunc("/v1/agent/service/deregister/{id}", s.handleDeregister)
	mux.HandleFunc("/v1/health/service/{name}", s.handleHealthService)
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
	tb.Cleanup(s.Close)
	return s
}

// Close releases parked queries and stops the server; MustNew's cleanup
// calls it, and calling it again does nothing.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.done:
		s.mu.Unlock()
		return
	default:
		close(s.done)
	}
	s.mu.Unlock()
	s.srv.Close()
}

// Client returns a consul/api client for this agent. It ignores the
// CONSUL_HTTP_ADDR and TLS settings of the environment.
func (s *Server) Client(tb testing.TB) *api.Client {
	tb.Helper()
	c, err := api.NewClient(&api.Config{
		Address:   strings.TrimPrefix(s.URL, "http://"),
		Scheme:    "http",
		Transport: s.srv.Client().Transport.(*http.Transport).Clone(),
	})
	if err != nil {
		tb.Fatalf("consultest: new client: %v", err)
	}
	return c
}

// Services returns the registered services, sorted by ID.
func (s *Server) Services() []Registration {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Registration, 0, len(s.services))
	for _, r := range s.services {
		out = append(out, r.clone())
	}
	slices.SortFunc(out, func(a, b Registration) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// SetCheckStatus sets every check of service serviceID to status (passing,
// warning or critical) and wakes blocked queries, as the agent does when a
// check's outcome changes. It fails the test for an unknown service or
// status; call it from the test's goroutine.
func (s *Server) SetCheckStatus(serviceID, status string) {
	s.tb.Helper()
	if status != StatusPassing && status != StatusWarning && status != StatusCritical {
		s.tb.Fatalf("consultest: SetCheckStatus(%q, %q): unknown status", serviceID, status)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.services[serviceID]
	if !ok {
		s.tb.Fatalf("consultest: SetCheckStatus(%q, %q): no such service", serviceID, status)
		return
	}
	if len(r.Checks) == 0 {
		s.tb.Fatalf("consultest: SetCheckStatus(%q, %q): service has no checks", serviceID, status)
		return
	}
	same := true
	for i := range r.Checks {
		same = same && r.Checks[i].Status == status
		r.Checks[i].Status = status
	}
	if !same {
		s.bumpLocked(r.Name)
		r.modifyIndex = s.index
	}
}

// ResetIndex sets the state index to index, as a snapshot restore to older
// data would: every service's index is lowered to at most index, and the
// next change takes index+1. ResetIndex(0) makes queries answer
// X-Consul-Index 0, the agent bug clients must survive. Parked queries are
// woken but, as on a real agent, keep waiting until the index exceeds theirs
// or their wait elapses.
func (s *Server) ResetIndex(index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index = index
	for name, idx := range s.serviceIndex {
		s.serviceIndex[name] = min(idx, index)
	}
	s.wakeLocked()
}

// Index returns the current state index.
func (s *Server) Index() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index
}

// ServiceIndex returns the X-Consul-Index a health query for service would
// answer now.
func (s *Server) ServiceIndex(service string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.indexForLocked(service)
}

// HealthRequests returns the health queries received for service, oldest
// first.
func (s *Server) HealthRequests(service string) []HealthRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []HealthRequest
	for _, r := range s.requests {
		if r.Service == service {
			out = append(out, r)
		}
	}
	return out
}

// Blocked returns how many health queries for service are parked waiting
// for a change.
func (s *Server) Blocked(service string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blocked[service]
}

func (s *Server) bumpLocked(names ...string) {
	s.index++
	for _, n := range names {
		s.serviceIndex[n] = s.index
	}
	s.wakeLocked()
}

func (s *Server) wakeLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) indexForLocked(name string) uint64 {
	if idx, ok := s.serviceIndex[name]; ok {
		return idx
	}
	return s.index
}

// wire types: the agent service register request body (Consul's field
// names; only what the stand-in supports).
type registerRequest struct {
	Kind              string
	ID                string
	Name              string
	Tags              []string
	Port              int
	Address           string
	Meta              map[string]string
	EnableTagOverride bool
	Weights           *struct{ Passing, Warning int }
	Check             *checkDefinition
	Checks            []*checkDefinition
}

type checkDefinition struct {
	CheckID                        string
	Name                           string
	HTTP                           string
	Method                         string
	Header                         map[string][]string
	Body                           string
	TLSServerName                  string
	TLSSkipVerify                  bool
	Interval                       string
	Timeout                        string
	DeregisterCriticalServiceAfter string
	Status                         string
	Notes                          string
	SuccessBeforePassing           int
	FailuresBeforeWarning          int
	FailuresBeforeCritical         int
}

// wire types: one element of the health service response.
type serviceEntry struct {
	Node    nodeJSON
	Service agentServiceJSON
	Checks  []healthCheckJSON
}

type nodeJSON struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
	CreateIndex     uint64
	ModifyIndex     uint64
}

type agentServiceJSON struct {
	ID                string
	Service           string
	Tags              []string
	Address           string
	Meta              map[string]string
	Port              int
	Weights           struct{ Passing, Warning int }
	EnableTagOverride bool
	CreateIndex       uint64
	ModifyIndex       uint64
}

type healthCheckJSON struct {
	Node        string
	CheckID     string
	Name        string
	Status      string
	Notes       string
	Output      string
	ServiceID   string
	ServiceName string
	ServiceTags []string
	Type        string
	CreateIndex uint64
	ModifyIndex uint64
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	var req registerRequest
	if err := dec.Decode(&req); err != nil {
		http.Error(w, "Request decode failed: "+err.Error(), http.StatusBadRequest)
		return
	}
	if req.Name == "" {
		http.Error(w, "Missing service name", http.StatusBadRequest)
		return
	}
	if req.Kind != "" {
		http.Error(w, "consultest: service kinds are not supported", http.StatusBadRequest)
		return
	}
	if req.ID == "" {
		req.ID = req.Name
	}
	defs := req.Checks
	if req.Check != nil {
		defs = append([]*checkDefinition{req.Check}, defs...)
	}
	reg := &Registration{
		ID:                    req.ID,
		Name:                  req.Name,
		Tags:                  slices.Clone(req.Tags),
		Address:               req.Address,
		Port:                  req.Port,
		Meta:                  req.Meta,
		ReplaceExistingChecks: r.URL.Query().Get("replace-existing-checks") == "true",
	}
	for i, d := range defs {
		if d == nil {
			continue
		}
		c, err := newCheck(req.ID, req.Name, i, len(defs), d)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		reg.Checks = append(reg.Checks, c)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	names := []string{reg.Name}
	if old, ok := s.services[reg.ID]; ok && old.Name != reg.Name {
		names = append(names, old.Name)
	}
	s.services[reg.ID] = reg
	s.bumpLocked(names...)
	reg.createIndex, reg.modifyIndex = s.index, s.index
	w.WriteHeader(http.StatusOK)
}

// newCheck validates d as the agent does for the check types the stand-in
// knows and names it as the agent does: "service:<id>", or
// "service:<id>:<n>" when the service has several checks.
func newCheck(serviceID, serviceName string, i, n int, d *checkDefinition) (Check, error) {
	if d.HTTP == "" {
		return Check{}, errors.New("consultest: only HTTP checks are supported")
	}
	if u, err := url.Parse(d.HTTP); err != nil || u.Scheme == "" || u.Host == "" {
		return Check{}, fmt.Errorf("invalid HTTP check URL %q", d.HTTP)
	}
	for name, v := range map[string]string{
		"Interval": d.Interval, "Timeout": d.Timeout,
		"DeregisterCriticalServiceAfter": d.DeregisterCriticalServiceAfter,
	} {
		if v == "" {
			continue
		}
		if _, err := time.ParseDuration(v); err != nil {
			return Check{}, fmt.Errorf("invalid %s %q: %v", name, v, err)
		}
	}
	if iv, _ := time.ParseDuration(d.Interval); iv <= 0 {
		return Check{}, errors.New("interval must be > 0 for Script, HTTP, H2PING, or TCP checks")
	}
	switch d.Status {
	case "":
		d.Status = StatusCritical
	case StatusPassing, StatusWarning, StatusCritical:
	default:
		return Check{}, fmt.Errorf("invalid check status %q", d.Status)
	}
	id := d.CheckID
	if id == "" {
		id = "service:" + serviceID
		if n > 1 {
			id += ":" + strconv.Itoa(i+1)
		}
	}
	name := d.Name
	if name == "" {
		name = "Service '" + serviceName + "' check"
	}
	return Check{
		CheckID:                        id,
		Name:                           name,
		HTTP:                           d.HTTP,
		Method:                         d.Method,
		Header:                         d.Header,
		Interval:                       d.Interval,
		Timeout:                        d.Timeout,
		DeregisterCriticalServiceAfter: d.DeregisterCriticalServiceAfter,
		Status:                         d.Status,
	}, nil
}

func (s *Server) handleDeregister(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	reg, ok := s.services[id]
	if !ok {
		http.Error(w, fmt.Sprintf("Unknown service ID %q. Ensure that the service ID is passed, not the service name.", id), http.StatusNotFound)
		return
	}
	delete(s.services, id)
	s.bumpLocked(reg.Name)
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleHealthService(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name := r.PathValue("name")
	q := r.URL.Query()
	var minIndex uint64
	if v := q.Get("index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			http.Error(w, "Invalid index", http.StatusBadRequest)
			return
		}
		minIndex = n
	}
	wait := DefaultWait
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			http.Error(w, "Invalid wait time", http.StatusBadRequest)
			return
		}
		wait = min(d, MaxWait)
	}
	// Consul treats a present passing parameter without a value as true.
	passing := false
	if _, ok := q["passing"]; ok {
		v := q.Get("passing")
		b, err := strconv.ParseBool(v)
		if v != "" && err != nil {
			http.Error(w, "Invalid value for ?passing", http.StatusBadRequest)
			return
		}
		passing = v == "" || b
	}

	s.mu.Lock()
	s.requests = append(s.requests, HealthRequest{Service: name, Index: minIndex, Wait: wait, Passing: passing, Received: time.Now()})
	s.mu.Unlock()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		idx := s.indexForLocked(name)
		// index=0 (or none) is a plain read; otherwise park until the
		// service's index exceeds the client's.
		if minIndex == 0 || idx > minIndex {
			s.writeHealthLocked(w, name, passing, idx)
			s.mu.Unlock()
			return
		}
		changed := s.changed
		s.blocked[name]++
		s.mu.Unlock()

		stop := false
		select {
		case <-changed:
		case <-timer.C:
			stop = true
		case <-r.Context().Done():
			stop = true
		case <-s.done:
			stop = true
		}
		s.mu.Lock()
		s.blocked[name]--
		if stop {
			// A timed-out blocking query answers the current state and index.
			s.writeHealthLocked(w, name, passing, s.indexForLocked(name))
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}

// writeHealthLocked answers a health service query: the service's instances
// (only those whose checks all pass, when passing) and the given index.
func (s *Server) writeHealthLocked(w http.ResponseWriter, name string, passing bool, index uint64) {
	out := []serviceEntry{}
	ids := make([]string, 0, len(s.services))
	for id := range s.services {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		reg := s.services[id]
		if reg.Name != name {
			continue
		}
		e := serviceEntry{
			Node: nodeJSON{
				ID: "00000000-0000-0000-0000-000000000001", Node: NodeName, Address: NodeAddress,
				Datacenter:      Datacenter,
				TaggedAddresses: map[string]string{"lan": NodeAddress, "wan": NodeAddress},
				Meta:            map[string]string{},
				CreateIndex:     1, ModifyIndex: 1,
			},
			Service: agentServiceJSON{
				ID: reg.ID, Service: reg.Name, Tags: nonNil(reg.Tags), Address: reg.Address,
				Meta: reg.Meta, Port: reg.Port,
				Weights:     struct{ Passing, Warning int }{Passing: 1, Warning: 1},
				CreateIndex: reg.createIndex, ModifyIndex: reg.modifyIndex,
			},
			Checks: []healthCheckJSON{{
				Node: NodeName, CheckID: "serfHealth", Name: "Serf Health Status",
				Status: StatusPassing, Output: "Agent alive and reachable",
				ServiceTags: []string{}, CreateIndex: 1, ModifyIndex: 1,
			}},
		}
		if e.Service.Meta == nil {
			e.Service.Meta = map[string]string{}
		}
		ok := true
		for _, c := range reg.Checks {
			ok = ok && c.Status == StatusPassing
			e.Checks = append(e.Checks, healthCheckJSON{
				Node: NodeName, CheckID: c.CheckID, Name: c.Name, Status: c.Status,
				ServiceID: reg.ID, ServiceName: reg.Name, ServiceTags: nonNil(reg.Tags),
				Type: "http", CreateIndex: reg.createIndex, ModifyIndex: reg.modifyIndex,
			})
		}
		if passing && !ok {
			continue
		}
		out = append(out, e)
	}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(out); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Consul-Index", strconv.FormatUint(index, 10))
	h.Set("X-Consul-KnownLeader", "true")
	h.Set("X-Consul-LastContact", "0")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

func (r *Registration) clone() Registration {
	c := *r
	c.Tags = slices.Clone(r.Tags)
	c.Checks = slices.Clone(r.Checks)
	return c
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}
