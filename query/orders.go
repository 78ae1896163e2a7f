package query

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/httpapi"
	"github.com/orderflow/orderflow/projector"
)

// Limits of GET /v1/orders pages.
const (
	DefaultPageLimit = 20
	MaxPageLimit     = 100
)

// OrderSummary is one order of a customer's list.
type OrderSummary struct {
	OrderID    string    `json:"order_id"`
	CustomerID string    `json:"customer_id"`
	Status     string    `json:"status"`
	TotalCents int64     `json:"total_cents"`
	PlacedAt   time.Time `json:"placed_at"`
	Version    int64     `json:"version"`
}

// OrderPage is the body of GET /v1/orders: newest first, and the cursor of
// the next page (nil on the last page).
type OrderPage struct {
	Orders     []OrderSummary `json:"orders"`
	NextCursor *string        `json:"next_cursor"`
}

// statuses are the order statuses a list can be filtered by.
var statuses = []string{projector.StatusPending, projector.StatusConfirmed, projector.StatusRejected, projector.StatusCancelled}

// cursor is a position in a list: the sort key (a time, order_id) of the
// last row of the previous page. In a customer's list, newest first, the
// time is placed_at; in the stuck sagas, oldest deadline first, deadline_at.
// The next page holds the rows strictly after it, so rows inserted meanwhile
// never shift a page, and a row appears at most once.
type cursor struct {
	at      time.Time // microsecond precision, as PostgreSQL stores it
	orderID uuid.UUID
}

// The first byte of a cursor names the list it belongs to and its format, so
// the format can change without old cursors being misread, and a cursor of
// one list is refused by another.
const (
	cursorV1      byte = 1 // GET /v1/orders
	cursorSagasV1 byte = 2 // GET /v1/sagas
	cursorLen          = 1 + 8 + 16
)

// Bounds of a cursor's time: what PostgreSQL's timestamptz and RFC 3339 hold.
var (
	minCursorTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxCursorTime = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
)

// encode encodes c as unpadded base64url of: the list's byte (cursorV1 or
// cursorSagasV1), the time as big-endian Unix microseconds, the 16 bytes of
// order_id.
func (c cursor) encode(list byte) string {
	b := make([]byte, 0, cursorLen)
	b = append(b, list)
	b = binary.BigEndian.AppendUint64(b, uint64(c.at.UnixMicro()))
	b = append(b, c.orderID[:]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// parseCursor decodes a cursor of list made by cursor.encode.
func parseCursor(s string, list byte) (cursor, bool) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != cursorLen || b[0] != list {
		return cursor{}, false
	}
	at := time.UnixMicro(int64(binary.BigEndian.Uint64(b[1:9]))).UTC()
	if at.Before(minCursorTime) || at.After(maxCursorTime) {
		return cursor{}, false
	}
	c := cursor{at: at}
	copy(c.orderID[:], b[9:])
	return c, true
}

// queryCursor reads the optional cursor parameter of list (nil when
// absent), recording a bad one in v.
func queryCursor(r *http.Request, list byte, v *orderflow.ValidationError) *cursor {
	s, ok := single(r, "cursor", v)
	if !ok {
		return nil
	}
	c, valid := parseCursor(s, list)
	if !valid {
		v.Add("cursor", "is not a cursor this API returned; use next_cursor of a previous page")
		return nil
	}
	return &c
}

func (a *API) listOrders(w http.ResponseWriter, r *http.Request) {
	v := &orderflow.ValidationError{}
	var customer orderflow.CustomerID
	if s, ok := single(r, "customer_id", v); ok {
		var err error
		customer, err = orderflow.ParseCustomerID("customer_id", s)
		v.Merge(err)
	} else if _, present := r.URL.Query()["customer_id"]; !present {
		v.Add("customer_id", "is required")
	}
	status, hasStatus := single(r, "status", v)
	if hasStatus && !slices.Contains(statuses, status) {
		v.Add("status", "must be one of pending, confirmed, rejected, cancelled")
	}
	limit := httpapi.QueryInt(r, "limit", DefaultPageLimit, 1, MaxPageLimit, v)
	after := queryCursor(r, cursorV1, v)
	if err := v.Err(); err != nil {
		a.fail(w, r, err)
		return
	}

	sql := `select order_id, customer_id, status, total_cents, placed_at, version from ` +
		projector.Live.Name("orders_by_customer") + ` where customer_id = $1`
	args := []any{string(customer)}
	if hasStatus {
		args = append(args, status)
		sql += ` and status = $` + strconv.Itoa(len(args))
	}
	if after != nil {
		// A row comparison, so the (customer_id, placed_at desc, order_id
		// desc) index serves the page directly.
		args = append(args, after.at, after.orderID)
		sql += fmt.Sprintf(` and (placed_at, order_id) < ($%d, $%d)`, len(args)-1, len(args))
	}
	args = append(args, limit+1) // one more tells whether there is a next page
	sql += ` order by placed_at desc, order_id desc limit $` + strconv.Itoa(len(args))

	rows, err := a.pool.Query(r.Context(), sql, args...)
	if err != nil {
		a.fail(w, r, fmt.Errorf("list orders of %s: %w", customer, err))
		return
	}
	type row struct {
		id uuid.UUID
		OrderSummary
	}
	list, err := pgx.CollectRows(rows, func(rows pgx.CollectableRow) (row, error) {
		var o row
		err := rows.Scan(&o.id, &o.CustomerID, &o.Status, &o.TotalCents, &o.PlacedAt, &o.Version)
		o.OrderID, o.PlacedAt = o.id.String(), o.PlacedAt.UTC()
		return o, err
	})
	if err != nil {
		a.fail(w, r, fmt.Errorf("list orders of %s: %w", customer, err))
		return
	}
	page := OrderPage{Orders: make([]OrderSummary, 0, min(len(list), int(limit)))}
	if len(list) > int(limit) {
		last := list[limit-1]
		next := cursor{at: last.PlacedAt, orderID: last.id}.encode(cursorV1)
		page.NextCursor, list = &next, list[:limit]
	}
	for _, o := range list {
		page.Orders = append(page.Orders, o.OrderSummary)
	}
	a.respond(w, r, "", page)
}
