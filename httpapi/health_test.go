package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/httpapi"
)

func TestReadiness(t *testing.T) {
	t.Parallel()
	fail := func(context.Context) error { return errors.New("down") }
	pass := func(context.Context) error { return nil }
	tests := []struct {
		name             string
		check, degrader  httpapi.Check
		drain            bool
		query            string
		wantCode         int
		wantStatus       string
		wantProblemField string
	}{
		{name: "ready", check: pass, degrader: pass, wantCode: 200, wantStatus: "ready"},
		{name: "ready, strict", check: pass, degrader: pass, query: "?strict=1", wantCode: 200, wantStatus: "ready"},
		{name: "degraded", check: pass, degrader: fail, wantCode: 200, wantStatus: "degraded"},
		{name: "degraded, strict", check: pass, degrader: fail, query: "?strict=1", wantCode: 429, wantStatus: "degraded"},
		{name: "degraded, strict=true", check: pass, degrader: fail, query: "?strict=true", wantCode: 429, wantStatus: "degraded"},
		{name: "degraded, strict=0", check: pass, degrader: fail, query: "?strict=0", wantCode: 200, wantStatus: "degraded"},
		{name: "unavailable", check: fail, degrader: fail, wantCode: 503, wantStatus: "unavailable"},
		{name: "unavailable, strict", check: fail, degrader: pass, query: "?strict=1", wantCode: 503, wantStatus: "unavailable"},
		{name: "draining, strict", check: pass, degrader: fail, drain: true, query: "?strict=1", wantCode: 503, wantStatus: "unavailable"},
		{name: "strict is not a boolean", check: pass, degrader: fail, query: "?strict=yes-please", wantCode: 400, wantProblemField: "strict"},
		{name: "strict given twice", check: pass, degrader: fail, query: "?strict=1&strict=0", wantCode: 400, wantProblemField: "strict"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := httpapi.NewHealth()
			h.Add("postgres", tt.check)
			h.AddDegraded("kafka", tt.degrader)
			if tt.drain {
				h.Drain()
			}
			r := chi.NewRouter()
			h.Mount(r, prometheus.NewRegistry())
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz"+tt.query, nil))
			if rec.Code != tt.wantCode {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantCode, rec.Body)
			}
			if tt.wantProblemField != "" {
				var p httpapi.Problem
				if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || len(p.Errors) != 1 || p.Errors[0].Field != tt.wantProblemField {
					t.Fatalf("problem %s does not name %q (%v)", rec.Body, tt.wantProblemField, err)
				}
				return
			}
			var body struct {
				Status string `json:"status"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if body.Status != tt.wantStatus {
				t.Fatalf("status %q, want %q", body.Status, tt.wantStatus)
			}
		})
	}
}
