package discovery_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/orderflow/orderflow/discovery"
	"github.com/orderflow/orderflow/discovery/consultest"
)

// mustRegister registers an instance of service on the fake and returns its id.
func mustRegister(t *testing.T, client *api.Client, service, id, address string, port int) string {
	t.Helper()
	_, err := discovery.Register(context.Background(), client, discovery.Registration{
		Service: service, ID: id, Address: address, Port: port,
		HealthURL: "http://" + service + ":" + strconv.Itoa(port) + "/readyz",
	})
	if err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
	return id
}

// awaitCaughtUp waits until the resolver has asked about service with an
// index at least the service's current one, i.e. it has taken in every
// change made so far (it sends the index of the answer it last handled).
func awaitCaughtUp(t *testing.T, fake *consultest.Server, service string) {
	t.Helper()
	idx := fake.ServiceIndex(service)
	waitFor(t, 3*time.Second, service+" query at index "+strconv.FormatUint(idx, 10), func() bool {
		reqs := fake.HealthRequests(service)
		return len(reqs) > 0 && reqs[len(reqs)-1].Index >= idx
	})
}

func indexes(reqs []consultest.HealthRequest) []uint64 {
	out := make([]uint64, len(reqs))
	for i, q := range reqs {
		out[i] = q.Index
	}
	return out
}

func TestResolverTracksPassingInstances(t *testing.T) {
	t.Parallel()
	fake := consultest.MustNew(t)
	client := fake.Client(t)
	r := newTestResolver(client, 500*time.Millisecond, "command", "query")
	if r.Ready() {
		t.Error("Ready before Run")
	}
	MustRun(t, r)
	waitFor(t, 3*time.Second, "first answers", r.Ready)
	if got := r.Instances("command"); got != nil {
		t.Errorf("no instances registered, Instances = %v", got)
	}

	a := mustRegister(t, client, "command", "command-a-8080", "10.0.0.1", 8080)
	awaitCaughtUp(t, fake, "command")
	if got := r.Instances("command"); got != nil {
		t.Errorf("an instance whose first check has not passed is listed: %v", got)
	}

	const (
		urlA = "http://10.0.0.1:8080"
		urlB = "http://" + consultest.NodeAddress + ":8090" // no service address: the node's
		urlC = "http://[::1]:8091"
	)
	steps := []struct {
		name   string
		act    func()
		svc    string
		want   []string
		reason string
	}{
		{"a passes", func() { fake.SetCheckStatus(a, consultest.StatusPassing) }, "command", []string{urlA}, "new instance seen"},
		{"b registers and passes", func() {
			b := mustRegister(t, client, "command", "command-b-8090", "", 8090)
			fake.SetCheckStatus(b, consultest.StatusPassing)
		}, "command", []string{urlA, urlB}, "second instance, node address fallback"},
		{"c in another service", func() {
			c := mustRegister(t, client, "query", "query-c-8091", "::1", 8091)
			fake.SetCheckStatus(c, consultest.StatusPassing)
		}, "query", []string{urlC}, "IPv6 address bracketed"},
		{"a goes critical", func() { fake.SetCheckStatus(a, consultest.StatusCritical) }, "command", []string{urlB}, "critical dropped"},
		{"b warns", func() { fake.SetCheckStatus("command-b-8090", consultest.StatusWarning) }, "command", nil, "warning dropped: passing only"},
		{"b passes again", func() { fake.SetCheckStatus("command-b-8090", consultest.StatusPassing) }, "command", []string{urlB}, "recovered instance back"},
		{"b deregisters", func() {
			if err := client.Agent().ServiceDeregister("command-b-8090"); err != nil {
				t.Fatal(err)
			}
		}, "command", nil, "deregistered dropped"},
	}
	for _, s := range steps {
		s.act()
		waitFor(t, 2*time.Second, s.name+" ("+s.reason+")", hasInstances(r, s.svc, s.want...))
	}
	if got := r.Instances("query"); !slices.Equal(got, []string{urlC}) {
		t.Errorf("query instances = %v after command changes, want [%s]", got, urlC)
	}
	if got := r.Instances("unwatched"); got != nil {
		t.Errorf("unwatched service: %v, want nil", got)
	}
	for _, q := range fake.HealthRequests("command") {
		if !q.Passing {
			t.Fatalf("health query without passing=1: %+v", q)
		}
	}
}

func TestResolverSeesChangeThroughBlockedQuery(t *testing.T) {
	t.Parallel()
	fake := consultest.MustNew(t)
	client := fake.Client(t)
	a := mustRegister(t, client, "command", "command-a-8080", "10.0.0.1", 8080)
	fake.SetCheckStatus(a, consultest.StatusPassing)
	// A long wait: only the parked query can explain a prompt update.
	r := newTestResolver(client, 5*time.Second, "command")
	MustRun(t, r)
	waitFor(t, 3*time.Second, "instance a", hasInstances(r, "command", "http://10.0.0.1:8080"))
	waitFor(t, 3*time.Second, "a parked blocking query", func() bool { return fake.Blocked("command") == 1 })
	before := len(fake.HealthRequests("command"))

	fake.SetCheckStatus(a, consultest.StatusCritical)
	took := waitFor(t, time.Second, "a dropped", hasInstances(r, "command"))

	// The parked query answered; at most the next blocking query has started.
	if n := len(fake.HealthRequests("command")) - before; n > 1 {
		t.Errorf("%d new queries for one change (took %v), want at most 1", n, took)
	}
	t.Logf("change seen after %v", took)
}

func TestResolverDoesNotBusyPoll(t *testing.T) {
	t.Parallel()
	fake := consultest.MustNew(t)
	client := fake.Client(t)
	a := mustRegister(t, client, "command", "command-a-8080", "10.0.0.1", 8080)
	fake.SetCheckStatus(a, consultest.StatusPassing)
	const wait = 500 * time.Millisecond
	r := newTestResolver(client, wait, "command")
	MustRun(t, r)
	waitFor(t, 3*time.Second, "a parked blocking query", func() bool { return fake.Blocked("command") == 1 })
	before := len(fake.HealthRequests("command"))

	time.Sleep(time.Second) // the observation window: nothing changes in it

	reqs := fake.HealthRequests("command")[before:]
	// 1s of quiet with a 500ms wait: about two queries, each blocking.
	if len(reqs) < 1 || len(reqs) > 3 {
		t.Errorf("%d queries in 1s without changes, want 1-3 (indexes %v)", len(reqs), indexes(reqs))
	}
	for _, q := range reqs {
		if q.Index == 0 || q.Wait != wait {
			t.Errorf("non-blocking query %+v, want index > 0 and wait %v", q, wait)
			break
		}
	}
}

func TestResolverRestartsWhenIndexGoesBackwards(t *testing.T) {
	t.Parallel()
	fake := consultest.MustNew(t)
	client := fake.Client(t)
	a := mustRegister(t, client, "command", "command-a-8080", "10.0.0.1", 8080)
	for _, s := range []string{consultest.StatusWarning, consultest.StatusCritical, consultest.StatusPassing} {
		fake.SetCheckStatus(a, s)
	}
	r := newTestResolver(client, 500*time.Millisecond, "command")
	MustRun(t, r)
	waitFor(t, 3*time.Second, "instance a", hasInstances(r, "command", "http://10.0.0.1:8080"))
	waitFor(t, 3*time.Second, "a parked blocking query", func() bool { return fake.Blocked("command") == 1 })
	high := fake.Index()
	before := len(fake.HealthRequests("command"))

	// A snapshot restore: the index drops below the one the resolver holds.
	// Changes now take indexes the resolver has already passed, so a
	// resolver that kept its index would not see them.
	fake.ResetIndex(2)
	if high <= 3 {
		t.Fatalf("test setup: index %d must exceed the post-reset change index 3", high)
	}
	waitFor(t, 3*time.Second, "the restarted query (index reset, then raised to 1)", func() bool {
		return slices.ContainsFunc(fake.HealthRequests("command")[before:], func(q consultest.HealthRequest) bool {
			return q.Index == 1
		})
	})
	waitFor(t, 3*time.Second, "a query parked at the new index 2", func() bool {
		reqs := fake.HealthRequests("command")
		return fake.Blocked("command") == 1 && reqs[len(reqs)-1].Index == 2
	})
	fake.SetCheckStatus(a, consultest.StatusCritical) // index 3
	waitFor(t, time.Second, "a dropped after the restart", hasInstances(r, "command"))
}

func TestResolverNeverSendsIndexZeroAfterFirstQuery(t *testing.T) {
	t.Parallel()
	fake := consultest.MustNew(t)
	client := fake.Client(t)
	a := mustRegister(t, client, "command", "command-a-8080", "10.0.0.1", 8080)
	fake.SetCheckStatus(a, consultest.StatusPassing)
	r := newTestResolver(client, 500*time.Millisecond, "command")
	MustRun(t, r)
	waitFor(t, 3*time.Second, "a parked blocking query", func() bool { return fake.Blocked("command") == 1 })
	before := len(fake.HealthRequests("command"))

	// The agent now answers X-Consul-Index: 0.
	fake.ResetIndex(0)
	time.Sleep(1500 * time.Millisecond) // the observation window

	reqs := fake.HealthRequests("command")[before:]
	if len(reqs) == 0 || len(reqs) > 5 {
		t.Errorf("%d queries in 1.5s against an agent answering index 0, want 1-5", len(reqs))
	}
	if got := indexes(reqs); slices.ContainsFunc(got, func(i uint64) bool { return i != 1 }) {
		t.Errorf("query indexes after an index-0 answer = %v, want all 1", got)
	}
	if got := r.Instances("command"); !slices.Equal(got, []string{"http://10.0.0.1:8080"}) {
		t.Errorf("instances = %v, want a still listed", got)
	}
}

// TestResolverRateLimitsAnAgentThatAnswersAtOnce serves health queries that
// never block, the tight loop the rate limit exists for.
func TestResolverRateLimitsAnAgentThatAnswersAtOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		index     func(n uint64) uint64
		wantIndex func(q url.Values, n uint64) bool // for the n-th query, n >= 2
	}{
		{
			name:      "index keeps moving",
			index:     func(n uint64) uint64 { return n + 10 },
			wantIndex: func(q url.Values, n uint64) bool { return q.Get("index") == strconv.FormatUint(n-1+10, 10) },
		},
		{
			name:      "index stuck at zero",
			index:     func(uint64) uint64 { return 0 },
			wantIndex: func(q url.Values, _ uint64) bool { return q.Get("index") == "1" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var (
				count atomic.Uint64
				bad   atomic.Value
			)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				n := count.Add(1)
				q := req.URL.Query()
				if n == 1 && q.Has("index") || n > 1 && !tt.wantIndex(q, n) {
					bad.CompareAndSwap(nil, req.URL.RawQuery+" on query "+strconv.FormatUint(n, 10))
				}
				w.Header().Set("X-Consul-Index", strconv.FormatUint(tt.index(n), 10))
				w.Header().Set("X-Consul-LastContact", "0")
				w.Header().Set("X-Consul-KnownLeader", "true")
				_, _ = w.Write([]byte("[]"))
			}))
			t.Cleanup(srv.Close)
			client, err := api.NewClient(&api.Config{Address: strings.TrimPrefix(srv.URL, "http://"), Scheme: "http"})
			if err != nil {
				t.Fatal(err)
			}
			const minInterval = 100 * time.Millisecond
			r := newTestResolver(client, 500*time.Millisecond, "command")
			r.MinInterval = minInterval
			MustRun(t, r)
			waitFor(t, 3*time.Second, "first answer", r.Ready)
			start := count.Load()
			time.Sleep(time.Second) // the observation window
			n := count.Load() - start
			if n > uint64(time.Second/minInterval)+2 || n < 3 {
				t.Errorf("%d queries in 1s at a %v rate limit", n, minInterval)
			}
			if v := bad.Load(); v != nil {
				t.Errorf("unexpected query: %v", v)
			}
		})
	}
}

// flakyAgent forwards to the stand-in, or answers 500 while failing is set.
type flakyAgent struct {
	failing  atomic.Bool
	failures atomic.Int64
	proxy    *httputil.ReverseProxy
}

func (f *flakyAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.failing.Load() {
		f.failures.Add(1)
		http.Error(w, "rpc error: No cluster leader", http.StatusInternalServerError)
		return
	}
	f.proxy.ServeHTTP(w, r)
}

func mustFlakyAgent(t *testing.T, fake *consultest.Server) (*flakyAgent, *api.Client) {
	t.Helper()
	target, err := url.Parse(fake.URL)
	if err != nil {
		t.Fatal(err)
	}
	f := &flakyAgent{proxy: httputil.NewSingleHostReverseProxy(target)}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	client, err := api.NewClient(&api.Config{Address: strings.TrimPrefix(srv.URL, "http://"), Scheme: "http"})
	if err != nil {
		t.Fatal(err)
	}
	return f, client
}

func TestResolverKeepsLastViewWhileConsulFails(t *testing.T) {
	t.Parallel()
	fake := consultest.MustNew(t)
	a := mustRegister(t, fake.Client(t), "command", "command-a-8080", "10.0.0.1", 8080)
	fake.SetCheckStatus(a, consultest.StatusPassing)
	flaky, client := mustFlakyAgent(t, fake)
	r := newTestResolver(client, 200*time.Millisecond, "command")
	MustRun(t, r)
	waitFor(t, 3*time.Second, "instance a", hasInstances(r, "command", "http://10.0.0.1:8080"))

	flaky.failing.Store(true)
	waitFor(t, 3*time.Second, "three failed queries", func() bool { return flaky.failures.Load() >= 3 })
	if got := r.Instances("command"); !slices.Equal(got, []string{"http://10.0.0.1:8080"}) {
		t.Errorf("instances during the outage = %v, want the last known [a]", got)
	}
	if !r.Ready() {
		t.Error("Ready turned false during an outage")
	}

	fake.SetCheckStatus(a, consultest.StatusCritical)
	flaky.failing.Store(false)
	waitFor(t, 3*time.Second, "a dropped after recovery", hasInstances(r, "command"))
}

func TestResolverNotReadyUntilEveryServiceAnswered(t *testing.T) {
	t.Parallel()
	fake := consultest.MustNew(t)
	flaky, client := mustFlakyAgent(t, fake)
	flaky.failing.Store(true)
	r := newTestResolver(client, 200*time.Millisecond, "command", "query")
	MustRun(t, r)
	waitFor(t, 3*time.Second, "failed queries for both services", func() bool { return flaky.failures.Load() >= 4 })
	if r.Ready() {
		t.Error("Ready before any answer")
	}
	flaky.failing.Store(false)
	waitFor(t, 3*time.Second, "ready after the agent recovers", r.Ready)
}

func TestResolverRunTwiceAndCancel(t *testing.T) {
	t.Parallel()
	fake := consultest.MustNew(t)
	// Default WaitTime (a minute): MustRun's cleanup checks that cancelling
	// ends the parked query at once.
	r := discovery.NewResolver(fake.Client(t), []string{"command", "command"}, nil)
	MustRun(t, r)
	waitFor(t, 3*time.Second, "ready", r.Ready)
	waitFor(t, 3*time.Second, "one parked query (duplicates ignored)", func() bool { return fake.Blocked("command") == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := r.Run(ctx); !errors.Is(err, discovery.ErrAlreadyRunning) {
		t.Errorf("second Run = %v, want ErrAlreadyRunning", err)
	}
}

func TestResolverInstancesIsACopyAndConcurrencySafe(t *testing.T) {
	t.Parallel()
	fake := consultest.MustNew(t)
	client := fake.Client(t)
	a := mustRegister(t, client, "command", "command-a-8080", "10.0.0.1", 8080)
	fake.SetCheckStatus(a, consultest.StatusPassing)
	r := newTestResolver(client, 500*time.Millisecond, "command")
	MustRun(t, r)
	waitFor(t, 3*time.Second, "instance a", hasInstances(r, "command", "http://10.0.0.1:8080"))

	got := r.Instances("command")
	got[0] = "http://mutated:1"
	if again := r.Instances("command"); again[0] != "http://10.0.0.1:8080" {
		t.Errorf("caller's mutation leaked into the resolver: %v", again)
	}

	// Readers race the writer under -race while the check flaps.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					_ = r.Instances("command")
					_ = r.Ready()
				}
			}
		})
	}
	for i := range 10 {
		status := consultest.StatusCritical
		if i%2 == 1 {
			status = consultest.StatusPassing
		}
		fake.SetCheckStatus(a, status)
		awaitCaughtUp(t, fake, "command")
	}
	close(stop)
	wg.Wait()
	if got := r.Instances("command"); !slices.Equal(got, []string{"http://10.0.0.1:8080"}) {
		t.Errorf("after flapping back to passing: %v", got)
	}
}

func TestNewResolverPanicsOnNilClient(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Error("NewResolver(nil, …) did not panic")
		}
	}()
	discovery.NewResolver(nil, []string{"command"}, nil)
}
