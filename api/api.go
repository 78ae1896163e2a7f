// Package api holds orderflow's HTTP contract: one OpenAPI 3.1 document,
// embedded in the binary, that every server serves at GET /openapi.json and
// that tests check real requests and responses against (see api/apitest).
package api

import (
	_ "embed"
	"net/http"
	"strconv"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns a copy of the OpenAPI 3.1 document in JSON; callers may
// modify it freely.
func OpenAPI() []byte {
	return append([]byte(nil), openAPI...)
}

// Handler returns a handler that serves the document as application/json at
// whatever path it is mounted; the router decides the method (GET).
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(openAPI)))
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(openAPI)
	})
}
