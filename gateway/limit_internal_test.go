package gateway

import (
	"net/http/httptest"
	"testing"
)

// Unauthenticated requests are limited per IPv4 address and per IPv6 /64.
func TestRemoteIPKeysIPv6ByItsSlash64(t *testing.T) {
	t.Parallel()
	for remote, want := range map[string]string{
		"192.0.2.7:5555":                "192.0.2.7",
		"[2001:db8:1:2:aaaa::1]:443":    "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff:1:2:3]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:3::1]:443":         "2001:db8:1:3::/64",
		"[::ffff:192.0.2.7]:80":         "::ffff:192.0.2.7",
		"not-an-address":                "not-an-address",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		if got := remoteIP(r); got != want {
			t.Errorf("%s: keyed %q, want %q", remote, got, want)
		}
	}
}
