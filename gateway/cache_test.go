package gateway

import "testing"

// A full cache makes room for a new key by dropping one entry, never grows
// past its bound, and replaces a known key in place.
func TestBoundedCacheStaysWithinItsBound(t *testing.T) {
	c := newBoundedCache[int, string](3)
	for k := range 10 {
		c.put(k, "v")
		if len(c.entries) > 3 {
			t.Fatalf("after %d puts the cache holds %d entries, bound 3", k+1, len(c.entries))
		}
		if v, ok := c.get(k); !ok || v != "v" {
			t.Fatalf("get(%d) right after put = %q, %v", k, v, ok)
		}
	}
	c.put(9, "w")
	if v, _ := c.get(9); v != "w" || len(c.entries) != 3 {
		t.Fatalf("replacing a known key: get = %q, %d entries; want w, 3", v, len(c.entries))
	}
}
