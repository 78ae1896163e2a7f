package query

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/httpapi"
)

// cacheControl makes caches revalidate every time: a view changes whenever
// an event is applied, and the ETag makes revalidation cheap.
const cacheControl = "no-cache"

// fail writes err as a problem response; httpapi.Error logs the unexpected.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	httpapi.Error(w, r, a.logger, err)
}

// respond writes v as a 200 with etag, or a 304 with no body when the
// request's If-None-Match matches it. An empty etag is replaced by a strong
// one hashed from the body, for lists whose content has no single version.
func (a *API) respond(w http.ResponseWriter, r *http.Request, etag string, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		a.fail(w, r, fmt.Errorf("encode response: %w", err))
		return
	}
	body = append(body, '\n')
	if etag == "" {
		sum := sha256.Sum256(body)
		etag = `"` + hex.EncodeToString(sum[:16]) + `"`
	}
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", cacheControl)
	if noneMatch(r.Header.Values("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// noneMatch reports whether If-None-Match header values name etag, by the
// weak comparison RFC 9110 prescribes for If-None-Match ("*" names any). An
// unparsable member ends the list: the request is then served in full, which
// is always safe.
func noneMatch(values []string, etag string) bool {
	want := opaque(etag)
	for _, s := range values {
		for {
			s = strings.TrimLeft(s, " \t,")
			if s == "" {
				break
			}
			if s[0] == '*' {
				return true
			}
			s = strings.TrimPrefix(s, "W/")
			if s == "" || s[0] != '"' {
				break
			}
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				break
			}
			if s[:end+2] == want {
				return true
			}
			s = s[end+2:]
		}
	}
	return false
}

// opaque returns etag without its weakness indicator.
func opaque(etag string) string { return strings.TrimPrefix(etag, "W/") }

// single returns the value of the query parameter name and whether it was
// given. A parameter given more than once, or given empty, is recorded in v.
func single(r *http.Request, name string, v *orderflow.ValidationError) (string, bool) {
	vals, ok := r.URL.Query()[name]
	switch {
	case !ok:
		return "", false
	case len(vals) != 1:
		v.Add(name, "must be given at most once")
		return "", false
	case vals[0] == "":
		v.Add(name, "must not be empty")
		return "", false
	}
	return vals[0], true
}
