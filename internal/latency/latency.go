// Package latency holds the buckets that orderflow's latency histograms
// share (the relay's delay, appends, projector transactions, saga
// reactions), so their quantiles read alike.
package latency

// Buckets returns the histogram buckets in seconds, from 1 ms to 30 s: a
// new slice each time, so no histogram shares another's.
func Buckets() []float64 {
	return []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
}
