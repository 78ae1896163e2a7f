package main

import (
	"os"
	"runtime/debug"
)

// defaultGCPercent is the garbage collector's target when GOGC is not set:
// a collection once the heap has grown by 400% instead of Go's 100%.
// orderflow's live heap is tens of megabytes, and on a small machine every
// core is shared with PostgreSQL and Kafka; collecting a quarter as often
// gives that CPU back to the work (BENCHMARKS.md) for a larger heap.
const defaultGCPercent = 400

func init() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}
