// Package gctune sets the Go garbage collector's target the way orderflow
// runs, so that whatever measures orderflow (bench) runs the same way.
package gctune

import (
	"os"
	"runtime/debug"
)

// DefaultPercent is the garbage collector's target when GOGC is not set: a
// collection once the heap has grown by 400% instead of Go's 100%.
// orderflow's live heap is tens of megabytes, and on a small machine every
// core is shared with PostgreSQL and Kafka; collecting a quarter as often
// gives that CPU back to the work (BENCHMARKS.md) for a larger heap.
const DefaultPercent = 400

// Apply sets DefaultPercent unless GOGC is set, and returns the target in
// force.
func Apply() int {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(DefaultPercent)
	}
	p := debug.SetGCPercent(-1)
	debug.SetGCPercent(p)
	return p
}
