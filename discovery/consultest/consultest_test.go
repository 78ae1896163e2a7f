package consultest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/discovery/consultest"
)

// The stand-in is checked with raw HTTP and raw JSON, not through the
// consul/api types, so its wire format is compared with Consul's documented
// field names rather than with itself.

// client is the tests' own: every httptest server's Close closes the
// default transport's idle connections, which broke a parallel test's PUT.
var client = &http.Client{Transport: new(http.Transport)}

func put(t *testing.T, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type healthAnswer struct {
	status  int
	index   uint64
	entries []map[string]any
	took    time.Duration
}

func getHealth(t *testing.T, url string) healthAnswer {
	t.Helper()
	start := time.Now()
	resp, err := client.Get(url)
	if err != nil {
		t.Error(err)
		return healthAnswer{}
	}
	defer resp.Body.Close()
	a := healthAnswer{status: resp.StatusCode, took: time.Since(start)}
	if a.status != http.StatusOK {
		return a
	}
	a.index, err = strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	if err != nil {
		t.Errorf("X-Consul-Index %q: %v", resp.Header.Get("X-Consul-Index"), err)
	}
	if err := json.NewDecoder(resp.Body).Decode(&a.entries); err != nil {
		t.Errorf("decode health answer: %v", err)
	}
	return a
}

const commandReg = `{
	"ID": "command-a-8080",
	"Name": "command",
	"Tags": ["v1"],
	"Address": "10.0.0.1",
	"Port": 8080,
	"Check": {
		"HTTP": "http://10.0.0.1:8080/readyz",
		"Interval": "5s",
		"Timeout": "2s",
		"DeregisterCriticalServiceAfter": "1m"
	}
}`

func TestRegisterRecordsRequest(t *testing.T) {
	t.Parallel()
	s := consultest.MustNew(t)
	if code, body := put(t, s.URL+"/v1/agent/service/register?replace-existing-checks=true", commandReg); code != http.StatusOK {
		t.Fatalf("register: %d %s", code, body)
	}
	got := s.Services()
	if len(got) != 1 {
		t.Fatalf("Services() = %+v, want one", got)
	}
	r := got[0]
	if r.ID != "command-a-8080" || r.Name != "command" || r.Address != "10.0.0.1" || r.Port != 8080 ||
		len(r.Tags) != 1 || r.Tags[0] != "v1" || !r.ReplaceExistingChecks {
		t.Errorf("recorded %+v", r)
	}
	if len(r.Checks) != 1 {
		t.Fatalf("checks = %+v, want one", r.Checks)
	}
	c := r.Checks[0]
	if c.CheckID != "service:command-a-8080" || c.HTTP != "http://10.0.0.1:8080/readyz" || c.Interval != "5s" ||
		c.Timeout != "2s" || c.DeregisterCriticalServiceAfter != "1m" || c.Status != consultest.StatusCritical {
		t.Errorf("recorded check %+v (a new check must start critical)", c)
	}
}

func TestRegisterRejectsBadRequests(t *testing.T) {
	t.Parallel()
	s := consultest.MustNew(t)
	tests := []struct {
		name string
		body string
	}{
		{"unknown field", `{"Name":"command","Port":1,"Adress":"x"}`},
		{"unknown check field", `{"Name":"command","Check":{"HTTP":"http://x/readyz","Interval":"5s","DeregisterCriticalAfter":"1m"}}`},
		{"missing name", `{"ID":"x","Port":1}`},
		{"check without interval", `{"Name":"command","Check":{"HTTP":"http://x/readyz"}}`},
		{"bad duration", `{"Name":"command","Check":{"HTTP":"http://x/readyz","Interval":"often"}}`},
		{"not JSON", `{`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, body := put(t, s.URL+"/v1/agent/service/register", tt.body); code != http.StatusBadRequest {
				t.Errorf("status %d (%s), want 400", code, body)
			}
		})
	}
	if got := s.Services(); len(got) != 0 {
		t.Errorf("bad requests recorded %+v", got)
	}
	resp, err := client.Post(s.URL+"/v1/agent/service/register", "application/json", strings.NewReader(commandReg))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST register: status %d, want 405", resp.StatusCode)
	}
}

func TestDeregister(t *testing.T) {
	t.Parallel()
	s := consultest.MustNew(t)
	if code, body := put(t, s.URL+"/v1/agent/service/register", commandReg); code != http.StatusOK {
		t.Fatalf("register: %d %s", code, body)
	}
	if code, body := put(t, s.URL+"/v1/agent/service/deregister/command-a-8080", ""); code != http.StatusOK {
		t.Fatalf("deregister: %d %s", code, body)
	}
	if got := s.Services(); len(got) != 0 {
		t.Errorf("after deregister Services() = %+v", got)
	}
	if code, _ := put(t, s.URL+"/v1/agent/service/deregister/command-a-8080", ""); code != http.StatusNotFound {
		t.Errorf("deregister unknown id: status %d, want 404", code)
	}
}

func TestHealthServiceShapeAndPassingFilter(t *testing.T) {
	t.Parallel()
	s := consultest.MustNew(t)
	put(t, s.URL+"/v1/agent/service/register", commandReg)

	if a := getHealth(t, s.URL+"/v1/health/service/command?passing=1"); len(a.entries) != 0 {
		t.Errorf("passing=1 with a critical check returned %v", a.entries)
	}
	all := getHealth(t, s.URL+"/v1/health/service/command")
	if all.status != http.StatusOK || all.index == 0 || len(all.entries) != 1 {
		t.Fatalf("unfiltered answer: %+v", all)
	}
	e := all.entries[0]
	node, _ := e["Node"].(map[string]any)
	svc, _ := e["Service"].(map[string]any)
	checks, _ := e["Checks"].([]any)
	if node["Node"] != consultest.NodeName || node["Address"] != consultest.NodeAddress {
		t.Errorf("Node = %v", node)
	}
	if svc["ID"] != "command-a-8080" || svc["Service"] != "command" || svc["Address"] != "10.0.0.1" ||
		svc["Port"] != float64(8080) || len(svc["Tags"].([]any)) != 1 {
		t.Errorf("Service = %v", svc)
	}
	if len(checks) != 2 {
		t.Fatalf("Checks = %v, want serfHealth and the service check", checks)
	}
	sc, _ := checks[1].(map[string]any)
	if sc["CheckID"] != "service:command-a-8080" || sc["Status"] != "critical" || sc["ServiceID"] != "command-a-8080" {
		t.Errorf("service check = %v", sc)
	}

	s.SetCheckStatus("command-a-8080", consultest.StatusWarning)
	if a := getHealth(t, s.URL+"/v1/health/service/command?passing=1"); len(a.entries) != 0 {
		t.Errorf("passing=1 with a warning check returned %v", a.entries)
	}
	s.SetCheckStatus("command-a-8080", consultest.StatusPassing)
	a := getHealth(t, s.URL+"/v1/health/service/command?passing=1")
	if len(a.entries) != 1 || a.index <= all.index {
		t.Errorf("after passing: %d entries at index %d (was %d)", len(a.entries), a.index, all.index)
	}
	if a := getHealth(t, s.URL+"/v1/health/service/unknown"); a.status != http.StatusOK || a.entries == nil || len(a.entries) != 0 {
		t.Errorf("unknown service: %+v, want 200 and []", a)
	}
}

func TestHealthServiceBlocks(t *testing.T) {
	t.Parallel()
	s := consultest.MustNew(t)
	put(t, s.URL+"/v1/agent/service/register", commandReg)
	first := getHealth(t, s.URL+"/v1/health/service/command")

	t.Run("until wait elapses", func(t *testing.T) {
		a := getHealth(t, s.URL+"/v1/health/service/command?index="+strconv.FormatUint(first.index, 10)+"&wait=200ms")
		if a.took < 200*time.Millisecond || a.index != first.index {
			t.Errorf("no change: answered after %v with index %d, want >= 200ms and index %d", a.took, a.index, first.index)
		}
	})

	t.Run("until a change", func(t *testing.T) {
		done := make(chan healthAnswer, 1)
		go func() {
			done <- getHealth(t, s.URL+"/v1/health/service/command?index="+strconv.FormatUint(first.index, 10)+"&wait=10s")
		}()
		deadline := time.Now().Add(5 * time.Second)
		for s.Blocked("command") == 0 {
			if time.Now().After(deadline) {
				t.Fatal("query never parked")
			}
			time.Sleep(time.Millisecond)
		}
		s.SetCheckStatus("command-a-8080", consultest.StatusPassing)
		select {
		case a := <-done:
			if a.index <= first.index || len(a.entries) != 1 {
				t.Errorf("woken answer: index %d (was %d), %d entries", a.index, first.index, len(a.entries))
			}
		case <-time.After(2 * time.Second):
			t.Fatal("parked query not woken by a change")
		}
	})

	t.Run("index goes backwards", func(t *testing.T) {
		s.ResetIndex(1)
		a := getHealth(t, s.URL+"/v1/health/service/command?index=1000&wait=100ms")
		if a.index != 1 {
			t.Errorf("after ResetIndex(1) index = %d", a.index)
		}
	})

	got := s.HealthRequests("command")
	if len(got) != 4 || got[0].Index != 0 || got[1].Wait != 200*time.Millisecond || got[3].Index != 1000 {
		t.Errorf("recorded requests %+v", got)
	}
}

func TestCloseReleasesParkedQueries(t *testing.T) {
	t.Parallel()
	s := consultest.MustNew(t)
	idx := s.Index()
	go func() {
		resp, err := client.Get(s.URL + "/v1/health/service/command?index=" + strconv.FormatUint(idx, 10) + "&wait=5m")
		if err == nil {
			resp.Body.Close()
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for s.Blocked("command") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("query never parked")
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	s.Close()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Close took %v with a parked query", took)
	}
}
