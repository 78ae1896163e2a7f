package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/httpapi"
)

// Admin serves projection status and rebuilds over HTTP:
// GET /admin/projections and POST /admin/projections/{name}/rebuild.
type Admin struct {
	engine *Engine
	log    Log
	logger *slog.Logger
	quit   chan struct{} // closed by Close: rebuilds outlive requests, not the process

	mu      sync.Mutex
	running map[string]*Progress
	wg      sync.WaitGroup
}

// NewAdmin returns the admin API.
func NewAdmin(engine *Engine, log Log, logger *slog.Logger) (*Admin, error) {
	if engine == nil || log == nil || logger == nil {
		return nil, errors.New("projector: NewAdmin: nil dependency")
	}
	return &Admin{engine: engine, log: log, logger: logger, quit: make(chan struct{}), running: map[string]*Progress{}}, nil
}

// Close interrupts rebuilds started over HTTP and waits for them to stop;
// each resumes where it stopped when started again.
func (a *Admin) Close() {
	close(a.quit)
	a.wg.Wait()
}

// Mount adds the admin routes to r.
func (a *Admin) Mount(r chi.Router) {
	r.Get("/admin/projections", a.status)
	r.Post("/admin/projections/{name}/rebuild", a.rebuild)
}

// ProjectionStatus is one projection in the admin status response.
type ProjectionStatus struct {
	Status
	Rebuilding *Progress `json:"rebuilding,omitempty"`
}

func (a *Admin) status(w http.ResponseWriter, r *http.Request) {
	var out []ProjectionStatus
	for _, p := range All() {
		st, err := a.engine.Status(r.Context(), p)
		if err != nil {
			httpapi.Error(w, r, a.logger, err)
			return
		}
		a.mu.Lock()
		ps := ProjectionStatus{Status: st}
		if pr := a.running[p.Name()]; pr != nil {
			cp := *pr
			ps.Rebuilding = &cp
		}
		a.mu.Unlock()
		out = append(out, ps)
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"projections": out})
}

func (a *Admin) rebuild(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	p, ok := ByName(name)
	if !ok {
		httpapi.Error(w, r, a.logger, fmt.Errorf("projection %q: %w", name, orderflow.ErrNotFound))
		return
	}
	a.mu.Lock()
	if a.running[name] != nil {
		a.mu.Unlock()
		httpapi.Error(w, r, a.logger, fmt.Errorf("a rebuild of %s is already running: %w", name, orderflow.ErrConflict))
		return
	}
	a.running[name] = &Progress{Projection: name}
	a.mu.Unlock()
	a.wg.Go(func() {
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
		err := a.engine.Rebuild(ctx, p, a.log, func(pr Progress) {
			a.mu.Lock()
			*a.running[name] = pr
			a.mu.Unlock()
		})
		a.mu.Lock()
		delete(a.running, name)
		a.mu.Unlock()
		if err != nil {
			a.logger.Error("rebuild failed", "projection", name, "err", err)
			return
		}
		a.logger.Info("rebuild finished", "projection", name)
	})
	httpapi.JSON(w, http.StatusAccepted, map[string]string{"projection": name, "status": "rebuilding", "watch": "/admin/projections"})
}
