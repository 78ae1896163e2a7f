package api_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/api/apitest"
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
