package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// latencies is a sorted sample of durations; percentiles are exact (nearest
// rank), not estimated from buckets.
type latencies []time.Duration

// summarise sorts d in place and returns it as latencies.
func summarise(d []time.Duration) latencies {
	slices.Sort(d)
	return latencies(d)
}

// pct returns the p-th quantile (0 < p <= 1) by nearest rank, 0 when empty.
func (l latencies) pct(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(l)))) - 1
	return l[min(max(i, 0), len(l)-1)]
}

// max returns the largest duration, 0 when empty.
func (l latencies) max() time.Duration {
	if len(l) == 0 {
		return 0
	}
	return l[len(l)-1]
}

// ms formats d in milliseconds, precise enough for sub-millisecond appends.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

// perSecond formats a rate.
func perSecond(v float64) string { return fmt.Sprintf("%.0f", v) }

// ratio formats a/b, "–" when b is zero.
func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// us formats d in microseconds, "–" when zero (not measured).
func us(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}

// perOp divides a total duration over n operations, 0 when n is 0.
func perOp(total time.Duration, n int64) time.Duration {
	if n == 0 {
		return 0
	}
	return total / time.Duration(n)
}
