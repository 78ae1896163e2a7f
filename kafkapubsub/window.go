package kafkapubsub

import (
	"strconv"

	"github.com/segmentio/kafka-go"
)

// window is the bookkeeping of a subscription's messages between fetch and
// ack: which keys are busy (one message per key out at a time, the rest
// waiting in offset order) and, per partition, which offsets are still
// unacked, so that a commit never passes one of them. It is not safe for
// concurrent use; the subscription's dispatcher owns it.
type window struct {
	waiting    map[string][]kafka.Message // busy keys → their messages not yet delivered
	partitions map[partitionKey]*partitionWindow
	unordered  bool // no key is ever busy (SubscriberConfig.Unordered)
}

type partitionKey struct {
	topic     string
	partition int
}

type partitionWindow struct {
	pending    map[int64]int // unacked offsets (a rebalance can fetch one twice)
	maxFetched int64
	committed  int64 // the highest offset committed through this window
}

func newWindow(unordered bool) *window {
	return &window{waiting: map[string][]kafka.Message{}, partitions: map[partitionKey]*partitionWindow{}, unordered: unordered}
}

// orderKey is what a message's order is kept by: its key, or for a keyless
// message its partition.
func orderKey(km kafka.Message) string {
	if len(km.Key) == 0 {
		return "p:" + km.Topic + "/" + strconv.Itoa(km.Partition)
	}
	return "k:" + string(km.Key)
}

// partition returns km's partition's bookkeeping, made on first use.
func (w *window) partition(km kafka.Message) *partitionWindow {
	pk := partitionKey{km.Topic, km.Partition}
	pw := w.partitions[pk]
	if pw == nil {
		pw = &partitionWindow{pending: map[int64]int{}, maxFetched: -1, committed: -1}
		w.partitions[pk] = pw
	}
	return pw
}

// advance returns the offset of km's partition to commit, when it moved:
// its last offset before its first unacked one.
func (pw *partitionWindow) advance(km kafka.Message) *kafka.Message {
	through := pw.maxFetched
	for off := range pw.pending {
		through = min(through, off-1)
	}
	if through <= pw.committed {
		return nil
	}
	pw.committed = through
	return &kafka.Message{Topic: km.Topic, Partition: km.Partition, Offset: through}
}

// add records a fetched message; it reports whether the message can be
// delivered now (false: an earlier message with its key is still out).
func (w *window) add(km kafka.Message) bool {
	pw := w.partition(km)
	pw.pending[km.Offset]++
	pw.maxFetched = max(pw.maxFetched, km.Offset)
	if w.unordered {
		return true
	}

	k := orderKey(km)
	if q, busy := w.waiting[k]; busy {
		w.waiting[k] = append(q, km)
		return false
	}
	w.waiting[k] = nil
	return true
}

// skip records a fetched message that is not delivered at all (see
// SubscriberConfig.Skip): acked as it comes, whatever its key's messages
// are doing. It returns the offset to commit, as done does.
func (w *window) skip(km kafka.Message) (commit *kafka.Message) {
	pw := w.partition(km)
	pw.maxFetched = max(pw.maxFetched, km.Offset)
	return pw.advance(km)
}

// done records that km was acked. It returns the message to deliver next
// (the next one waiting for km's key), and the offset to commit: the
// partition's last offset before its first unacked one, when that moved.
func (w *window) done(km kafka.Message) (next, commit *kafka.Message) {
	if pw := w.partitions[partitionKey{km.Topic, km.Partition}]; pw != nil {
		if pw.pending[km.Offset]--; pw.pending[km.Offset] <= 0 {
			delete(pw.pending, km.Offset)
		}
		commit = pw.advance(km)
	}
	if w.unordered {
		return nil, commit
	}

	k := orderKey(km)
	if q := w.waiting[k]; len(q) > 0 {
		next = &q[0]
		w.waiting[k] = q[1:]
	} else {
		delete(w.waiting, k)
	}
	return next, commit
}
