package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"
)

// NewRouter returns a chi router with the middleware every orderflow API
// uses (request ids, metrics when m is not nil, panic recovery) and problem
// responses for unknown paths (404) and methods (405).
func NewRouter(logger *slog.Logger, m *Metrics) chi.Router {
	r := chi.NewRouter()
	r.Use(WithRequestID)
	if m != nil {
		r.Use(m.Middleware)
	}
	r.Use(Recover(logger))
	r.NotFound(func(w http.ResponseWriter, req *http.Request) {
		WriteProblem(w, Problem{Type: ProblemType("not-found"), Title: "Not found", Status: http.StatusNotFound,
			Detail: "No such endpoint; see /openapi.json.", Instance: req.URL.Path, RequestID: RequestID(req.Context())})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		WriteProblem(w, Problem{Type: ProblemType("method-not-allowed"), Title: "Method not allowed",
			Status: http.StatusMethodNotAllowed, Instance: req.URL.Path, RequestID: RequestID(req.Context())})
	})
	return r
}
