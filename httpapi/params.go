package httpapi

import (
	"net/http"
	"strconv"

	"github.com/orderflow/orderflow"
)

// QueryInt reads the integer query parameter name of r, which must appear at
// most once and lie in [lo, hi]; it returns def when the parameter is absent.
// A malformed, repeated or out-of-range value is recorded as a field problem
// in v (and def returned), so a handler can report every bad parameter at once.
func QueryInt(r *http.Request, name string, def, lo, hi int64, v *orderflow.ValidationError) int64 {
	s, ok := r.URL.Query()[name]
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(s[0], 10, 64)
	if err != nil || len(s) != 1 || n < lo || n > hi {
		v.Add(name, "must be one integer between "+strconv.FormatInt(lo, 10)+" and "+strconv.FormatInt(hi, 10))
		return def
	}
	return n
}
