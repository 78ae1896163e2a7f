package query

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/projector"
)

// Stock is the body of GET /v1/inventory/{sku}: a row of the stock view.
// Available is what can still be reserved: on hand minus reserved.
type Stock struct {
	SKU       string    `json:"sku"`
	OnHand    int64     `json:"on_hand"`
	Reserved  int64     `json:"reserved"`
	Available int64     `json:"available"`
	UpdatedAt time.Time `json:"updated_at"`
	Version   int64     `json:"version"`
}

func stockFromView(v *projector.StockView) Stock {
	return Stock{SKU: string(v.SKU), OnHand: v.OnHand, Reserved: v.Reserved, Available: v.OnHand - v.Reserved,
		UpdatedAt: v.UpdatedAt.UTC(), Version: v.Version}
}

func (a *API) getStock(w http.ResponseWriter, r *http.Request) {
	v := &orderflow.ValidationError{}
	sku, err := orderflow.ParseSKU("sku", chi.URLParam(r, "sku"))
	v.Merge(err)
	want := minVersion(r, v)
	if err := v.Err(); err != nil {
		a.fail(w, r, err)
		return
	}
	load := func(ctx context.Context) (*projector.StockView, error) {
		return projector.LoadStock(ctx, a.pool, projector.Live, sku)
	}
	row, ok := readView(w, r, a, "SKU "+string(sku), want, load, func(s *projector.StockView) int64 { return s.Version })
	if ok {
		a.respond(w, r, `W/"sku-`+string(sku)+"-v"+itoa(row.Version)+`"`, stockFromView(row))
	}
}

// notFound is the error of a view with no row for what.
func notFound(what string) error { return fmt.Errorf("%s: %w", what, orderflow.ErrNotFound) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
