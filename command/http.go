package command

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/httpapi"
)

// API is the command REST API: POST /v1/orders, POST
// /v1/orders/{id}/cancel, POST /v1/inventory/{sku}/stock and the audit trail
// GET /v1/streams/{id}/events.
type API struct {
	place  *PlaceOrderHandler
	cancel *CancelOrderHandler
	stock  *AddStockHandler
	store  EventStore
	logger *slog.Logger
}

// Config tunes the command API.
type Config struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OrderDeadline is how long a placed order may stay pending before the
	// saga cancels it with reason "timeout" (0: no deadline).
	OrderDeadline time.Duration
}

// NewAPI returns the API over store.
func NewAPI(store EventStore, cfg Config, logger *slog.Logger) (*API, error) {
	if store == nil || logger == nil {
		return nil, errors.New("command: NewAPI: nil dependency")
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	place, err := NewPlaceOrderHandler(store, now, cfg.OrderDeadline)
	if err != nil {
		return nil, err
	}
	cancel, _ := NewCancelOrderHandler(store, now)
	stock, _ := NewAddStockHandler(store, now)
	return &API{place: place, cancel: cancel, stock: stock, store: store, logger: logger}, nil
}

// Mount adds the API's routes to r.
func (a *API) Mount(r chi.Router) {
	r.Post("/v1/orders", a.placeOrder)
	r.Post("/v1/orders/{id}/cancel", a.cancelOrder)
	r.Post("/v1/inventory/{sku}/stock", a.addStock)
	r.Get("/v1/streams/{id}/events", a.streamEvents)
}

// maxTraceState bounds the tracestate a command records.
const maxTraceState = 512

// IdempotencyKeyHeader names the header that makes a command idempotent.
const IdempotencyKeyHeader = "Idempotency-Key"

var (
	idempotencyKeyPattern = regexp.MustCompile(`^[\x21-\x7E]{1,255}$`)
	traceParentPattern    = regexp.MustCompile(`^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)
	traceStatePattern     = regexp.MustCompile(`^[\x20-\x7E]*$`) // W3C: printable ASCII
)

// meta builds a command's Meta from the request. The fingerprint covers the
// operation, its path parameter and the decoded body, so the same request
// with other whitespace or key order is the same command.
func meta(r *http.Request, operation, param string, decoded any) (Meta, error) {
	m := Meta{CorrelationID: httpapi.RequestID(r.Context())}
	if tp := r.Header.Get("traceparent"); traceParentPattern.MatchString(tp) {
		m.TraceParent = tp
		// W3C bounds tracestate at 32 members of at most 256 characters
		// (vendors keep it under 512) of printable ASCII; a longer one, or
		// one of other bytes, is dropped rather than written into every
		// event and Kafka header for good.
		if ts := r.Header.Values("tracestate"); len(ts) == 1 && len(ts[0]) <= maxTraceState && traceStatePattern.MatchString(ts[0]) {
			m.TraceState = ts[0]
		}
	}
	key, present := r.Header[IdempotencyKeyHeader]
	if !present {
		return m, nil
	}
	if len(key) != 1 || !idempotencyKeyPattern.MatchString(key[0]) {
		return Meta{}, &httpapi.RequestError{Status: http.StatusBadRequest, Slug: "validation", Title: "The request is invalid",
			Detail: "Idempotency-Key must be one header of 1 to 255 visible ASCII characters.",
			Fields: []httpapi.FieldError{{Field: "Idempotency-Key", Detail: "must be 1 to 255 visible ASCII characters"}}}
	}
	canonical, err := json.Marshal(decoded)
	if err != nil {
		return Meta{}, err
	}
	sum := sha256.Sum256([]byte(operation + "\n" + param + "\n" + string(canonical)))
	m.CommandID = "idem:" + key[0]
	m.Fingerprint = hex.EncodeToString(sum[:])
	return m, nil
}

type lineRequest struct {
	SKU            *string `json:"sku"`
	Quantity       *int64  `json:"quantity"`
	UnitPriceCents *int64  `json:"unit_price_cents"`
}

type placeOrderRequest struct {
	CustomerID *string        `json:"customer_id"`
	Lines      *[]lineRequest `json:"lines"`
}

// toCommand checks presence of every field and builds the command,
// reporting every problem at once.
func (req placeOrderRequest) toCommand() (PlaceOrder, error) {
	missing := map[string]bool{}
	in := LineInput{}
	var customerID string
	if req.CustomerID == nil {
		missing["customer_id"] = true
	} else {
		customerID = *req.CustomerID
	}
	var lines []LineInput
	if req.Lines == nil {
		missing["lines"] = true
	} else {
		for i, l := range *req.Lines {
			if i >= orderflow.MaxOrderLines {
				// NewPlaceOrder refuses the count; the lines past it are
				// not looked at, so a small body cannot ask for a huge answer.
				lines = append(lines, make([]LineInput, len(*req.Lines)-i)...)
				break
			}
			field := "lines[" + strconv.Itoa(i) + "]."
			in = LineInput{}
			if l.SKU == nil {
				missing[field+"sku"] = true
			} else {
				in.SKU = *l.SKU
			}
			if l.Quantity == nil {
				missing[field+"quantity"] = true
			} else {
				in.Quantity = *l.Quantity
			}
			if l.UnitPriceCents == nil {
				missing[field+"unit_price_cents"] = true
			} else {
				in.UnitPriceCents = *l.UnitPriceCents
			}
			lines = append(lines, in)
		}
	}
	cmd, err := NewPlaceOrder(customerID, lines)
	if len(missing) == 0 {
		return cmd, err
	}
	v := &orderflow.ValidationError{}
	for _, f := range slices.Sorted(maps.Keys(missing)) {
		v.Add(f, "is required")
	}
	var verr *orderflow.ValidationError
	if errors.As(err, &verr) {
		for _, f := range verr.Fields {
			if !missing[f.Field] {
				v.Add(f.Field, f.Detail)
			}
		}
	}
	return PlaceOrder{}, v
}

// OrderAccepted is the response to an order command.
type OrderAccepted struct {
	OrderID  string `json:"order_id"`
	StreamID string `json:"stream_id"`
	Version  int64  `json:"version"`
}

func orderAccepted(acc Accepted) OrderAccepted {
	return OrderAccepted{OrderID: strings.TrimPrefix(acc.StreamID, orderflow.OrderStreamPrefix), StreamID: acc.StreamID, Version: acc.Version}
}

func (a *API) placeOrder(w http.ResponseWriter, r *http.Request) {
	var req placeOrderRequest
	if _, err := httpapi.DecodeJSON(w, r, &req, false); err != nil {
		httpapi.Error(w, r, a.logger, err)
		return
	}
	cmd, err := req.toCommand()
	if err != nil {
		httpapi.Error(w, r, a.logger, err)
		return
	}
	m, err := meta(r, "PlaceOrder", "", req)
	if err != nil {
		httpapi.Error(w, r, a.logger, err)
		return
	}
	acc, err := a.place.Handle(r.Context(), cmd, m)
	if err != nil {
		httpapi.Error(w, r, a.logger, err)
		return
	}
	out := orderAccepted(acc)
	w.Header().Set("Location", "/v1/orders/"+out.OrderID)
	httpapi.JSON(w, http.StatusCreated, out)
}

type cancelOrderRequest struct {
	Reason string `json:"reason"`
}

func (a *API) cancelOrder(w http.ResponseWriter, r *http.Request) {
	var req cancelOrderRequest
	if _, err := httpapi.DecodeJSON(w, r, &req, true); err != nil {
		httpapi.Error(w, r, a.logger, err)
		return
	}
	cmd, err := NewCancelOrder(chi.URLParam(r, "id"), req.Reason)
	if err != nil {
		httpapi.Error(w, r, a.logger, err)
		return
	}
	m, err := meta(r, "CancelOrder", cmd.OrderID.String(), req)
	if err != nil {
		httpapi.Error(w, r, a.logger, err)
		return
	}
	acc, err := a.cancel.Handle(r.Context(), cmd, m)
	if err != nil {
		httpapi.Error(w, r, a.logger, err)
		return
	}
	httpapi.JSON(w, http.StatusOK, orderAccepted(acc))
}

type addStockRequest struct {
	Quantity *int64 `json:"quantity"`
}

// StockAccepted is the response to a stock command.
type StockAccepted struct {
	SKU      string `json:"sku"`
	StreamID string `json:"stream_id"`
	Version  int64  `json:"version"`
}

func (a *API) addStock(w http.ResponseWriter, r *http.Request) {
	var req addStockRequest
	if _, err := httpapi.DecodeJSON(w, r, &req, false); err != nil {
		httpapi.Error(w, r, a.logger, err)
		return
	}
	if req.Quantity == nil {
		httpapi.Error(w, r, a.logger, orderflow.Invalid("quantity", "is required"))
		return
	}
	cmd, err := NewAddStock(chi.URLParam(r, "sku"), *req.Quantity)
	if err != nil {
		httpapi.Error(w, r, a.logger, err)
		return
	}
	m, err := meta(r, "AddStock", string(cmd.SKU), req)
	if err != nil {
		httpapi.Error(w, r, a.logger, err)
		return
	}
	acc, err := a.stock.Handle(r.Context(), cmd, m)
	if err != nil {
		httpapi.Error(w, r, a.logger, err)
		return
	}
	httpapi.JSON(w, http.StatusOK, StockAccepted{SKU: string(cmd.SKU), StreamID: acc.StreamID, Version: acc.Version})
}

// RecordedEvent is one event of the audit trail.
type RecordedEvent struct {
	EventID       string              `json:"event_id"`
	StreamID      string              `json:"stream_id"`
	Version       int64               `json:"version"`
	Type          string              `json:"type"`
	SchemaVersion int                 `json:"schema_version"`
	Data          json.RawMessage     `json:"data"`
	Metadata      eventstore.Metadata `json:"metadata"`
	RecordedAt    time.Time           `json:"recorded_at"`
	Position      string              `json:"position"`
}

// StreamEvents is a page of a stream's audit trail.
type StreamEvents struct {
	StreamID string          `json:"stream_id"`
	Events   []RecordedEvent `json:"events"`
	NextFrom *int64          `json:"next_from"`
}

const (
	defaultEventsLimit = 100
	maxEventsLimit     = 1000
	maxStreamIDLength  = 200
)

func (a *API) streamEvents(w http.ResponseWriter, r *http.Request) {
	stream := chi.URLParam(r, "id")
	v := &orderflow.ValidationError{}
	if stream == "" || len(stream) > maxStreamIDLength || orderflow.StreamCategory(stream) == "" || !eventstore.Storable(stream) {
		v.Add("id", "must be a stream id such as order-<uuid> or sku-<code>")
	}
	from := httpapi.QueryInt(r, "from", 1, 1, 1<<62, v)
	limit := httpapi.QueryInt(r, "limit", defaultEventsLimit, 1, maxEventsLimit, v)
	if err := v.Err(); err != nil {
		httpapi.Error(w, r, a.logger, err)
		return
	}
	recorded, err := a.store.ReadStream(r.Context(), stream, from, int(limit)+1)
	if err != nil {
		httpapi.Error(w, r, a.logger, err)
		return
	}
	out := StreamEvents{StreamID: stream, Events: make([]RecordedEvent, 0, len(recorded))}
	if len(recorded) > int(limit) {
		next := recorded[limit].Version
		out.NextFrom, recorded = &next, recorded[:limit]
	}
	for _, e := range recorded {
		out.Events = append(out.Events, RecordedEvent{
			EventID: e.ID.String(), StreamID: e.StreamID, Version: e.Version, Type: e.Type,
			SchemaVersion: e.SchemaVersion, Data: e.Data, Metadata: e.Metadata, RecordedAt: e.RecordedAt.UTC(),
			Position: e.Position.String(),
		})
	}
	httpapi.JSON(w, http.StatusOK, out)
}
