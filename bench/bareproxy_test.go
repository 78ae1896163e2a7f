package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The baseline forwards method, path, query and body unchanged and relays
// the upstream's status and body.
func TestBareProxyForwardsUnchanged(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" "+string(body))
	}))
	defer upstream.Close()
	proxy, err := newBareProxy(upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(proxy)
	defer front.Close()

	resp, err := http.Post(front.URL+"/v1/orders/x?min_version=2", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTeapot || string(got) != "POST /v1/orders/x?min_version=2 hello" {
		t.Fatalf("through the bare proxy: %d %q", resp.StatusCode, got)
	}
}

func TestBareProxyRefusesABadUpstream(t *testing.T) {
	for _, upstream := range []string{"", "127.0.0.1:8080", "ftp://host/", "http://"} {
		if _, err := newBareProxy(upstream); err == nil {
			t.Errorf("upstream %q: accepted", upstream)
		}
	}
}
