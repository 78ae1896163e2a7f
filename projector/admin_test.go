package projector_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/api/apitest"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/projector"
)

// gatedLog is the event log, each read of which waits until the gate opens.
type gatedLog struct {
	log  projector.Log
	gate chan struct{}
}

func (g gatedLog) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.Event, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.log.ReadAll(ctx, after, limit)
}

// adminClient calls an Admin over HTTP and checks every answer against the
// OpenAPI document.
type adminClient struct {
	t    *testing.T
	base string
	spec *apitest.Validator
}

func newAdmin(t *testing.T, f fixture, log projector.Log) (*projector.Admin, adminClient) {
	t.Helper()
	admin, err := projector.NewAdmin(f.engine, log, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	admin.Mount(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return admin, adminClient{t: t, base: srv.URL, spec: apitest.MustValidator(t)}
}

func (c adminClient) do(method, path string) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	c.spec.CheckResponse(c.t, method, path, res.StatusCode, res.Header, body)
	return res.StatusCode, body
}

// runs returns each projection's rebuild_run from GET /admin/projections.
func (c adminClient) runs() map[string]*projector.RebuildRun {
	c.t.Helper()
	code, body := c.do(http.MethodGet, "/admin/projections")
	if code != http.StatusOK {
		c.t.Fatalf("GET /admin/projections: %d %s", code, body)
	}
	var out struct {
		Projections []struct {
			Projection string                `json:"projection"`
			BuiltAt    *time.Time            `json:"built_at"`
			Run        *projector.RebuildRun `json:"rebuild_run"`
		} `json:"projections"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		c.t.Fatal(err)
	}
	runs := map[string]*projector.RebuildRun{}
	for _, p := range out.Projections {
		runs[p.Projection] = p.Run
	}
	return runs
}

// await polls the status until every named projection's run is in state.
func (c adminClient) await(state string, names ...string) map[string]*projector.RebuildRun {
	c.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		runs := c.runs()
		all := true
		for _, n := range names {
			all = all && runs[n] != nil && runs[n].State == state
		}
		if all {
			return runs
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("not all of %v %s in a minute: %+v", names, state, runs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func names(ps []projector.Projection) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Name()
	}
	return out
}

// Over the admin API every projection is rebuilt with one request, one
// after another: the first runs while the rest wait their turn, and any of
// them queued or running refuses another start (409, changing nothing).
// An unknown projection is 404. A rebuild that another process is running
// fails when its turn comes and says why; started again later, it is done.
func TestAdminRebuildsAll(t *testing.T) {
	t.Parallel()
	f := MustFixture(t)
	f.randomHistory(t, rand.New(rand.NewPCG(3, 42)), 20)
	f.readLog(t)
	gate := make(chan struct{})
	open := sync.OnceFunc(func() { close(gate) })
	defer open()
	_, c := newAdmin(t, f, gatedLog{log: f.store, gate: gate})
	all := names(projector.All())

	if code, body := c.do(http.MethodPost, "/admin/projections/no_such/rebuild"); code != http.StatusNotFound {
		t.Fatalf("rebuild of an unknown projection: %d %s, want 404", code, body)
	}
	for n, run := range c.runs() {
		if run != nil {
			t.Fatalf("%s has a rebuild run after a refused start: %+v", n, run)
		}
	}

	code, body := c.do(http.MethodPost, "/admin/projections/rebuild")
	if code != http.StatusAccepted || !strings.Contains(string(body), `"projections":["`+strings.Join(all, `","`)+`"]`) {
		t.Fatalf("rebuild all: %d %s, want 202 naming %v in order", code, body, all)
	}
	runs := c.await(projector.RebuildRunning, all[0]) // its read waits at the gate
	for _, n := range all[1:] {
		if runs[n] == nil || runs[n].State != projector.RebuildQueued {
			t.Fatalf("%s while %s runs: %+v, want queued", n, all[0], runs[n])
		}
	}
	for _, path := range []string{"/admin/projections/rebuild", "/admin/projections/" + all[0] + "/rebuild", "/admin/projections/" + all[len(all)-1] + "/rebuild"} {
		if code, body := c.do(http.MethodPost, path); code != http.StatusConflict {
			t.Fatalf("POST %s while the rebuilds are under way: %d %s, want 409", path, code, body)
		}
	}
	open()
	runs = c.await(projector.RebuildDone, all...)
	var total int64
	for _, n := range all {
		r := runs[n]
		if r.Error != "" || r.Read != r.Total || r.Total == 0 || r.StartedAt == nil || r.FinishedAt == nil || r.FinishedAt.Before(*r.StartedAt) {
			t.Fatalf("%s done: %+v; want every event read, no error, started before finished", n, r)
		}
		total = r.Total
	}

	// Another process (another engine, its own connection) holds the stock
	// rebuild: the one started here fails, saying so.
	other, err := projector.NewEngine(f.pool, f.store, projector.EngineConfig{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	holding, release := make(chan struct{}), make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	defer releaseOnce()
	otherErr := make(chan error, 1)
	var once sync.Once
	go func() {
		otherErr <- other.Rebuild(context.Background(), projector.StockLevels{}, f.store, func(projector.Progress) {
			once.Do(func() { close(holding); <-release })
		})
	}()
	select {
	case <-holding:
	case err := <-otherErr:
		t.Fatalf("the other process's rebuild ended before it reported: %v", err)
	}
	stock := projector.StockLevels{}.Name()
	if code, body := c.do(http.MethodPost, "/admin/projections/"+stock+"/rebuild"); code != http.StatusAccepted || !strings.Contains(string(body), `"projection":"`+stock+`"`) {
		t.Fatalf("rebuild of stock: %d %s, want 202 naming it", code, body)
	}
	failed := c.await(projector.RebuildFailed, stock)[stock]
	if !strings.Contains(failed.Error, "already running") || failed.FinishedAt == nil {
		t.Fatalf("stock's rebuild while another process runs one: %+v; want failed, saying one is already running", failed)
	}
	releaseOnce()
	if err := <-otherErr; err != nil {
		t.Fatal(err)
	}
	if code, body := c.do(http.MethodPost, "/admin/projections/"+stock+"/rebuild"); code != http.StatusAccepted {
		t.Fatalf("rebuild of stock again: %d %s, want 202", code, body)
	}
	if r := c.await(projector.RebuildDone, stock)[stock]; r.Error != "" || r.Read != total || r.EventsPerSecond <= 0 || r.ETASeconds != nil {
		t.Fatalf("stock rebuilt again: %+v, want done, %d events read, its rate kept and no ETA", r, total)
	}
}

// Closing the admin interrupts the rebuild running and fails the ones
// queued behind it, without starting them.
func TestAdminCloseInterruptsRebuilds(t *testing.T) {
	t.Parallel()
	f := MustFixture(t)
	f.randomHistory(t, rand.New(rand.NewPCG(4, 42)), 5)
	gate := make(chan struct{}) // never opens
	admin, c := newAdmin(t, f, gatedLog{log: f.store, gate: gate})
	all := names(projector.All())
	if code, body := c.do(http.MethodPost, "/admin/projections/rebuild"); code != http.StatusAccepted {
		t.Fatalf("rebuild all: %d %s", code, body)
	}
	c.await(projector.RebuildRunning, all[0])
	admin.Close()
	admin.Close() // again: nothing more
	runs := c.runs()
	for i, n := range all {
		r := runs[n]
		if r == nil || r.State != projector.RebuildFailed || !strings.Contains(r.Error, "context canceled") || r.Read != 0 {
			t.Fatalf("%s after Close: %+v; want failed as interrupted, nothing read", n, r)
		}
		if started := r.StartedAt != nil; started != (i == 0) {
			t.Fatalf("%s after Close: started %v; only the one running (%s) had started", n, started, all[0])
		}
	}
	// After Close nothing starts.
	if code, body := c.do(http.MethodPost, "/admin/projections/rebuild"); code != http.StatusServiceUnavailable {
		t.Fatalf("rebuild after Close: %d %s, want 503", code, body)
	}
	if r := c.runs()[all[0]]; r == nil || r.State != projector.RebuildFailed {
		t.Fatalf("%s after a refused start: %+v, want it as Close left it", all[0], r)
	}
}
