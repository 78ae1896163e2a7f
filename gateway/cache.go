package gateway

import "sync"

// boundedCache is a map of at most max entries, safe for concurrent use:
// when full, an arbitrary entry makes room for a new one.
type boundedCache[K comparable, V any] struct {
	max     int
	mu      sync.RWMutex
	entries map[K]V
}

func newBoundedCache[K comparable, V any](max int) *boundedCache[K, V] {
	return &boundedCache[K, V]{max: max, entries: map[K]V{}}
}

func (c *boundedCache[K, V]) get(k K) (V, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok := c.entries[k]
	return v, ok
}

func (c *boundedCache[K, V]) put(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		for evict := range c.entries { // map order is random
			delete(c.entries, evict)
			break
		}
	}
	c.entries[k] = v
}
