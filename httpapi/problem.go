// Package httpapi is the HTTP plumbing every orderflow API shares: RFC 9457
// problem responses (the one place errors become HTTP), strict JSON request
// decoding, request ids, metrics and recovery middleware, health endpoints
// and a server with every timeout set.
package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/eventstore"
)

// ProblemContentType is the media type of every error response.
const ProblemContentType = "application/problem+json"

// Problem is an RFC 9457 problem detail.
type Problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail,omitempty"`
	Instance  string       `json:"instance,omitempty"`
	RequestID string       `json:"request_id,omitempty"`
	Errors    []FieldError `json:"errors,omitempty"`
}

// FieldError is one invalid field of a request.
type FieldError struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// RequestError is a request the API cannot take as sent (bad JSON, wrong
// content type, too large, bad parameter). It carries its HTTP status.
type RequestError struct {
	Status int
	Slug   string // problem type suffix, e.g. "malformed-json"
	Title  string
	Detail string
	Fields []FieldError
}

func (e *RequestError) Error() string { return e.Title + ": " + e.Detail }

// ProblemType returns the problem type URI of slug.
func ProblemType(slug string) string { return "urn:orderflow:problem:" + slug }

// Error writes err as a problem+json response. Errors callers expect map to
// 4xx; anything else is a 500 logged here, once, with its request id.
func Error(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	p := Problem{Instance: r.URL.Path, RequestID: RequestID(r.Context())}
	var (
		reqErr   *RequestError
		valErr   *orderflow.ValidationError
		conflict *eventstore.ConflictError
	)
	switch {
	case errors.As(err, &reqErr):
		p.Status, p.Type, p.Title, p.Detail, p.Errors = reqErr.Status, ProblemType(reqErr.Slug), reqErr.Title, reqErr.Detail, reqErr.Fields
	case errors.As(err, &valErr):
		p.Status, p.Type, p.Title = http.StatusBadRequest, ProblemType("validation"), "The request is invalid"
		p.Detail = "See errors for each invalid field; nothing was changed."
		for _, f := range valErr.Fields {
			p.Errors = append(p.Errors, FieldError{Field: f.Field, Detail: f.Detail})
		}
	case errors.Is(err, orderflow.ErrNotFound), errors.Is(err, eventstore.ErrNotFound):
		p.Status, p.Type, p.Title, p.Detail = http.StatusNotFound, ProblemType("not-found"), "Not found", err.Error()
	case errors.As(err, &conflict):
		p.Status, p.Type, p.Title = http.StatusConflict, ProblemType("concurrency-conflict"), "Concurrent change"
		p.Detail = "The resource changed while the request was handled; read it again and retry."
	case errors.Is(err, eventstore.ErrConcurrency):
		p.Status, p.Type, p.Title = http.StatusConflict, ProblemType("concurrency-conflict"), "Concurrent change"
		p.Detail = "The resource changed while the request was handled; read it again and retry."
	case errors.Is(err, orderflow.ErrConflict):
		p.Status, p.Type, p.Title, p.Detail = http.StatusConflict, ProblemType("state-conflict"), "Not allowed in the current state", err.Error()
	case errors.Is(err, eventstore.ErrOutcomeUnknown):
		p.Status, p.Type, p.Title = http.StatusServiceUnavailable, ProblemType("outcome-unknown"), "Outcome unknown"
		p.Detail = "The connection to the database failed around the commit: the change may have been made. " +
			"Retry with the same Idempotency-Key to get its outcome; without one, read before retrying."
		logger.WarnContext(r.Context(), "append outcome unknown", "method", r.Method, "path", r.URL.Path,
			"request_id", p.RequestID, "err", err)
	case errors.Is(err, eventstore.ErrUnavailable):
		p.Status, p.Type, p.Title = http.StatusServiceUnavailable, ProblemType("unavailable"), "Service unavailable"
		p.Detail = "The database could not be reached; nothing was changed. Retry later."
		logger.WarnContext(r.Context(), "database unavailable", "method", r.Method, "path", r.URL.Path,
			"request_id", p.RequestID, "err", err)
	case errors.Is(err, eventstore.ErrCommandIDReused):
		p.Status, p.Type, p.Title = http.StatusUnprocessableEntity, ProblemType("idempotency-key-reused"), "Idempotency-Key reused"
		p.Detail = "This Idempotency-Key was already used for a different request; use a new key for a new request."
	case errors.Is(err, r.Context().Err()) && r.Context().Err() != nil:
		p.Status, p.Type, p.Title = http.StatusServiceUnavailable, ProblemType("cancelled"), "Request cancelled or timed out"
	default:
		logger.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path,
			"request_id", p.RequestID, "err", err)
		p.Status, p.Type, p.Title = http.StatusInternalServerError, ProblemType("internal"), "Internal error"
		p.Detail = "The request failed on our side; it is logged under its request_id."
	}
	WriteProblem(w, p)
}

// WriteProblem writes p with its status.
func WriteProblem(w http.ResponseWriter, p Problem) {
	w.Header().Set("Content-Type", ProblemContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// JSON writes v as a JSON response with status.
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
