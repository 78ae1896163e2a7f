package command_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/command"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func fields(err error) []string {
	var v *orderflow.ValidationError
	if !errors.As(err, &v) {
		return nil
	}
	out := make([]string, len(v.Fields))
	for i, f := range v.Fields {
		out[i] = f.Field
	}
	return out
}

func TestNewPlaceOrderValidates(t *testing.T) {
	t.Parallel()
	line := func(sku string, q, p int64) command.LineInput {
		return command.LineInput{SKU: sku, Quantity: q, UnitPriceCents: p}
	}
	many := make([]command.LineInput, orderflow.MaxOrderLines+1)
	for i := range many {
		many[i] = line("SKU-"+strings.Repeat("x", i%5)+string(rune('a'+i%26))+string(rune('a'+i/26)), 1, 1)
	}
	tests := []struct {
		name     string
		customer string
		lines    []command.LineInput
		want     []string // fields reported; nil means valid
	}{
		{"valid", "c-1", []command.LineInput{line("SKU-1", 2, 1999), line("SKU-2", 1, 0)}, nil},
		{"max lines", "c-1", many[:orderflow.MaxOrderLines], nil},
		{"empty customer", "", []command.LineInput{line("A", 1, 1)}, []string{"customer_id"}},
		{"customer with space", "c 1", []command.LineInput{line("A", 1, 1)}, []string{"customer_id"}},
		{"no lines", "c-1", nil, []string{"lines"}},
		{"too many lines", "c-1", many, []string{"lines"}},
		{"zero quantity", "c-1", []command.LineInput{line("A", 0, 1)}, []string{"lines[0].quantity"}},
		{"negative quantity", "c-1", []command.LineInput{line("A", -3, 1)}, []string{"lines[0].quantity"}},
		{"quantity too large", "c-1", []command.LineInput{line("A", orderflow.MaxLineQuantity+1, 1)}, []string{"lines[0].quantity"}},
		{"negative price", "c-1", []command.LineInput{line("A", 1, -1)}, []string{"lines[0].unit_price_cents"}},
		{"price too large", "c-1", []command.LineInput{line("A", 1, orderflow.MaxUnitPriceCents+1)}, []string{"lines[0].unit_price_cents"}},
		{"bad sku", "c-1", []command.LineInput{line("no spaces", 1, 1)}, []string{"lines[0].sku"}},
		{"empty sku", "c-1", []command.LineInput{line("", 1, 1)}, []string{"lines[0].sku"}},
		{"duplicate sku", "c-1", []command.LineInput{line("A", 1, 1), line("B", 1, 1), line("A", 2, 1)}, []string{"lines[2].sku"}},
		{"every problem at once", "", []command.LineInput{line("", 0, -1)}, []string{"customer_id", "lines[0].sku", "lines[0].quantity", "lines[0].unit_price_cents"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd, err := command.NewPlaceOrder(tt.customer, tt.lines)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if len(cmd.Lines) != len(tt.lines) {
					t.Fatalf("command has %d lines, want %d", len(cmd.Lines), len(tt.lines))
				}
				return
			}
			got := fields(err)
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("invalid fields = %v (err %v); want %v", got, err, tt.want)
			}
		})
	}
}

func TestDecidePlaceOrder(t *testing.T) {
	t.Parallel()
	cmd, err := command.NewPlaceOrder("c-1", []command.LineInput{{SKU: "A", Quantity: 3, UnitPriceCents: 250}, {SKU: "B", Quantity: 1, UnitPriceCents: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	id := orderflow.NewOrderID()
	events := command.DecidePlaceOrder(id, cmd, now, time.Minute)
	if len(events) != 1 {
		t.Fatalf("%d events, want 1", len(events))
	}
	placed, ok := events[0].(orderflow.OrderPlaced)
	if !ok {
		t.Fatalf("event is %T, want OrderPlaced", events[0])
	}
	if placed.OrderID != id || placed.CustomerID != "c-1" || placed.TotalCents != 1750 || !placed.PlacedAt.Equal(now) || !placed.DeadlineAt.Equal(now.Add(time.Minute)) || len(placed.Lines) != 2 {
		t.Fatalf("OrderPlaced = %+v", placed)
	}
	o := command.FoldOrder(events)
	if !o.Exists() || o.Status != command.StatusPending || o.Version != 1 || o.TotalCents != 1750 || o.ID != id {
		t.Fatalf("folded order = %+v", o)
	}
}

func TestDecideCancelOrder(t *testing.T) {
	t.Parallel()
	id := orderflow.NewOrderID()
	placed := orderflow.OrderPlaced{OrderID: id, CustomerID: "c-1", Lines: []orderflow.OrderLine{{SKU: "A", Quantity: 1, UnitPriceCents: 1}}, TotalCents: 1, PlacedAt: now}
	cancelled := orderflow.OrderCancelled{OrderID: id, Reason: "x", CancelledAt: now}
	cmd, err := command.NewCancelOrder(id.String(), "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		history []orderflow.Event
		wantErr error
	}{
		{"pending order", []orderflow.Event{placed}, nil},
		{"unknown order", nil, orderflow.ErrNotFound},
		{"already cancelled", []orderflow.Event{placed, cancelled}, orderflow.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := command.FoldOrder(tt.history)
			events, err := command.DecideCancelOrder(o, cmd, now)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				if events != nil {
					t.Fatalf("refused cancel returned events %v", events)
				}
				return
			}
			c, ok := events[0].(orderflow.OrderCancelled)
			if len(events) != 1 || !ok || c.OrderID != id || c.Reason != "customer request" {
				t.Fatalf("events = %+v", events)
			}
			if after := o.Apply(c); after.Status != command.StatusCancelled || after.Version != o.Version+1 {
				t.Fatalf("after cancel: %+v", after)
			}
		})
	}
}

func TestNewCancelOrderValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, id, reason string
		want             []string
	}{
		{"valid", "0190f2a4-7c1e-7b6e-9d51-3f0c2a9b8e11", "changed my mind", nil},
		{"not a uuid", "42", "", []string{"id"}},
		{"uuid with braces", "{0190f2a4-7c1e-7b6e-9d51-3f0c2a9b8e11}", "", []string{"id"}},
		{"reason too long", "0190f2a4-7c1e-7b6e-9d51-3f0c2a9b8e11", strings.Repeat("é", orderflow.MaxReasonLength+1), []string{"reason"}},
		{"NUL in reason", "0190f2a4-7c1e-7b6e-9d51-3f0c2a9b8e11", "a\x00b", []string{"reason"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := command.NewCancelOrder(tt.id, tt.reason)
			if got := fields(err); strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("invalid fields = %v (err %v); want %v", got, err, tt.want)
			}
		})
	}
}

func TestAddStock(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		sku  string
		qty  int64
		want []string
	}{
		{"valid", "SKU-1", 10, nil},
		{"max", "SKU-1", orderflow.MaxStockAddition, nil},
		{"zero", "SKU-1", 0, []string{"quantity"}},
		{"negative", "SKU-1", -5, []string{"quantity"}},
		{"too many", "SKU-1", orderflow.MaxStockAddition + 1, []string{"quantity"}},
		{"bad sku", "SKU 1", 1, []string{"sku"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd, err := command.NewAddStock(tt.sku, tt.qty)
			if got := fields(err); strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("invalid fields = %v (err %v); want %v", got, err, tt.want)
			}
			if tt.want != nil {
				return
			}
			events := command.DecideAddStock(cmd, now)
			added, ok := events[0].(orderflow.StockAdded)
			if len(events) != 1 || !ok || added.SKU != orderflow.SKU(tt.sku) || added.Quantity != tt.qty {
				t.Fatalf("events = %+v", events)
			}
		})
	}
}

func TestSagaDecisionsOnOrders(t *testing.T) {
	t.Parallel()
	id := orderflow.NewOrderID()
	placed := orderflow.OrderPlaced{OrderID: id, CustomerID: "c", PlacedAt: now}
	states := map[string][]orderflow.Event{
		"pending":   {placed},
		"confirmed": {placed, orderflow.OrderConfirmed{OrderID: id}},
		"rejected":  {placed, orderflow.OrderRejected{OrderID: id}},
		"cancelled": {placed, orderflow.OrderCancelled{OrderID: id}},
	}
	tests := []struct {
		state                   string
		confirm, reject, cancel string // event type decided, "" for none
	}{
		{"pending", orderflow.EventOrderConfirmed, orderflow.EventOrderRejected, orderflow.EventOrderCancelled},
		{"confirmed", "", "", ""},
		{"rejected", "", "", ""},
		{"cancelled", "", "", ""},
	}
	only := func(events []orderflow.Event) string {
		if len(events) == 0 {
			return ""
		}
		return events[0].EventType()
	}
	for _, tt := range tests {
		t.Run(tt.state, func(t *testing.T) {
			t.Parallel()
			o := command.FoldOrder(states[tt.state])
			if string(o.Status) != tt.state {
				t.Fatalf("folded status %s, want %s", o.Status, tt.state)
			}
			if got := only(command.DecideConfirm(o, now)); got != tt.confirm {
				t.Fatalf("confirm decided %q, want %q", got, tt.confirm)
			}
			if got := only(command.DecideReject(o, "out of stock", now)); got != tt.reject {
				t.Fatalf("reject decided %q, want %q", got, tt.reject)
			}
			if got := only(command.DecideSagaCancel(o, orderflow.ReasonTimeout, now)); got != tt.cancel {
				t.Fatalf("saga cancel decided %q, want %q", got, tt.cancel)
			}
		})
	}
}
