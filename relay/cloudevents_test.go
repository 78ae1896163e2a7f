package relay_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/relay"
)

func TestCloudEventRoundTrip(t *testing.T) {
	t.Parallel()
	e := eventstore.Event{
		ID: uuid.Must(uuid.NewV7()), StreamID: "reservation-42", Version: 7, Type: "InventoryReserved", SchemaVersion: 1,
		Data: json.RawMessage(`{"a":1}`), RecordedAt: time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC),
		Position: eventstore.Position{TxID: 900, Seq: 12},
		Metadata: eventstore.Metadata{CorrelationID: "c", CausationID: "x", CommandID: "cmd", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
	}
	m := relay.Message(e, "/orderflow", "p")
	if m.Topic != "p.inventory" || string(m.Key) != "reservation-42" {
		t.Fatalf("topic %s key %s", m.Topic, m.Key)
	}
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	got, err := relay.EventFromHeaders(h, m.Value)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, e) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, e)
	}
	for _, drop := range []string{relay.HeaderID, relay.HeaderStreamID, relay.HeaderStreamVersion, relay.HeaderType, relay.HeaderTime, relay.HeaderSchemaVersion} {
		bad := map[string]string{}
		for k, v := range h {
			if k != drop {
				bad[k] = v
			}
		}
		if _, err := relay.EventFromHeaders(bad, m.Value); err == nil {
			t.Fatalf("a message without %s was accepted", drop)
		}
	}
}
