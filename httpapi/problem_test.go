package httpapi_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/httpapi"
)

// Errors callers branch on become their own status and problem type, also
// when wrapped; anything else is a 500 that says nothing of its cause.
func TestErrorMapsSentinelsToProblems(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err    error
		status int
		typ    string
	}{
		{fmt.Errorf("append: %w: %w", eventstore.ErrOutcomeUnknown, fmt.Errorf("unexpected EOF")), http.StatusServiceUnavailable, "urn:orderflow:problem:outcome-unknown"},
		{fmt.Errorf("append: %w: %w", eventstore.ErrUnavailable, fmt.Errorf("connection refused")), http.StatusServiceUnavailable, "urn:orderflow:problem:unavailable"},
		{fmt.Errorf("append: %w", eventstore.ErrConcurrency), http.StatusConflict, "urn:orderflow:problem:concurrency-conflict"},
		{&eventstore.ConflictError{StreamID: "s", Expected: 1, Actual: 2}, http.StatusConflict, "urn:orderflow:problem:concurrency-conflict"},
		{eventstore.ErrCommandIDReused, http.StatusUnprocessableEntity, "urn:orderflow:problem:idempotency-key-reused"},
		{fmt.Errorf("order x: %w", orderflow.ErrNotFound), http.StatusNotFound, "urn:orderflow:problem:not-found"},
		{fmt.Errorf("cancel: %w", orderflow.ErrConflict), http.StatusConflict, "urn:orderflow:problem:state-conflict"},
		{fmt.Errorf("the disk is on fire"), http.StatusInternalServerError, "urn:orderflow:problem:internal"},
	} {
		w := httptest.NewRecorder()
		httpapi.Error(w, httptest.NewRequest(http.MethodPost, "/v1/orders", nil), slog.New(slog.DiscardHandler), tc.err)
		var p httpapi.Problem
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
			t.Fatalf("%v: body %q: %v", tc.err, w.Body.String(), err)
		}
		if w.Code != tc.status || p.Status != tc.status || p.Type != tc.typ || w.Header().Get("Content-Type") != httpapi.ProblemContentType {
			t.Errorf("%v: %d %s (%s), want %d %s", tc.err, w.Code, p.Type, w.Header().Get("Content-Type"), tc.status, tc.typ)
		}
		if tc.status == http.StatusInternalServerError && p.Detail != "The request failed on our side; it is logged under its request_id." {
			t.Errorf("a 500 tells its cause: %q", p.Detail)
		}
	}
}

// Metric labels take the route's pattern and a standard method; any other
// method a client invents is "other", so it cannot grow the label space.
func TestMetricLabels(t *testing.T) {
	t.Parallel()
	r := chi.NewRouter()
	var route, method string
	r.Get("/v1/orders/{id}", func(w http.ResponseWriter, r *http.Request) { route, method = httpapi.MetricLabels(r) })
	r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v1/orders/123", nil))
	if route != "/v1/orders/{id}" || method != http.MethodGet {
		t.Errorf("GET in a route: labels %q %q, want the pattern and GET", route, method)
	}
	for _, tc := range []struct{ method, label string }{{http.MethodPost, http.MethodPost}, {"BREW", "other"}, {"GET2", "other"}} {
		if route, method := httpapi.MetricLabels(httptest.NewRequest(tc.method, "/nowhere", nil)); route != "unmatched" || method != tc.label {
			t.Errorf("%s outside a route: labels %q %q, want unmatched %s", tc.method, route, method, tc.label)
		}
	}
}
