package kafkapubsub

import (
	"testing"

	"github.com/segmentio/kafka-go"
)

func msg(partition int, offset int64, key string) kafka.Message {
	return kafka.Message{Topic: "t", Partition: partition, Offset: offset, Key: []byte(key)}
}

func TestWindowKeepsKeyOrderAndCommitsOnlyContiguousAcks(t *testing.T) {
	w := newWindow(false)
	a0, b1, a2, c3 := msg(0, 0, "a"), msg(0, 1, "b"), msg(0, 2, "a"), msg(0, 3, "")
	for _, tc := range []struct {
		km   kafka.Message
		want bool
	}{{a0, true}, {b1, true}, {a2, false}, {c3, true}} {
		if got := w.add(tc.km); got != tc.want {
			t.Fatalf("add(offset %d key %q) = %v, want %v", tc.km.Offset, tc.km.Key, got, tc.want)
		}
	}

	// Acks out of order: nothing is committed past the first unacked offset.
	next, commit := w.done(b1)
	if next != nil || commit != nil {
		t.Fatalf("done(b1) = next %v, commit %v; want nothing (offset 0 is still out)", next, commit)
	}
	next, commit = w.done(c3)
	if next != nil || commit != nil {
		t.Fatalf("done(c3) = next %v, commit %v; want nothing", next, commit)
	}
	next, commit = w.done(a0)
	if next == nil || next.Offset != 2 {
		t.Fatalf("done(a0): next = %v, want offset 2 (key a waited for it)", next)
	}
	if commit == nil || commit.Offset != 1 {
		t.Fatalf("done(a0): commit = %v, want through offset 1 (offset 2 not acked)", commit)
	}
	next, commit = w.done(a2)
	if next != nil {
		t.Fatalf("done(a2): next = %v, want none", next)
	}
	if commit == nil || commit.Offset != 3 {
		t.Fatalf("done(a2): commit = %v, want through offset 3", commit)
	}
	if len(w.waiting) != 0 {
		t.Fatalf("keys still busy after every ack: %v", w.waiting)
	}
}

func TestWindowPartitionsAreIndependent(t *testing.T) {
	w := newWindow(false)
	p0, p1 := msg(0, 10, "x"), msg(1, 7, "y")
	w.add(p0)
	w.add(p1)
	if _, commit := w.done(p1); commit == nil || commit.Partition != 1 || commit.Offset != 7 {
		t.Fatalf("done(p1) commit = %v, want partition 1 through 7", commit)
	}
	if _, commit := w.done(p0); commit == nil || commit.Partition != 0 || commit.Offset != 10 {
		t.Fatalf("done(p0) commit = %v, want partition 0 through 10", commit)
	}
}

func TestWindowKeylessMessagesKeepPartitionOrder(t *testing.T) {
	w := newWindow(false)
	if !w.add(msg(0, 0, "")) || w.add(msg(0, 1, "")) {
		t.Fatal("a second keyless message of a partition was released before the first was acked")
	}
	if !w.add(msg(1, 0, "")) {
		t.Fatal("a keyless message of another partition was held back")
	}
}

func TestWindowRefetchedOffsetIsCountedTwice(t *testing.T) {
	w := newWindow(false)
	first := msg(0, 5, "k")
	w.add(first)
	w.add(first) // a rebalance fetched it again: it waits behind the first copy
	next, commit := w.done(first)
	if next == nil || (commit != nil && commit.Offset >= 5) {
		t.Fatalf("after the first copy: next %v, commit %v; want the second copy and nothing committed through 5", next, commit)
	}
	if _, commit := w.done(*next); commit == nil || commit.Offset != 5 {
		t.Fatalf("after the second copy: commit %v, want through 5", commit)
	}
}

// Unordered, messages of one key go out together, and commits still stop
// below the first unacked offset.
func TestUnorderedWindowDeliversEveryKeyAtOnce(t *testing.T) {
	w := newWindow(true)
	a0, a1, a2 := msg(0, 0, "a"), msg(0, 1, "a"), msg(0, 2, "a")
	for _, km := range []kafka.Message{a0, a1, a2} {
		if !w.add(km) {
			t.Fatalf("add(offset %d) = false; want every message delivered at once", km.Offset)
		}
	}
	if next, commit := w.done(a1); next != nil || commit != nil {
		t.Fatalf("done(a1) = next %v, commit %v; want nothing (offset 0 is still out)", next, commit)
	}
	if next, commit := w.done(a0); next != nil || commit == nil || commit.Offset != 1 {
		t.Fatalf("done(a0) = next %v, commit %v; want no next, commit through 1", next, commit)
	}
	if _, commit := w.done(a2); commit == nil || commit.Offset != 2 {
		t.Fatalf("done(a2) commit = %v; want through 2", commit)
	}
	if len(w.waiting) != 0 {
		t.Fatalf("keys tracked while unordered: %v", w.waiting)
	}
}

// A skipped message counts as acked when it is fetched: it neither waits
// for its key nor holds its key's next message back, and commits pass it
// once the messages before it are acked.
func TestWindowSkipsWithoutDisturbingKeys(t *testing.T) {
	w := newWindow(false)
	a0, a1, a2 := msg(0, 0, "a"), msg(0, 1, "a"), msg(0, 2, "a")
	if !w.add(a0) {
		t.Fatal("add(a0) = false; want delivered")
	}
	if commit := w.skip(a1); commit != nil {
		t.Fatalf("skip(a1) commit = %v; want nothing (offset 0 is still out)", commit)
	}
	if w.add(a2) {
		t.Fatal("add(a2) = true; want it to wait for a0, its key's message still out")
	}
	next, commit := w.done(a0)
	if next == nil || next.Offset != 2 {
		t.Fatalf("done(a0): next = %v; want offset 2", next)
	}
	if commit == nil || commit.Offset != 1 {
		t.Fatalf("done(a0): commit = %v; want through 1 (the skipped offset)", commit)
	}
	if _, commit := w.done(a2); commit == nil || commit.Offset != 2 {
		t.Fatalf("done(a2): commit = %v; want through 2", commit)
	}
	if commit := w.skip(msg(0, 3, "b")); commit == nil || commit.Offset != 3 {
		t.Fatalf("skip with nothing out: commit = %v; want through 3", commit)
	}
}
