package gateway

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const (
	// sweepEvery is how often idle client limiters are forgotten.
	sweepEvery = time.Minute
	// maxTrackedClients is the size past which idle limiters are swept at
	// most once a second instead of once a minute, so a spray of addresses
	// cannot grow the map for long.
	maxTrackedClients = 1 << 16
)

// clientLimiters holds one token bucket per client. A bucket left alone for
// as long as it takes to refill is full again, so forgetting it then changes
// nothing: that is what bounds the map.
type clientLimiters struct {
	limit rate.Limit
	burst int
	idle  time.Duration // time for an empty bucket to refill

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newClientLimiters(limit rate.Limit, burst int) *clientLimiters {
	idle := time.Duration(math.MaxInt64)
	if limit > 0 && limit != rate.Inf {
		idle = time.Duration(min(float64(burst)/float64(limit), 86400)*float64(time.Second)) + time.Second
	}
	return &clientLimiters{limit: limit, burst: burst, idle: idle, buckets: map[string]*bucket{}, lastSweep: time.Now()}
}

// reserve takes a token from key's bucket at now.
func (c *clientLimiters) reserve(key string, now time.Time) *rate.Reservation {
	if c.limit == rate.Inf {
		// No limit: nothing to remember per client.
		return rate.NewLimiter(rate.Inf, 0).ReserveN(now, 1)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	since := now.Sub(c.lastSweep)
	if since >= sweepEvery || (len(c.buckets) >= maxTrackedClients && since >= time.Second) {
		c.lastSweep = now
		for k, b := range c.buckets {
			if now.Sub(b.seen) >= c.idle {
				delete(c.buckets, k)
			}
		}
	}
	b, ok := c.buckets[key]
	if !ok {
		b = &bucket{lim: rate.NewLimiter(c.limit, c.burst)}
		c.buckets[key] = b
	}
	b.seen = now
	return b.lim.ReserveN(now, 1)
}

// admit takes a token from the caller's bucket and from the global one. When
// either is empty it takes neither and returns how long to wait and which
// limit refused ("client" or "global").
func (g *Gateway) admit(key string) (time.Duration, string) {
	now := time.Now()
	client := g.clients.reserve(key, now)
	if d := delay(client, now); d > 0 {
		client.CancelAt(now)
		return d, "client"
	}
	global := g.global.ReserveN(now, 1)
	if d := delay(global, now); d > 0 {
		global.CancelAt(now)
		client.CancelAt(now)
		return d, "global"
	}
	return 0, ""
}

func delay(r *rate.Reservation, now time.Time) time.Duration {
	if !r.OK() {
		return rate.InfDuration
	}
	return r.DelayFrom(now)
}

// retryAfter renders d as a Retry-After value: whole seconds, rounded up, at
// least 1.
func retryAfter(d time.Duration) string {
	s := math.Ceil(d.Seconds())
	switch {
	case s < 1:
		s = 1
	case s > 86400:
		s = 86400
	}
	return strconv.Itoa(int(s))
}

// remoteIP is the address an unauthenticated request is limited by: the
// peer's IPv4 address, or the /64 network of its IPv6 address (one host
// commonly holds a whole /64, and could otherwise take a fresh bucket with
// every address). The gateway is the edge, so X-Forwarded-For from the
// client is not trusted.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() != nil {
		return host
	}
	return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}
