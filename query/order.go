package query

import (
	"context"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/projector"
)

// Order is the body of GET /v1/orders/{id}: a row of the order details view.
type Order struct {
	OrderID      string      `json:"order_id"`
	CustomerID   string      `json:"customer_id"`
	Status       string      `json:"status"`
	Lines        []OrderLine `json:"lines"`
	TotalCents   int64       `json:"total_cents"`
	PlacedAt     time.Time   `json:"placed_at"`
	UpdatedAt    time.Time   `json:"updated_at"`
	CancelReason string      `json:"cancel_reason,omitempty"`
	Version      int64       `json:"version"`
}

// OrderLine is one line of an Order.
type OrderLine struct {
	SKU            string `json:"sku"`
	Quantity       int64  `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

func orderFromView(v *projector.OrderView) Order {
	o := Order{
		OrderID: v.OrderID.String(), CustomerID: string(v.CustomerID), Status: v.Status,
		Lines: make([]OrderLine, len(v.Lines)), TotalCents: v.TotalCents,
		PlacedAt: v.PlacedAt.UTC(), UpdatedAt: v.UpdatedAt.UTC(), CancelReason: v.CancelReason, Version: v.Version,
	}
	for i, l := range v.Lines {
		o.Lines[i] = OrderLine{SKU: string(l.SKU), Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents}
	}
	return o
}

func (a *API) getOrder(w http.ResponseWriter, r *http.Request) {
	v := &orderflow.ValidationError{}
	id, err := orderflow.ParseOrderID("id", chi.URLParam(r, "id"))
	v.Merge(err)
	want := minVersion(r, v)
	if err := v.Err(); err != nil {
		a.fail(w, r, err)
		return
	}
	load := func(ctx context.Context) (*projector.OrderView, error) {
		return projector.LoadOrder(ctx, a.pool, projector.Live, id)
	}
	row, ok := readView(w, r, a, "order "+id.String(), want, load, func(o *projector.OrderView) int64 { return o.Version })
	if ok {
		a.respond(w, r, `W/"order-`+id.String()+"-v"+itoa(row.Version)+`"`, orderFromView(row))
	}
}
