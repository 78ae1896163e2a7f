package httpapi_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

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
