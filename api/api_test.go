package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/api/apitest"
	"github.com/orderflow/orderflow/projector"
)

func TestHandlerServesTheDocument(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)

	// Mounted anywhere: the handler does not care about the path.
	for _, path := range []string{"/openapi.json", "/docs/contract"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status %d, want 200", path, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET %s: Content-Type %q, want application/json", path, ct)
		}
		if !bytes.Equal(body, api.OpenAPI()) {
			t.Errorf("GET %s: body differs from api.OpenAPI()", path)
		}
		apitest.MustValidator(t).CheckResponse(t, http.MethodGet, "/openapi.json", resp.StatusCode, resp.Header, body)
	}
}

func TestOpenAPIReturnsACopy(t *testing.T) {
	t.Parallel()
	doc := api.OpenAPI()
	doc[0] = 'x'
	if api.OpenAPI()[0] != '{' {
		t.Fatal("changing the returned slice changed the document")
	}
}

// The document's projection names for the admin rebuild are exactly the
// projections orderflow keeps.
func TestRebuildNamesAreTheProjections(t *testing.T) {
	t.Parallel()
	type operation struct {
		OperationID string `json:"operationId"`
		Parameters  []struct {
			Name   string `json:"name"`
			Schema struct {
				Enum []string `json:"enum"`
			} `json:"schema"`
		} `json:"parameters"`
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"` // path item: method -> operation, and more
	}
	if err := json.Unmarshal(api.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range projector.All() {
		names = append(names, p.Name())
	}
	found := false
	for _, item := range doc.Paths {
		for _, raw := range item {
			var op operation
			if json.Unmarshal(raw, &op) != nil || op.OperationID != "rebuildProjection" { // not an operation, or another
				continue
			}
			for _, param := range op.Parameters {
				if param.Name == "name" {
					found = true
					if !slices.Equal(param.Schema.Enum, names) {
						t.Fatalf("rebuildProjection name enum %v; the projections are %v", param.Schema.Enum, names)
					}
				}
			}
		}
	}
	if !found {
		t.Fatal("no rebuildProjection operation with a name parameter")
	}
}
