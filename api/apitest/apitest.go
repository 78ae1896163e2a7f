// Package apitest checks real HTTP requests and responses against orderflow's
// OpenAPI 3.1 document (package api), for tests: it finds the operation by
// method and path template, the response by status, checks the media type and
// validates JSON bodies against the document's schemas (JSON Schema 2020-12).
package apitest

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/orderflow/orderflow/api"
)

// docURL is where the document lives for the schema compiler; it is never
// fetched, only used as the base that "#/components/..." references resolve
// against.
const docURL = "https://orderflow.invalid/openapi.json"

// methods are the operation keys of an OpenAPI path item.
var methods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// Operation is one documented operation: an upper-case method and a path
// template such as "/v1/orders/{id}/cancel".
type Operation struct {
	Method string
	Path   string
}

// String returns "METHOD /path/template".
func (o Operation) String() string { return o.Method + " " + o.Path }

// Validator checks requests and responses against one OpenAPI 3.1 document.
// It is safe for concurrent use by parallel tests.
type Validator struct {
	doc    any
	routes []route

	mu       sync.Mutex
	compiler *jsonschema.Compiler
	schemas  map[string]*jsonschema.Schema // by JSON pointer into doc
}

// route is a documented operation with what matching and lookup need.
type route struct {
	Operation
	id       string   // operationId
	segments []string // the template split on "/"
	ptr      string   // JSON pointer to the operation object
}

func (r *route) name() string {
	if r.id == "" {
		return r.Operation.String()
	}
	return r.Operation.String() + " (" + r.id + ")"
}

// MustValidator returns a Validator for api.OpenAPI(), failing tb at once if
// the document cannot be loaded.
func MustValidator(tb testing.TB) *Validator {
	tb.Helper()
	v, err := NewValidator(api.OpenAPI())
	if err != nil {
		tb.Fatalf("apitest: load api.OpenAPI(): %v", err)
	}
	return v
}

// NewValidator parses an OpenAPI 3.1 document in JSON. It returns an error if
// the document is not JSON, does not declare openapi 3.1.x, or has a path item
// or operation that is not an object. Schemas compile lazily; CheckDocument
// compiles them all.
func NewValidator(doc []byte) (*Validator, error) {
	parsed, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, fmt.Errorf("parse document: %w", err)
	}
	root, ok := parsed.(map[string]any)
	if !ok {
		return nil, errors.New("document is not a JSON object")
	}
	if ver, _ := root["openapi"].(string); !strings.HasPrefix(ver, "3.1.") {
		return nil, fmt.Errorf("document declares openapi %q, want 3.1.x", root["openapi"])
	}

	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat() // uuid, date-time and uri-reference are part of the contract
	if err := c.AddResource(docURL, parsed); err != nil {
		return nil, fmt.Errorf("add document to schema compiler: %w", err)
	}
	v := &Validator{doc: parsed, compiler: c, schemas: map[string]*jsonschema.Schema{}}

	paths, ok := root["paths"].(map[string]any)
	if !ok {
		return nil, errors.New("document has no paths object")
	}
	for tmpl := range paths {
		itemPtr, item, err := v.resolve(pointer("paths", tmpl))
		if err != nil {
			return nil, fmt.Errorf("path %s: %w", tmpl, err)
		}
		obj, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("path %s: path item is not an object", tmpl)
		}
		for _, m := range methods {
			raw, ok := obj[m]
			if !ok {
				continue
			}
			op, ok := raw.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s %s: operation is not an object", strings.ToUpper(m), tmpl)
			}
			id, _ := op["operationId"].(string)
			v.routes = append(v.routes, route{
				Operation: Operation{Method: strings.ToUpper(m), Path: tmpl},
				id:        id,
				segments:  strings.Split(tmpl, "/"),
				ptr:       itemPtr + "/" + escapeToken(m),
			})
		}
	}
	sort.Slice(v.routes, func(i, j int) bool {
		a, b := v.routes[i].Operation, v.routes[j].Operation
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Method < b.Method
	})
	return v, nil
}

// Operations returns every documented operation, sorted by path then method.
func (v *Validator) Operations() []Operation {
	ops := make([]Operation, len(v.routes))
	for i, r := range v.routes {
		ops[i] = r.Operation
	}
	return ops
}

// Documents reports whether method and path (which may carry a query
// string) match an operation of the document.
func (v *Validator) Documents(method, path string) bool {
	_, err := v.find(method, path)
	return err == nil
}

// CheckResponse fails tb (with Errorf) unless the response is one the
// document allows: method and path match an operation, status is documented
// for it (or covered by "NXX" or "default"), every required response header
// is present, the Content-Type is one of the documented media types, and a
// JSON body validates against that media type's schema. Other media types
// (text/plain) get only the Content-Type check. path may carry a query string.
func (v *Validator) CheckResponse(tb testing.TB, method, path string, status int, header http.Header, body []byte) {
	tb.Helper()
	r, err := v.find(method, path)
	if err != nil {
		tb.Errorf("apitest: response to %s %s: %v", strings.ToUpper(method), path, err)
		return
	}
	where := fmt.Sprintf("apitest: %s → %d", r.name(), status)

	respPtr, resp, err := v.response(r, status)
	if err != nil {
		tb.Errorf("%s: %v", where, err)
		return
	}

	if hdrs, ok := resp["headers"].(map[string]any); ok {
		for _, name := range sortedKeys(hdrs) {
			if strings.EqualFold(name, "Content-Type") {
				continue // OpenAPI ignores a Content-Type header definition
			}
			_, h, err := v.resolve(respPtr + "/headers/" + escapeToken(name))
			if err != nil {
				tb.Errorf("%s: header %s: %v", where, name, err)
				return
			}
			hobj, _ := h.(map[string]any)
			if req, _ := hobj["required"].(bool); req && header.Get(name) == "" {
				tb.Errorf("%s: required header %s is missing", where, name)
			}
		}
	}

	content, _ := resp["content"].(map[string]any)
	if len(content) == 0 {
		if len(body) > 0 {
			tb.Errorf("%s: the document says this response has no body, got %d bytes: %s", where, len(body), snippet(body))
		}
		return
	}
	ct := header.Get("Content-Type")
	key, err := matchMediaType(ct, content)
	if err != nil {
		tb.Errorf("%s: %v", where, err)
		return
	}
	if !isJSON(key) && !isJSON(ct) {
		return
	}
	if err := v.validateBody(respPtr+"/content/"+escapeToken(key), body); err != nil {
		tb.Errorf("%s: %s body: %v", where, key, err)
	}
}

// CheckRequest fails tb (with Errorf) unless body is a request body the
// operation accepts as application/json: an empty body passes only when the
// request body is optional, and a non-empty one must validate against the
// schema. It checks the document's request schema, not what a server does.
func (v *Validator) CheckRequest(tb testing.TB, method, path string, body []byte) {
	tb.Helper()
	r, err := v.find(method, path)
	if err != nil {
		tb.Errorf("apitest: request %s %s: %v", strings.ToUpper(method), path, err)
		return
	}
	where := "apitest: request to " + r.name()

	op, _ := v.lookup(r.ptr)
	opObj, _ := op.(map[string]any)
	if _, ok := opObj["requestBody"]; !ok {
		if len(bytes.TrimSpace(body)) > 0 {
			tb.Errorf("%s: the document defines no request body, got %d bytes: %s", where, len(body), snippet(body))
		}
		return
	}
	rbPtr, rb, err := v.resolve(r.ptr + "/requestBody")
	if err != nil {
		tb.Errorf("%s: requestBody: %v", where, err)
		return
	}
	rbObj, _ := rb.(map[string]any)
	if len(bytes.TrimSpace(body)) == 0 {
		if req, _ := rbObj["required"].(bool); req {
			tb.Errorf("%s: the request body is required, got none", where)
		}
		return
	}
	content, _ := rbObj["content"].(map[string]any)
	if _, ok := content["application/json"]; !ok {
		tb.Errorf("%s: the request body is not documented as application/json (have %s)", where, strings.Join(sortedKeys(content), ", "))
		return
	}
	if err := v.validateBody(rbPtr+"/content/"+escapeToken("application/json"), body); err != nil {
		tb.Errorf("%s: application/json body: %v", where, err)
	}
}

// CheckDocument returns every problem it finds in the document itself, joined:
// a "$ref" anywhere that is not a local JSON pointer resolving to a value, or
// a schema (component, parameter, header, request or response body) that does
// not compile. A nil error means every reference a check could follow works.
func (v *Validator) CheckDocument() error {
	var errs []error
	walk(v.doc, "", func(ptr string, obj map[string]any) {
		ref, ok := obj["$ref"].(string)
		if !ok {
			return
		}
		if !strings.HasPrefix(ref, "#") {
			errs = append(errs, fmt.Errorf("%s: $ref %q is not local to the document", display(ptr), ref))
			return
		}
		target, err := url.PathUnescape(ref[1:])
		if err == nil {
			_, err = v.lookup(target)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: $ref %q: %w", display(ptr), ref, err))
		}
	})
	ptrs, err := v.schemaPointers()
	errs = append(errs, err)
	for _, p := range ptrs {
		if _, err := v.schema(p); err != nil {
			errs = append(errs, fmt.Errorf("compile %s: %w", display(p), err))
		}
	}
	return errors.Join(errs...)
}

// schemaPointers lists the pointer of every schema the document uses, after
// following references to parameters, headers, request bodies and responses.
func (v *Validator) schemaPointers() ([]string, error) {
	var (
		ptrs []string
		errs []error
		seen = map[string]bool{}
	)
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			ptrs = append(ptrs, p)
		}
	}
	// withSchema adds the schema of the (possibly referenced) parameter or
	// header at p.
	withSchema := func(p string) {
		rp, val, err := v.resolve(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", display(p), err))
			return
		}
		if obj, ok := val.(map[string]any); ok {
			if _, ok := obj["schema"]; ok {
				add(rp + "/schema")
			}
		}
	}
	// withContent adds the media type schemas of the (possibly referenced)
	// request body or response at p, and its headers' schemas.
	withContent := func(p string) {
		rp, val, err := v.resolve(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", display(p), err))
			return
		}
		obj, _ := val.(map[string]any)
		content, _ := obj["content"].(map[string]any)
		for _, mt := range sortedKeys(content) {
			if m, ok := content[mt].(map[string]any); ok {
				if _, ok := m["schema"]; ok {
					add(rp + "/content/" + escapeToken(mt) + "/schema")
				}
			}
		}
		hdrs, _ := obj["headers"].(map[string]any)
		for _, h := range sortedKeys(hdrs) {
			withSchema(rp + "/headers/" + escapeToken(h))
		}
	}
	each := func(p string, fn func(string)) {
		val, _ := v.lookup(p)
		switch x := val.(type) {
		case map[string]any:
			for _, k := range sortedKeys(x) {
				fn(p + "/" + escapeToken(k))
			}
		case []any:
			for i := range x {
				fn(p + "/" + strconv.Itoa(i))
			}
		}
	}

	each("/components/schemas", add)
	each("/components/parameters", withSchema)
	each("/components/headers", withSchema)
	each("/components/requestBodies", withContent)
	each("/components/responses", withContent)
	seenItem := map[string]bool{}
	for _, r := range v.routes {
		item := r.ptr[:strings.LastIndexByte(r.ptr, '/')]
		if !seenItem[item] {
			seenItem[item] = true
			each(item+"/parameters", withSchema)
		}
		each(r.ptr+"/parameters", withSchema)
		if op, _ := v.lookup(r.ptr); op != nil {
			if _, ok := op.(map[string]any)["requestBody"]; ok {
				withContent(r.ptr + "/requestBody")
			}
		}
		each(r.ptr+"/responses", withContent)
	}
	return ptrs, errors.Join(errs...)
}

// find returns the operation for method and path (query string ignored).
// Where several templates match, the one with the most literal segments wins,
// as OpenAPI prescribes (/v1/orders/stats before /v1/orders/{id}).
func (v *Validator) find(method, path string) (*route, error) {
	p := path
	if u, err := url.Parse(path); err == nil {
		p = u.EscapedPath()
	} else if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	if p == "" {
		p = "/"
	}
	segs := strings.Split(p, "/")
	method = strings.ToUpper(method)

	var best *route
	bestLiterals := -1
	var pathMatched []string
	for i := range v.routes {
		r := &v.routes[i]
		n, ok := matchSegments(r.segments, segs)
		if !ok {
			continue
		}
		if r.Method != method {
			pathMatched = append(pathMatched, r.Method+" "+r.Path)
			continue
		}
		if n > bestLiterals {
			best, bestLiterals = r, n
		}
	}
	if best != nil {
		return best, nil
	}
	if len(pathMatched) > 0 {
		return nil, fmt.Errorf("no %s operation documented for this path (documented: %s)", method, strings.Join(pathMatched, ", "))
	}
	return nil, fmt.Errorf("path %s matches no path template in the document", p)
}

// matchSegments reports whether segs fit the template segments and how many
// of them matched literally.
func matchSegments(tmpl, segs []string) (literals int, ok bool) {
	if len(tmpl) != len(segs) {
		return 0, false
	}
	for i, t := range tmpl {
		if len(t) > 2 && t[0] == '{' && t[len(t)-1] == '}' {
			if segs[i] == "" {
				return 0, false
			}
			continue
		}
		if t != segs[i] {
			return 0, false
		}
		literals++
	}
	return literals, true
}

// response returns the (dereferenced) response object the operation documents
// for status: the exact code, else "NXX", else "default".
func (v *Validator) response(r *route, status int) (string, map[string]any, error) {
	op, _ := v.lookup(r.ptr)
	opObj, _ := op.(map[string]any)
	responses, _ := opObj["responses"].(map[string]any)
	code := strconv.Itoa(status)
	for _, key := range []string{code, code[:1] + "XX", code[:1] + "xx", "default"} {
		if _, ok := responses[key]; !ok {
			continue
		}
		ptr, val, err := v.resolve(r.ptr + "/responses/" + escapeToken(key))
		if err != nil {
			return "", nil, fmt.Errorf("response %s: %w", key, err)
		}
		obj, ok := val.(map[string]any)
		if !ok {
			return "", nil, fmt.Errorf("response %s is not an object", key)
		}
		return ptr, obj, nil
	}
	return "", nil, fmt.Errorf("status %d is not documented (documented: %s)", status, strings.Join(sortedKeys(responses), ", "))
}

// matchMediaType returns the content key that the Content-Type header value
// ct matches: exact media type first, then "type/*", then "*/*".
func matchMediaType(ct string, content map[string]any) (string, error) {
	want := strings.Join(sortedKeys(content), ", ")
	if ct == "" {
		return "", fmt.Errorf("no Content-Type header; want one of %s", want)
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", fmt.Errorf("bad Content-Type %q: %v; want one of %s", ct, err, want)
	}
	byType := map[string]string{}
	for k := range content {
		if base, _, err := mime.ParseMediaType(k); err == nil {
			byType[base] = k
		} else {
			byType[strings.ToLower(k)] = k
		}
	}
	major, _, _ := strings.Cut(mt, "/")
	for _, candidate := range []string{mt, major + "/*", "*/*"} {
		if k, ok := byType[candidate]; ok {
			return k, nil
		}
	}
	return "", fmt.Errorf("Content-Type %q is not documented; want one of %s", ct, want)
}

// isJSON reports whether a media type (or Content-Type value) is JSON:
// application/json or any +json suffix.
func isJSON(mediaType string) bool {
	mt, _, err := mime.ParseMediaType(mediaType)
	if err != nil {
		mt = strings.ToLower(mediaType)
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// validateBody validates body against the schema of the media type object at
// mediaPtr; a media type without a schema accepts any JSON.
func (v *Validator) validateBody(mediaPtr string, body []byte) error {
	media, err := v.lookup(mediaPtr)
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("not JSON (%v): %s", err, snippet(body))
	}
	mobj, _ := media.(map[string]any)
	schemaVal, ok := mobj["schema"]
	if !ok {
		return nil
	}
	sch, err := v.schema(mediaPtr + "/schema")
	if err != nil {
		return fmt.Errorf("compile schema %s: %w", display(mediaPtr+"/schema"), err)
	}
	if err := sch.Validate(inst); err != nil {
		name := display(mediaPtr + "/schema")
		if s, ok := schemaVal.(map[string]any); ok {
			if ref, ok := s["$ref"].(string); ok {
				name = ref
			}
		}
		return fmt.Errorf("does not match %s: %v\nbody: %s", name, err, snippet(body))
	}
	return nil
}

// schema compiles (once) the schema at the JSON pointer ptr in the document.
func (v *Validator) schema(ptr string) (*jsonschema.Schema, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, ok := v.schemas[ptr]; ok {
		return s, nil
	}
	s, err := v.compiler.Compile(docURL + fragment(ptr))
	if err != nil {
		return nil, err
	}
	v.schemas[ptr] = s
	return s, nil
}

// resolve looks up ptr and follows local Reference Objects ("$ref") until it
// reaches a value that is not one, returning that value and its pointer.
func (v *Validator) resolve(ptr string) (string, any, error) {
	for hops := 0; hops < 32; hops++ {
		val, err := v.lookup(ptr)
		if err != nil {
			return "", nil, err
		}
		obj, ok := val.(map[string]any)
		if !ok {
			return ptr, val, nil
		}
		ref, ok := obj["$ref"].(string)
		if !ok {
			return ptr, val, nil
		}
		if !strings.HasPrefix(ref, "#") {
			return "", nil, fmt.Errorf("$ref %q is not local to the document", ref)
		}
		next, err := url.PathUnescape(ref[1:])
		if err != nil {
			return "", nil, fmt.Errorf("$ref %q: %w", ref, err)
		}
		ptr = next
	}
	return "", nil, fmt.Errorf("$ref chain from %s is too long (a cycle?)", display(ptr))
}

// lookup returns the value at the JSON pointer ptr ("" is the whole document).
func (v *Validator) lookup(ptr string) (any, error) {
	if ptr == "" {
		return v.doc, nil
	}
	if !strings.HasPrefix(ptr, "/") {
		return nil, fmt.Errorf("%q is not a JSON pointer", ptr)
	}
	cur := v.doc
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch x := cur.(type) {
		case map[string]any:
			next, ok := x[tok]
			if !ok {
				return nil, fmt.Errorf("%s: no %q in the document", display(ptr), tok)
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil, fmt.Errorf("%s: no index %q in the document", display(ptr), tok)
			}
			cur = x[i]
		default:
			return nil, fmt.Errorf("%s: %q is inside a scalar", display(ptr), tok)
		}
	}
	return cur, nil
}

// walk calls fn for every object in the document with its JSON pointer.
func walk(val any, ptr string, fn func(ptr string, obj map[string]any)) {
	switch x := val.(type) {
	case map[string]any:
		fn(ptr, x)
		for _, k := range sortedKeys(x) {
			walk(x[k], ptr+"/"+escapeToken(k), fn)
		}
	case []any:
		for i, e := range x {
			walk(e, ptr+"/"+strconv.Itoa(i), fn)
		}
	}
}

// pointer builds a JSON pointer from unescaped tokens.
func pointer(tokens ...string) string {
	var sb strings.Builder
	for _, t := range tokens {
		sb.WriteByte('/')
		sb.WriteString(escapeToken(t))
	}
	return sb.String()
}

// escapeToken escapes one JSON pointer token (RFC 6901).
func escapeToken(tok string) string {
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
}

// fragment turns a JSON pointer into a URL fragment ("#/paths/~1v1~1orders"),
// percent-encoding what a fragment cannot hold ("{id}").
func fragment(ptr string) string {
	toks := strings.Split(ptr, "/")
	for i, t := range toks {
		toks[i] = url.PathEscape(t)
	}
	return "#" + strings.Join(toks, "/")
}

// display shows a JSON pointer as a readable in-document reference.
func display(ptr string) string { return "#" + ptr }

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// snippet returns body for an error message, cut to a readable length.
func snippet(body []byte) string {
	const limit = 512
	if len(body) > limit {
		return string(body[:limit]) + "…"
	}
	return string(body)
}
