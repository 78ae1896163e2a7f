package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The k6 scripts must name every request as a template literal that starts
// with ${BASE_URL}, so that this test can read its method and path:
//
//	http.get(`${BASE_URL}/v1/orders/${id}?min_version=${v}`, ...)
//	http.request('POST', `${BASE_URL}/v1/orders`, ...)
var (
	// Any use of the k6/http module's default import.
	httpUse = regexp.MustCompile(`\bhttp\.([A-Za-z]+)\s*\(`)
	// The request forms this test understands, anchored at such a use.
	shorthandCall = regexp.MustCompile("^http\\.(get|post|put|patch|del)\\(\\s*`\\$\\{BASE_URL\\}([^`]*)`")
	requestCall   = regexp.MustCompile("^http\\.request\\(\\s*['\"]([A-Z]+)['\"]\\s*,\\s*`\\$\\{BASE_URL\\}([^`]*)`")
	// Members of k6/http that make no request.
	notRequests = []string{"expectedStatuses", "setResponseCallback", "file", "cookieJar"}
	// How a script may bring k6/http in: as the default import named http.
	httpImport = regexp.MustCompile(`import\s+([^'";]*?)\s+from\s+['"]k6/http['"]`)
	// A ${...} substitution inside a template literal.
	substitution = regexp.MustCompile(`\$\{[^}]*\}`)
)

// loadScripts are the scripts load/ must have, with the operations each must
// exercise (lib.js may hold shared requests; it need not make any).
var loadScripts = map[string][]string{
	"place_orders.js": {"POST /v1/orders"},
	"mixed.js":        {"POST /v1/orders", "GET /v1/orders/{id}", "GET /v1/orders", "GET /v1/inventory/{sku}", "GET /v1/stats/sales"},
	"saga.js":         {"POST /v1/orders", "GET /v1/orders/{id}"},
}

// MustScripts returns the load/*.js files, failing if one of loadScripts is
// missing.
func MustScripts(tb testing.TB) []string {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(root, "load", "*.js"))
	if err != nil {
		tb.Fatal(err)
	}
	for name := range loadScripts {
		if !slices.Contains(files, filepath.Join(root, "load", name)) {
			tb.Errorf("load/%s is missing", name)
		}
	}
	return files
}

func TestLoadScriptsAreESModules(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed to check that the k6 scripts parse: %v", err)
	}
	dir := t.TempDir()
	for _, file := range MustScripts(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			// .mjs makes node parse the file as an ES module; --check parses
			// without running or resolving the k6/... imports.
			mjs := filepath.Join(dir, strings.TrimSuffix(filepath.Base(file), ".js")+".mjs")
			if err := os.WriteFile(mjs, src, 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(node, "--check", mjs).CombinedOutput(); err != nil {
				t.Errorf("%s is not a valid ES module: %v\n%s", file, err, out)
			}
		})
	}
}

func TestLoadScriptsRequestOnlyTheContract(t *testing.T) {
	t.Parallel()
	contract := MustContract(t)
	for _, file := range MustScripts(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			calls, err := requests(string(src))
			if err != nil {
				t.Fatal(err)
			}
			used := map[string]bool{}
			for _, c := range calls {
				op, err := contract.match(c)
				if err != nil {
					t.Errorf("line %d: %s", c.line, err)
					continue
				}
				used[op] = true
			}
			for _, op := range loadScripts[filepath.Base(file)] {
				if !used[op] {
					t.Errorf("makes no %s request", op)
				}
			}
		})
	}
}

func TestRequestsParsing(t *testing.T) {
	t.Parallel()
	good := "import http from 'k6/http';\n" +
		"http.get(`${BASE_URL}/v1/orders/${id}?min_version=${v}`, p);\n" +
		"http.post(\n  `${BASE_URL}/v1/orders`, body);\n" +
		"http.request('DELETE', `${BASE_URL}/v1/x`);\n" +
		"const p = { responseCallback: http.expectedStatuses(200, 412) };\n"
	calls, err := requests(good)
	if err != nil {
		t.Fatal(err)
	}
	want := []call{
		{line: 2, method: "get", path: "/v1/orders/\x00", query: "min_version=\x00"},
		{line: 3, method: "post", path: "/v1/orders"},
		{line: 5, method: "delete", path: "/v1/x"},
	}
	if !slices.Equal(calls, want) {
		t.Errorf("requests = %+v, want %+v", calls, want)
	}

	for name, src := range map[string]string{
		"URL in a variable":       "import http from 'k6/http';\nhttp.get(url);",
		"URL not from BASE_URL":   "import http from 'k6/http';\nhttp.get(`http://localhost/v1/orders`);",
		"plain string":            "import http from 'k6/http';\nhttp.get('/v1/orders');",
		"method in a variable":    "import http from 'k6/http';\nhttp.request(m, `${BASE_URL}/v1/orders`);",
		"batch":                   "import http from 'k6/http';\nhttp.batch([]);",
		"named import":            "import { get } from 'k6/http';\nget(`${BASE_URL}/v1/orders`);",
		"default import renamed":  "import h from 'k6/http';\nh.get(`${BASE_URL}/v1/orders`);",
		"asynchronous request":    "import http from 'k6/http';\nhttp.asyncRequest('GET', `${BASE_URL}/v1/orders`);",
		"unknown member":          "import http from 'k6/http';\nhttp.head(`${BASE_URL}/v1/orders`);",
		"namespace import of k6s": "import * as http from 'k6/http';\nhttp.get(`${BASE_URL}/v1/orders`);",
	} {
		if calls, err := requests(src); err == nil {
			t.Errorf("%s: requests = %+v, want an error", name, calls)
		}
	}
}

func TestContractMatching(t *testing.T) {
	t.Parallel()
	c := MustContract(t)
	tests := []struct {
		name string
		call call
		want string // the operation, or "" for an error
	}{
		{name: "place order", call: call{method: "post", path: "/v1/orders"}, want: "POST /v1/orders"},
		{name: "order by id", call: call{method: "get", path: "/v1/orders/\x00", query: "min_version=\x00"}, want: "GET /v1/orders/{id}"},
		{name: "literal in a parameter segment", call: call{method: "get", path: "/v1/inventory/SKU-1"}, want: "GET /v1/inventory/{sku}"},
		{name: "partly substituted segment", call: call{method: "get", path: "/v1/streams/order-\x00/events"}, want: "GET /v1/streams/{id}/events"},
		{name: "cancel", call: call{method: "post", path: "/v1/orders/\x00/cancel"}, want: "POST /v1/orders/{id}/cancel"},
		{name: "unknown path", call: call{method: "get", path: "/v1/order/\x00"}},
		{name: "substitution where the path is literal", call: call{method: "get", path: "/v1/\x00"}},
		{name: "wrong method", call: call{method: "delete", path: "/v1/orders/\x00"}},
		{name: "trailing slash", call: call{method: "get", path: "/v1/orders/"}},
		{name: "undeclared query parameter", call: call{method: "get", path: "/v1/orders", query: "customer=\x00"}},
		{name: "no leading slash", call: call{method: "get", path: "v1/orders"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.match(tt.call)
			if tt.want == "" {
				if err == nil {
					t.Errorf("match = %q, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("match = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// call is one request a script makes: its method (lower case, as in
// OpenAPI), and its path and query with every ${...} replaced by "\x00".
type call struct {
	line                int
	method, path, query string
}

// requests returns the requests a k6 script makes, or an error naming the
// first use of k6/http it cannot read.
func requests(src string) ([]call, error) {
	imports := httpImport.FindAllStringSubmatch(src, -1)
	for _, m := range imports {
		if m[1] != "http" {
			return nil, fmt.Errorf("imports k6/http as %q; import it as: import http from 'k6/http'", m[1])
		}
	}
	if strings.Contains(src, "k6/http") && len(imports) == 0 {
		return nil, fmt.Errorf("uses k6/http other than by: import http from 'k6/http'")
	}
	var calls []call
	for _, loc := range httpUse.FindAllStringSubmatchIndex(src, -1) {
		member := src[loc[2]:loc[3]]
		if slices.Contains(notRequests, member) {
			continue
		}
		line := 1 + strings.Count(src[:loc[0]], "\n")
		at := src[loc[0]:]
		var method, url string
		if m := shorthandCall.FindStringSubmatch(at); m != nil {
			method, url = m[1], m[2]
			if method == "del" {
				method = "delete"
			}
		} else if m := requestCall.FindStringSubmatch(at); m != nil {
			method, url = strings.ToLower(m[1]), m[2]
		} else {
			snippet, _, _ := strings.Cut(at, "\n")
			return nil, fmt.Errorf("line %d: cannot read the request %q: want http.get/post/put/patch/del(`${BASE_URL}/path...`) or http.request('METHOD', `${BASE_URL}/path...`)", line, snippet)
		}
		path, query, _ := strings.Cut(substitution.ReplaceAllString(url, "\x00"), "?")
		calls = append(calls, call{line: line, method: method, path: path, query: query})
	}
	return calls, nil
}

// contract is api/openapi.json's operations: path template, then method,
// then the names of the operation's query parameters.
type contract map[string]map[string][]string

// MustContract reads the operations of api/openapi.json.
func MustContract(tb testing.TB) contract {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "api", "openapi.json"))
	if err != nil {
		tb.Fatal(err)
	}
	type parameter struct {
		Ref  string `json:"$ref"`
		Name string `json:"name"`
		In   string `json:"in"`
	}
	var doc struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Parameters map[string]parameter `json:"parameters"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		tb.Fatalf("api/openapi.json: %v", err)
	}
	resolve := func(p parameter) parameter {
		if name, ok := strings.CutPrefix(p.Ref, "#/components/parameters/"); ok {
			r, found := doc.Components.Parameters[name]
			if !found {
				tb.Fatalf("api/openapi.json: unresolved parameter %s", p.Ref)
			}
			return r
		}
		return p
	}
	c := contract{}
	for path, item := range doc.Paths {
		var shared []parameter
		if raw, ok := item["parameters"]; ok {
			if err := json.Unmarshal(raw, &shared); err != nil {
				tb.Fatalf("api/openapi.json %s parameters: %v", path, err)
			}
		}
		for method, raw := range item {
			if !slices.Contains([]string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}, method) {
				continue
			}
			var op struct {
				Parameters []parameter `json:"parameters"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				tb.Fatalf("api/openapi.json %s %s: %v", method, path, err)
			}
			var query []string
			for _, p := range append(slices.Clone(shared), op.Parameters...) {
				if p = resolve(p); p.In == "query" {
					query = append(query, p.Name)
				}
			}
			if c[path] == nil {
				c[path] = map[string][]string{}
			}
			c[path][method] = query
		}
	}
	if len(c) == 0 {
		tb.Fatal("api/openapi.json defines no paths")
	}
	return c
}

// match returns the operation ("METHOD /template") that serves the call: a
// template segment {param} matches any non-empty segment, any other must be
// equal and free of substitutions; each query parameter must be declared.
func (c contract) match(cl call) (string, error) {
	if !strings.HasPrefix(cl.path, "/") {
		return "", fmt.Errorf("path %q does not start with /", show(cl.path))
	}
	segs := strings.Split(cl.path, "/")
	var templates []string
	for tmpl := range c {
		if pathMatches(strings.Split(tmpl, "/"), segs) {
			templates = append(templates, tmpl)
		}
	}
	if len(templates) == 0 {
		return "", fmt.Errorf("%s %s: no such path in api/openapi.json", strings.ToUpper(cl.method), show(cl.path))
	}
	slices.Sort(templates)
	for _, tmpl := range templates {
		query, ok := c[tmpl][cl.method]
		if !ok {
			continue
		}
		op := strings.ToUpper(cl.method) + " " + tmpl
		if cl.query == "" {
			return op, nil
		}
		for _, kv := range strings.Split(cl.query, "&") {
			name, _, _ := strings.Cut(kv, "=")
			if !slices.Contains(query, name) {
				return "", fmt.Errorf("%s: query parameter %q is not declared (declared: %s)", op, show(name), strings.Join(query, ", "))
			}
		}
		return op, nil
	}
	return "", fmt.Errorf("%s %s: api/openapi.json has %s but not this method", strings.ToUpper(cl.method), show(cl.path), strings.Join(templates, ", "))
}

func pathMatches(tmpl, segs []string) bool {
	if len(tmpl) != len(segs) {
		return false
	}
	for i, t := range tmpl {
		s := segs[i]
		if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}") {
			if s == "" {
				return false
			}
			continue
		}
		if s != t {
			return false
		}
	}
	return true
}

// show writes a substitution back as ${…} for messages.
func show(s string) string {
	return strings.ReplaceAll(s, "\x00", "${…}")
}
