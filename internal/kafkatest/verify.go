package kafkatest

import (
	"fmt"

	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow/relay"
)

// Delivery is what a verifier learned from the relayed messages.
type Delivery struct {
	// IDs holds every event id seen.
	IDs map[string]bool
	// Duplicates counts messages whose event id was seen before.
	Duplicates int
}

// Verify checks relayed CloudEvents: within each stream, a message is either
// the next version or a repeat of one already delivered (at-least-once after
// a retry), never a gap or a step back to an unseen version. It returns what
// was delivered, or the first violation.
func Verify(msgs []kafka.Message) (Delivery, error) {
	d := Delivery{IDs: make(map[string]bool, len(msgs))}
	last := map[string]int64{}
	for _, m := range msgs {
		id := Header(m, relay.HeaderID)
		stream := Header(m, relay.HeaderStreamID)
		v := HeaderInt(m, relay.HeaderStreamVersion)
		if id == "" || stream == "" || v < 1 || string(m.Key) != stream {
			return d, fmt.Errorf("message at %s/%d@%d lacks CloudEvents headers or key", m.Topic, m.Partition, m.Offset)
		}
		switch {
		case d.IDs[id]:
			d.Duplicates++
			if v > last[stream] {
				return d, fmt.Errorf("stream %s: repeated event %s at version %d ahead of %d", stream, id, v, last[stream])
			}
		case v == last[stream]+1:
			last[stream] = v
		default:
			return d, fmt.Errorf("stream %s: version %d after %d (gap or reorder)", stream, v, last[stream])
		}
		d.IDs[id] = true
	}
	return d, nil
}
