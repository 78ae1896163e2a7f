package eventcodec_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/eventcodec"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	id := orderflow.NewOrderID()
	for _, e := range []orderflow.Event{
		orderflow.OrderPlaced{OrderID: id, CustomerID: "c-1", Lines: []orderflow.OrderLine{{SKU: "A", Quantity: 2, UnitPriceCents: 150}}, TotalCents: 300, PlacedAt: at},
		orderflow.OrderCancelled{OrderID: id, Reason: "timeout", CancelledAt: at},
		orderflow.OrderPlaced{OrderID: id, CustomerID: "c-2", Lines: []orderflow.OrderLine{{SKU: "B", Quantity: 1, UnitPriceCents: 0}}, PlacedAt: at, DeadlineAt: at.Add(time.Minute)},
		orderflow.StockAdded{SKU: "A", Quantity: 7, AddedAt: at},
		orderflow.OrderConfirmed{OrderID: id, ConfirmedAt: at},
		orderflow.OrderRejected{OrderID: id, Reason: "out of stock", RejectedAt: at},
		orderflow.StockReserved{SKU: "A", OrderID: id, Quantity: 2},
		orderflow.StockReleased{SKU: "A", OrderID: id, Quantity: 2, Committed: true},
		orderflow.StockCommitted{SKU: "A", OrderID: id, Quantity: 2},
		orderflow.InventoryReserved{OrderID: id, Lines: []orderflow.OrderLine{{SKU: "A", Quantity: 2, UnitPriceCents: 150}}, TotalCents: 300},
		orderflow.InventoryRejected{OrderID: id, Reason: "out of stock", SKU: "A"},
		orderflow.InventoryReleased{OrderID: id},
		orderflow.InventoryCommitted{OrderID: id},
		orderflow.PaymentCaptured{OrderID: id, AmountCents: 300, ChargeID: "ch_1"},
		orderflow.PaymentFailed{OrderID: id, Reason: "declined"},
		orderflow.PaymentRefunded{OrderID: id, AmountCents: 300, ChargeID: "ch_1"},
	} {
		data, err := eventcodec.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := eventcodec.Decode(e.EventType(), e.SchemaVersion(), data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("round trip of %s:\n got %+v\nwant %+v", e.EventType(), got, e)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, typ string
		sv        int
		data      string
		unknown   bool
	}{
		{"unknown type", "OrderShipped", 1, `{}`, true},
		{"unknown version", "OrderPlaced", 2, `{}`, true},
		{"bad json", "StockAdded", 1, `{`, false},
		{"bad order id", "OrderCancelled", 1, `{"order_id":"x"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := eventcodec.Decode(tt.typ, tt.sv, []byte(tt.data))
			if err == nil || errors.Is(err, eventcodec.ErrUnknownEvent) != tt.unknown {
				t.Fatalf("err = %v (unknown=%v)", err, tt.unknown)
			}
		})
	}
}
