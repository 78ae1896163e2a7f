// Package stack grows a new goroutine's stack to what its work needs in one
// step.
//
// A goroutine starts with a small stack (8 KiB) that the runtime copies to
// one twice its size each time the calls on it outgrow it, walking and
// adjusting every frame on it at each copy. orderflow starts a goroutine per
// Kafka message (watermill's router does) and per batch of appends or view
// updates, and their work (JSON codecs, pgx, the middleware frames below
// them) outgrows 8 KiB two or three times: profiled at 500 sagas/s, those
// copies took a tenth of the process's CPU. Reserve, called first thing in
// such a goroutine, takes the stack in one copy of a few frames instead.
package stack

// Size is about the stack a message's or a batch's handling uses.
const Size = 56 << 10

// Reserve grows the calling goroutine's stack to hold Size bytes more than
// it holds now. A stack that large already is left as it is.
//
//go:noinline
func Reserve() {
	var frame [Size]byte
	touch(frame[:])
}

//go:noinline
func touch(b []byte) { b[len(b)-1] = 0 }
