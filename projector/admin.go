package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/httpapi"
)

// Admin serves projection status and rebuilds over HTTP:
// GET /admin/projections, POST /admin/projections/{name}/rebuild and
// POST /admin/projections/rebuild (every projection, one after another, as
// `orderflow projections rebuild --all` does).
type Admin struct {
	engine *Engine
	log    Log
	logger *slog.Logger
	now    func() time.Time
	quit   chan struct{} // closed by Close: rebuilds outlive requests, not the process

	mu       sync.Mutex
	closed   bool                   // no rebuild starts after Close
	rebuilds map[string]*RebuildRun // by projection: the last rebuild started here
	wg       sync.WaitGroup
	close    sync.Once
}

// NewAdmin returns the admin API.
func NewAdmin(engine *Engine, log Log, logger *slog.Logger) (*Admin, error) {
	if engine == nil || log == nil || logger == nil {
		return nil, errors.New("projector: NewAdmin: nil dependency")
	}
	return &Admin{engine: engine, log: log, logger: logger, now: time.Now, quit: make(chan struct{}), rebuilds: map[string]*RebuildRun{}}, nil
}

// Close interrupts rebuilds started over HTTP and waits for them to stop;
// each resumes where it stopped when started again. Rebuilds asked for
// afterwards are refused (503). Closing again does nothing.
func (a *Admin) Close() {
	a.close.Do(func() {
		a.mu.Lock()
		a.closed = true
		a.mu.Unlock()
		close(a.quit)
		a.wg.Wait()
	})
}

// Mount adds the admin routes to r.
func (a *Admin) Mount(r chi.Router) {
	r.Get("/admin/projections", a.status)
	r.Post("/admin/projections/rebuild", a.rebuildAll)
	r.Post("/admin/projections/{name}/rebuild", a.rebuildOne)
}

// The states of a rebuild started over HTTP.
const (
	RebuildQueued  = "queued"  // waiting for the rebuilds started with it before it
	RebuildRunning = "running" // reading the log, or catching up and swapping
	RebuildDone    = "done"    // swapped in
	RebuildFailed  = "failed"  // stopped with Error; started again, it resumes
)

// RebuildRun is the last rebuild of a projection started over HTTP in
// this process, as GET /admin/projections shows it (Status.Rebuild is the
// rebuild unfinished in the database, whoever started it).
type RebuildRun struct {
	State   string `json:"state"`
	Read    int64  `json:"read"`    // events of the log read so far
	Total   int64  `json:"total"`   // events to read in all
	Resumed int64  `json:"resumed"` // of Read, those an earlier, interrupted run had read
	// EventsPerSecond is this run's rate so far; ETASeconds the time the
	// rest takes at that rate, null while it is not known.
	EventsPerSecond float64    `json:"events_per_second"`
	ETASeconds      *float64   `json:"eta_seconds"`
	StartedAt       *time.Time `json:"started_at"`
	FinishedAt      *time.Time `json:"finished_at"`
	Error           string     `json:"error,omitempty"`

	progress Progress
}

// ProjectionStatus is one projection in the admin status response.
type ProjectionStatus struct {
	Status
	Run *RebuildRun `json:"rebuild_run,omitempty"`
}

func (a *Admin) status(w http.ResponseWriter, r *http.Request) {
	var out []ProjectionStatus
	for _, p := range All() {
		st, err := a.engine.Status(r.Context(), p)
		if err != nil {
			httpapi.Error(w, r, a.logger, err)
			return
		}
		ps := ProjectionStatus{Status: st}
		a.mu.Lock()
		if rs := a.rebuilds[p.Name()]; rs != nil {
			view := *rs
			if view.State == RebuildRunning {
				now := a.now()
				view.EventsPerSecond = rs.progress.Rate(now)
				if eta, ok := rs.progress.ETA(now); ok {
					secs := eta.Seconds()
					view.ETASeconds = &secs
				}
			}
			ps.Run = &view
		}
		a.mu.Unlock()
		out = append(out, ps)
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"projections": out})
}

func (a *Admin) rebuildOne(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	p, ok := ByName(name)
	if !ok {
		httpapi.Error(w, r, a.logger, fmt.Errorf("projection %q: %w", name, orderflow.ErrNotFound))
		return
	}
	if a.start(w, r, []Projection{p}) {
		httpapi.JSON(w, http.StatusAccepted, map[string]any{"projection": name, "status": "rebuilding", "watch": "/admin/projections"})
	}
}

func (a *Admin) rebuildAll(w http.ResponseWriter, r *http.Request) {
	ps := All()
	if a.start(w, r, ps) {
		names := make([]string, len(ps))
		for i, p := range ps {
			names[i] = p.Name()
		}
		httpapi.JSON(w, http.StatusAccepted, map[string]any{"projections": names, "status": "rebuilding", "watch": "/admin/projections"})
	}
}

// start queues the rebuilds of ps, to run one after another in the
// background, and reports true; or answers 409, starting none, when one of
// them is queued or running here already (503 once the admin is closed).
// One running in another process is refused when its turn comes
// (ErrRebuildRunning), and shows as failed.
func (a *Admin) start(w http.ResponseWriter, r *http.Request, ps []Projection) bool {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		httpapi.Error(w, r, a.logger, &httpapi.RequestError{Status: http.StatusServiceUnavailable, Slug: "shutting-down",
			Title: "Shutting down", Detail: "This projector is stopping; start the rebuild on another one, or once it is back."})
		return false
	}
	for _, p := range ps {
		if rs := a.rebuilds[p.Name()]; rs != nil && (rs.State == RebuildQueued || rs.State == RebuildRunning) {
			a.mu.Unlock()
			httpapi.Error(w, r, a.logger, fmt.Errorf("a rebuild of %s is already %s: %w", p.Name(), rs.State, orderflow.ErrConflict))
			return false
		}
	}
	for _, p := range ps {
		a.rebuilds[p.Name()] = &RebuildRun{State: RebuildQueued}
	}
	// Counted before the lock is released: a Close that follows waits for
	// these rebuilds (it sets closed under the same lock, then waits).
	a.wg.Add(1)
	a.mu.Unlock()
	go func() {
		defer a.wg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			select {
			case <-a.quit:
				cancel()
			case <-stop:
			}
		}()
		for _, p := range ps {
			a.run(ctx, p)
		}
	}()
	return true
}

// run rebuilds p, keeping its RebuildRun up to date. A rebuild interrupted
// before its turn fails without having started.
func (a *Admin) run(ctx context.Context, p Projection) {
	name := p.Name()
	err := ctx.Err()
	if err == nil {
		started := a.now()
		a.mu.Lock()
		*a.rebuilds[name] = RebuildRun{State: RebuildRunning, StartedAt: &started, progress: Progress{Projection: name, Started: started}}
		a.mu.Unlock()
		err = a.engine.Rebuild(ctx, p, a.log, func(pr Progress) {
			a.mu.Lock()
			rs := a.rebuilds[name]
			rs.Read, rs.Total, rs.Resumed, rs.progress = pr.Read, pr.Total, pr.Resumed, pr
			if !pr.Started.IsZero() {
				rs.StartedAt = &pr.Started
			}
			a.mu.Unlock()
		})
	}
	finished := a.now()
	a.mu.Lock()
	rs := a.rebuilds[name]
	rs.FinishedAt, rs.State = &finished, RebuildDone
	if rs.StartedAt != nil {
		rs.EventsPerSecond = rs.progress.Rate(finished) // its rate over the whole run
	}
	if err != nil {
		rs.State, rs.Error = RebuildFailed, err.Error()
	}
	a.mu.Unlock()
	if err != nil {
		a.logger.Error("rebuild failed", "projection", name, "err", err)
		return
	}
	a.logger.Info("rebuild finished", "projection", name)
}
