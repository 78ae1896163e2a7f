package main

import (
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow/projector"
	"github.com/orderflow/orderflow/relay"
)

// A saga reaction's consumer skips the event types it does not react to, and
// delivers a message without a type for the handler to turn away.
func TestOtherTypes(t *testing.T) {
	skip := otherTypes([]string{"OrderPlaced", "OrderCancelled"})
	typed := func(typ string) kafka.Message {
		return kafka.Message{Headers: []kafka.Header{{Key: "ce_id", Value: []byte("x")}, {Key: relay.HeaderType, Value: []byte(typ)}}}
	}
	for typ, want := range map[string]bool{"OrderPlaced": false, "OrderCancelled": false, "OrderConfirmed": true, "": true} {
		if got := skip(typed(typ)); got != want {
			t.Errorf("skip(%q) = %v, want %v", typ, got, want)
		}
	}
	if skip(kafka.Message{}) {
		t.Error("a message without a type was skipped; want it delivered")
	}
}

// A projection's consumer skips the streams the projection does not fold.
func TestOtherStreams(t *testing.T) {
	skip := otherStreams(projector.StockLevels{})
	for key, want := range map[string]bool{"sku-A": false, "reservation-x": true, "order-x": true, "": false} {
		if got := skip(kafka.Message{Key: []byte(key)}); got != want {
			t.Errorf("stock projection: skip(key %q) = %v, want %v", key, got, want)
		}
	}
}
