package projector

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	json "github.com/goccy/go-json"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/orderflow/orderflow"
)

// Projection maintains one read view. Its name is the key of its
// checkpoints and names its consumer groups (see Subscriptions): never
// rename one casually.
type Projection interface {
	// Name identifies the projection.
	Name() string
	// Prefixes are the stream id prefixes of the streams it folds
	// ("order-"); a stream whose id starts with any of them concerns it.
	Prefixes() []string
	// Tables lists the view tables it writes, for rebuilds to shadow.
	Tables() []string
	// ApplyBatch folds events (each stream's in version order) into the
	// tables named by t, inside tx: it loads the rows the events touch,
	// folds them with the projection's pure fold, and writes them back.
	ApplyBatch(ctx context.Context, tx pgx.Tx, t Tables, events []Event) error
	// Snapshot returns the view's rows in t as sorted canonical strings, to
	// compare a live view with a rebuild and with Model.
	Snapshot(ctx context.Context, q Querier, t Tables) ([]string, error)
	// Model folds a whole history in memory (no I/O) into the rows the view
	// must hold, in Snapshot's form.
	Model(events []Event) []string
}

// Tables maps a projection's table names to the live tables or to the
// shadow tables a rebuild fills.
type Tables struct{ suffix string }

// Live names the tables queries read; Shadow the ones a rebuild fills.
var (
	Live   = Tables{}
	Shadow = Tables{suffix: "_rebuild"}
)

// Name returns the quoted physical name of table.
func (t Tables) Name(table string) string { return t.Identifier(table).Sanitize() }

// Identifier returns the physical name of table.
func (t Tables) Identifier(table string) pgx.Identifier { return pgx.Identifier{table + t.suffix} }

// Querier runs queries: a pool, a connection or a transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Wants reports whether events of the stream concern p.
func Wants(p Projection, streamID string) bool {
	for _, prefix := range p.Prefixes() {
		if strings.HasPrefix(streamID, prefix) {
			return true
		}
	}
	return false
}

// wanted returns the events of events that concern p, in their order.
func wanted(p Projection, events []Event) []Event {
	var out []Event
	for _, e := range events {
		if Wants(p, e.StreamID) {
			out = append(out, e)
		}
	}
	return out
}

// All returns every projection orderflow keeps.
func All() []Projection {
	return []Projection{OrderDetails{}, OrdersByCustomer{}, StockLevels{}, DailySales{}, SagaTimeline{}}
}

// ByName returns the projection called name.
func ByName(name string) (Projection, bool) {
	for _, p := range All() {
		if p.Name() == name {
			return p, true
		}
	}
	return nil, false
}

func orderIDOf(streamID string) (orderflow.OrderID, error) {
	return orderflow.ParseOrderID("stream_id", strings.TrimPrefix(streamID, orderflow.OrderStreamPrefix))
}

// byOrder groups events by order id, keeping first-seen order of ids.
func byOrder(events []Event) ([]orderflow.OrderID, map[orderflow.OrderID][]Event, error) {
	var ids []orderflow.OrderID
	groups := map[orderflow.OrderID][]Event{}
	for _, e := range events {
		id, err := orderIDOf(e.StreamID)
		if err != nil {
			return nil, nil, err
		}
		if _, ok := groups[id]; !ok {
			ids = append(ids, id)
		}
		groups[id] = append(groups[id], e)
	}
	return ids, groups, nil
}

// stored returns the ids of ids whose rows may already exist: those whose
// first event in the batch is not their stream's first. A batch holds each
// stream's events in version order from just after its checkpoint (a
// rebuild: from the start of the log), so one starting at version 1 makes
// the row, and looking it up would only cost an index probe that misses.
func stored(ids []orderflow.OrderID, groups map[orderflow.OrderID][]Event) []orderflow.OrderID {
	var out []orderflow.OrderID
	for _, id := range ids {
		if groups[id][0].Version > 1 {
			out = append(out, id)
		}
	}
	return out
}

// keys returns the set of m's keys.
func keys[K comparable, V any](m map[K]V) map[K]bool {
	out := make(map[K]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

// partition splits changed rows into those the view does not have yet
// (fresh: they go in with COPY) and those it loaded (seen: upserted), each
// sorted by order, the order of the table's primary key. Written in index
// order, a large batch touches each index page once instead of at random:
// a rebuild of order_details ran about a fifth faster, and dirtied fewer
// pages for the checkpointer to write after it.
func partition[K comparable, V any](changed []V, loaded map[K]bool, key func(V) K, order func(a, b V) int) (fresh, seen []V) {
	for _, v := range changed {
		if loaded[key(v)] {
			seen = append(seen, v)
		} else {
			fresh = append(fresh, v)
		}
	}
	slices.SortFunc(fresh, order)
	slices.SortFunc(seen, order)
	return fresh, seen
}

// byOrderID orders rows keyed by order id.
func byOrderID(a, b *OrderView) int { return bytes.Compare(a.OrderID[:], b.OrderID[:]) }

// uuids returns ids as query arguments.
func uuids(ids []orderflow.OrderID) []pgtype.UUID {
	out := make([]pgtype.UUID, len(ids))
	for i, id := range ids {
		out[i] = pgUUID(id)
	}
	return out
}

// pgUUID returns id as a query argument. pgx sends it in binary; a
// uuid.UUID would go through its driver.Valuer as text, several times
// slower in a batch of thousands.
func pgUUID(id orderflow.OrderID) pgtype.UUID { return pgtype.UUID{Bytes: id, Valid: true} }

type lineRow struct {
	SKU            string `json:"sku"`
	Quantity       int64  `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

func linesToJSON(lines []orderflow.OrderLine) string {
	rows := make([]lineRow, len(lines))
	for i, l := range lines {
		rows[i] = lineRow{SKU: string(l.SKU), Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents}
	}
	b, _ := json.Marshal(rows) // cannot fail: plain strings and integers
	return string(b)
}

func linesFromJSON(b []byte) ([]orderflow.OrderLine, error) {
	var rows []lineRow
	if err := json.Unmarshal(b, &rows); err != nil {
		return nil, err
	}
	lines := make([]orderflow.OrderLine, len(rows))
	for i, r := range rows {
		lines[i] = orderflow.OrderLine{SKU: orderflow.SKU(r.SKU), Quantity: r.Quantity, UnitPriceCents: r.UnitPriceCents}
	}
	return lines, nil
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// foldOrders folds grouped events into rows (nil rows: none yet) and returns
// the rows of orders that were placed.
func foldOrders(ids []orderflow.OrderID, groups map[orderflow.OrderID][]Event, rows map[orderflow.OrderID]*OrderView) []*OrderView {
	var out []*OrderView
	for _, id := range ids {
		v := rows[id]
		for _, e := range groups[id] {
			v = FoldOrder(v, e)
		}
		rows[id] = v
		if v.OrderID == id {
			out = append(out, v)
		}
	}
	return out
}

// OrderDetails keeps order_details: one row per order.
type OrderDetails struct{}

func (OrderDetails) Name() string       { return "order_details" }
func (OrderDetails) Prefixes() []string { return []string{orderflow.OrderStreamPrefix} }
func (OrderDetails) Tables() []string   { return []string{"order_details"} }

// ApplyBatch folds the events into their orders' rows.
func (OrderDetails) ApplyBatch(ctx context.Context, tx pgx.Tx, t Tables, events []Event) error {
	ids, groups, err := byOrder(events)
	if err != nil {
		return err
	}
	rows, err := loadByOrder(ctx, tx, t, "order_details", orderColumns, stored(ids, groups), byID(scanOrder))
	if err != nil {
		return err
	}
	loaded := keys(rows)
	changed := foldOrders(ids, groups, rows)
	// Orders new to the view go in with COPY, much cheaper than an upsert;
	// the others are upserted.
	fresh, seen := partition(changed, loaded, func(v *OrderView) orderflow.OrderID { return v.OrderID }, byOrderID)
	if len(fresh) > 0 {
		if _, err := tx.CopyFrom(ctx, t.Identifier("order_details"),
			[]string{"order_id", "customer_id", "status", "lines", "total_cents", "placed_at", "updated_at", "cancel_reason", "version"},
			pgx.CopyFromSlice(len(fresh), func(i int) ([]any, error) {
				v := fresh[i]
				return []any{pgUUID(v.OrderID), string(v.CustomerID), v.Status, linesToJSON(v.Lines), v.TotalCents, v.PlacedAt, v.UpdatedAt, v.CancelReason, v.Version}, nil
			})); err != nil {
			return err
		}
	}
	if len(seen) == 0 {
		return nil
	}
	var (
		oid                             []pgtype.UUID
		customer, status, lines, reason []string
		total, version                  []int64
		placed, updated                 []time.Time
	)
	for _, v := range seen {
		oid = append(oid, pgUUID(v.OrderID))
		customer = append(customer, string(v.CustomerID))
		status = append(status, v.Status)
		lines = append(lines, linesToJSON(v.Lines))
		reason = append(reason, v.CancelReason)
		total = append(total, v.TotalCents)
		version = append(version, v.Version)
		placed = append(placed, v.PlacedAt)
		updated = append(updated, v.UpdatedAt)
	}
	_, err = tx.Exec(ctx, `insert into `+t.Name("order_details")+`
		(order_id, customer_id, status, lines, total_cents, placed_at, updated_at, cancel_reason, version)
		select u.order_id, u.customer_id, u.status, u.lines::jsonb, u.total_cents, u.placed_at, u.updated_at, u.cancel_reason, u.version
		from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::timestamptz[], $7::timestamptz[], $8::text[], $9::bigint[])
			as u(order_id, customer_id, status, lines, total_cents, placed_at, updated_at, cancel_reason, version)
		on conflict (order_id) do update set customer_id = excluded.customer_id, status = excluded.status,
			lines = excluded.lines, total_cents = excluded.total_cents, placed_at = excluded.placed_at,
			updated_at = excluded.updated_at, cancel_reason = excluded.cancel_reason, version = excluded.version`,
		oid, customer, status, lines, total, placed, updated, reason, version)
	return err
}

const orderColumns = `order_id, customer_id, status, lines, total_cents, placed_at, updated_at, cancel_reason, version`

func scanOrder(row pgx.Row) (*OrderView, error) {
	var (
		v        OrderView
		id       uuid.UUID
		customer string
		lines    []byte
	)
	if err := row.Scan(&id, &customer, &v.Status, &lines, &v.TotalCents, &v.PlacedAt, &v.UpdatedAt, &v.CancelReason, &v.Version); err != nil {
		return nil, err
	}
	v.OrderID, v.CustomerID = orderflow.OrderID(id), orderflow.CustomerID(customer)
	v.PlacedAt, v.UpdatedAt = v.PlacedAt.UTC(), v.UpdatedAt.UTC()
	var err error
	if v.Lines, err = linesFromJSON(lines); err != nil {
		return nil, fmt.Errorf("order %s: lines: %w", v.OrderID, err)
	}
	return &v, nil
}

// loadByOrder returns the rows of ids in table of t, selecting columns
// (the order id first) and scanning each with scan; without ids it asks
// nothing. The table must have an index leading with order_id.
func loadByOrder[V any](ctx context.Context, q Querier, t Tables, table, columns string, ids []orderflow.OrderID,
	scan func(pgx.Row) (orderflow.OrderID, V, error)) (map[orderflow.OrderID]V, error) {
	out := make(map[orderflow.OrderID]V, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `select `+columns+` from `+t.Name(table)+` where order_id = any($1)`, uuids(ids))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		id, v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out[id] = v
	}
	return out, rows.Err()
}

// byID adapts a scan of an order view to loadByOrder.
func byID(scan func(pgx.Row) (*OrderView, error)) func(pgx.Row) (orderflow.OrderID, *OrderView, error) {
	return func(row pgx.Row) (orderflow.OrderID, *OrderView, error) {
		v, err := scan(row)
		if err != nil {
			return orderflow.OrderID{}, nil, err
		}
		return v.OrderID, v, nil
	}
}

// LoadOrder returns the order's row of order_details, or nil.
func LoadOrder(ctx context.Context, q Querier, t Tables, id orderflow.OrderID) (*OrderView, error) {
	v, err := scanOrder(q.QueryRow(ctx, `select `+orderColumns+` from `+t.Name("order_details")+` where order_id = $1`, uuid.UUID(id)))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load order %s: %w", id, err)
	}
	return v, nil
}

func orderString(v *OrderView) string {
	return fmt.Sprintf("%s|%s|%s|%s|%d|%s|%s|%s|%d", v.OrderID, v.CustomerID, v.Status, linesToJSON(v.Lines),
		v.TotalCents, ts(v.PlacedAt), ts(v.UpdatedAt), v.CancelReason, v.Version)
}

// Snapshot returns every row of order_details.
func (OrderDetails) Snapshot(ctx context.Context, q Querier, t Tables) ([]string, error) {
	rows, err := q.Query(ctx, `select `+orderColumns+` from `+t.Name("order_details"))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		v, err := scanOrder(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, orderString(v))
	}
	slices.Sort(out)
	return out, rows.Err()
}

// Model folds a history into order_details rows.
func (p OrderDetails) Model(events []Event) []string {
	var out []string
	for _, v := range modelOrders(wanted(p, events)) {
		out = append(out, orderString(v))
	}
	slices.Sort(out)
	return out
}

// modelOrders folds the events of order streams in memory.
func modelOrders(events []Event) []*OrderView {
	ids, groups, err := byOrder(events)
	if err != nil {
		return nil
	}
	return foldOrders(ids, groups, map[orderflow.OrderID]*OrderView{})
}

// OrdersByCustomer keeps orders_by_customer: each customer's orders, newest
// first. Its rows hold what its fold needs, so it depends on no other view.
type OrdersByCustomer struct{}

func (OrdersByCustomer) Name() string       { return "orders_by_customer" }
func (OrdersByCustomer) Prefixes() []string { return []string{orderflow.OrderStreamPrefix} }
func (OrdersByCustomer) Tables() []string   { return []string{"orders_by_customer"} }

const customerOrderColumns = `order_id, customer_id, status, total_cents, placed_at, version`

func scanCustomerOrder(row pgx.Row) (*OrderView, error) {
	var (
		v        OrderView
		id       uuid.UUID
		customer string
	)
	if err := row.Scan(&id, &customer, &v.Status, &v.TotalCents, &v.PlacedAt, &v.Version); err != nil {
		return nil, err
	}
	v.OrderID, v.CustomerID, v.PlacedAt = orderflow.OrderID(id), orderflow.CustomerID(customer), v.PlacedAt.UTC()
	return &v, nil
}

// ApplyBatch folds the events into their orders' rows.
func (OrdersByCustomer) ApplyBatch(ctx context.Context, tx pgx.Tx, t Tables, events []Event) error {
	ids, groups, err := byOrder(events)
	if err != nil {
		return err
	}
	rows, err := loadByOrder(ctx, tx, t, "orders_by_customer", customerOrderColumns, stored(ids, groups), byID(scanCustomerOrder))
	if err != nil {
		return err
	}
	loaded := keys(rows)
	changed := foldOrders(ids, groups, rows)
	fresh, seen := partition(changed, loaded, func(v *OrderView) orderflow.OrderID { return v.OrderID }, func(a, b *OrderView) int {
		return cmp.Or(strings.Compare(string(a.CustomerID), string(b.CustomerID)), byOrderID(a, b))
	})
	if len(fresh) > 0 { // new to the view: COPY
		if _, err := tx.CopyFrom(ctx, t.Identifier("orders_by_customer"),
			[]string{"order_id", "customer_id", "status", "total_cents", "placed_at", "version"},
			pgx.CopyFromSlice(len(fresh), func(i int) ([]any, error) {
				v := fresh[i]
				return []any{pgUUID(v.OrderID), string(v.CustomerID), v.Status, v.TotalCents, v.PlacedAt, v.Version}, nil
			})); err != nil {
			return err
		}
	}
	if len(seen) == 0 {
		return nil
	}
	var (
		oid              []pgtype.UUID
		customer, status []string
		total, version   []int64
		placed           []time.Time
	)
	for _, v := range seen {
		oid = append(oid, pgUUID(v.OrderID))
		customer = append(customer, string(v.CustomerID))
		status = append(status, v.Status)
		total = append(total, v.TotalCents)
		version = append(version, v.Version)
		placed = append(placed, v.PlacedAt)
	}
	_, err = tx.Exec(ctx, `insert into `+t.Name("orders_by_customer")+` (order_id, customer_id, status, total_cents, placed_at, version)
		select * from unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::timestamptz[], $6::bigint[])
		on conflict (customer_id, order_id) do update set status = excluded.status, total_cents = excluded.total_cents,
			placed_at = excluded.placed_at, version = excluded.version`,
		oid, customer, status, total, placed, version)
	return err
}

func customerOrderString(v *OrderView) string {
	return fmt.Sprintf("%s|%s|%s|%d|%s|%d", v.CustomerID, v.OrderID, v.Status, v.TotalCents, ts(v.PlacedAt), v.Version)
}

// Snapshot returns every row of orders_by_customer.
func (OrdersByCustomer) Snapshot(ctx context.Context, q Querier, t Tables) ([]string, error) {
	rows, err := q.Query(ctx, `select `+customerOrderColumns+` from `+t.Name("orders_by_customer"))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		v, err := scanCustomerOrder(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, customerOrderString(v))
	}
	slices.Sort(out)
	return out, rows.Err()
}

// Model folds a history into orders_by_customer rows.
func (p OrdersByCustomer) Model(events []Event) []string {
	var out []string
	for _, v := range modelOrders(wanted(p, events)) {
		out = append(out, customerOrderString(v))
	}
	slices.Sort(out)
	return out
}

// StockLevels keeps stock: on hand and reserved per SKU.
type StockLevels struct{}

func (StockLevels) Name() string       { return "stock" }
func (StockLevels) Prefixes() []string { return []string{orderflow.SKUStreamPrefix} }
func (StockLevels) Tables() []string   { return []string{"stock"} }

func skuOf(streamID string) orderflow.SKU {
	return orderflow.SKU(strings.TrimPrefix(streamID, orderflow.SKUStreamPrefix))
}

func foldStocks(events []Event, rows map[orderflow.SKU]*StockView) []*StockView {
	var order []orderflow.SKU
	seen := map[orderflow.SKU]bool{}
	for _, e := range events {
		sku := skuOf(e.StreamID)
		if !seen[sku] {
			seen[sku] = true
			order = append(order, sku)
		}
		rows[sku] = FoldStock(rows[sku], e)
	}
	var out []*StockView
	for _, sku := range order {
		if v := rows[sku]; v.SKU == sku {
			out = append(out, v)
		}
	}
	return out
}

// ApplyBatch folds the events into their SKUs' rows.
func (StockLevels) ApplyBatch(ctx context.Context, tx pgx.Tx, t Tables, events []Event) error {
	var skus []string
	for _, e := range events {
		skus = append(skus, string(skuOf(e.StreamID)))
	}
	rows := map[orderflow.SKU]*StockView{}
	res, err := tx.Query(ctx, `select sku, on_hand, reserved, updated_at, version from `+t.Name("stock")+` where sku = any($1)`, skus)
	if err != nil {
		return err
	}
	for res.Next() {
		var (
			v   StockView
			sku string
		)
		if err := res.Scan(&sku, &v.OnHand, &v.Reserved, &v.UpdatedAt, &v.Version); err != nil {
			res.Close()
			return err
		}
		v.SKU, v.UpdatedAt = orderflow.SKU(sku), v.UpdatedAt.UTC()
		rows[v.SKU] = &v
	}
	res.Close()
	if err := res.Err(); err != nil {
		return err
	}
	changed := foldStocks(events, rows)
	if len(changed) == 0 {
		return nil
	}
	var (
		sku                       []string
		onHand, reserved, version []int64
		updated                   []time.Time
	)
	for _, v := range changed {
		sku = append(sku, string(v.SKU))
		onHand = append(onHand, v.OnHand)
		reserved = append(reserved, v.Reserved)
		version = append(version, v.Version)
		updated = append(updated, v.UpdatedAt)
	}
	_, err = tx.Exec(ctx, `insert into `+t.Name("stock")+` (sku, on_hand, reserved, updated_at, version)
		select * from unnest($1::text[], $2::bigint[], $3::bigint[], $4::timestamptz[], $5::bigint[])
		on conflict (sku) do update set on_hand = excluded.on_hand, reserved = excluded.reserved,
			updated_at = excluded.updated_at, version = excluded.version`,
		sku, onHand, reserved, updated, version)
	return err
}

// LoadStock returns the SKU's row of stock, or nil.
func LoadStock(ctx context.Context, q Querier, t Tables, sku orderflow.SKU) (*StockView, error) {
	v := StockView{SKU: sku}
	err := q.QueryRow(ctx, `select on_hand, reserved, updated_at, version from `+t.Name("stock")+` where sku = $1`, string(sku)).
		Scan(&v.OnHand, &v.Reserved, &v.UpdatedAt, &v.Version)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load stock %s: %w", sku, err)
	}
	v.UpdatedAt = v.UpdatedAt.UTC()
	return &v, nil
}

func stockString(v *StockView) string {
	return fmt.Sprintf("%s|%d|%d|%s|%d", v.SKU, v.OnHand, v.Reserved, ts(v.UpdatedAt), v.Version)
}

// Snapshot returns every row of stock.
func (StockLevels) Snapshot(ctx context.Context, q Querier, t Tables) ([]string, error) {
	rows, err := q.Query(ctx, `select sku, on_hand, reserved, updated_at, version from `+t.Name("stock"))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var (
			v   StockView
			sku string
		)
		if err := rows.Scan(&sku, &v.OnHand, &v.Reserved, &v.UpdatedAt, &v.Version); err != nil {
			return nil, err
		}
		v.SKU = orderflow.SKU(sku)
		out = append(out, stockString(&v))
	}
	slices.Sort(out)
	return out, rows.Err()
}

// Model folds a history into stock rows.
func (p StockLevels) Model(events []Event) []string {
	var out []string
	for _, v := range foldStocks(wanted(p, events), map[orderflow.SKU]*StockView{}) {
		out = append(out, stockString(v))
	}
	slices.Sort(out)
	return out
}

// DailySales keeps daily_sales, and sales_orders, its memory of each order.
type DailySales struct{}

func (DailySales) Name() string       { return "daily_sales" }
func (DailySales) Prefixes() []string { return []string{orderflow.OrderStreamPrefix} }
func (DailySales) Tables() []string   { return []string{"sales_orders", "daily_sales"} }

// foldSales folds grouped events into the orders' memories and returns the
// changed memories and the summed change per day.
func foldSales(ids []orderflow.OrderID, groups map[orderflow.OrderID][]Event, rows map[orderflow.OrderID]*SalesOrder) ([]orderflow.OrderID, map[time.Time]DaySales) {
	days := map[time.Time]DaySales{}
	var changed []orderflow.OrderID
	for _, id := range ids {
		o := rows[id]
		for _, e := range groups[id] {
			var delta DaySales
			o, delta = FoldSales(o, e)
			if !delta.Day.IsZero() {
				d := days[delta.Day]
				d.Day = delta.Day
				days[delta.Day] = d.Add(delta)
			}
		}
		rows[id] = o
		if !o.Day.IsZero() {
			changed = append(changed, id)
		}
	}
	return changed, days
}

// ApplyBatch folds the events into the orders' memories and adds the
// changes to their days.
func (DailySales) ApplyBatch(ctx context.Context, tx pgx.Tx, t Tables, events []Event) error {
	ids, groups, err := byOrder(events)
	if err != nil {
		return err
	}
	rows, err := loadByOrder(ctx, tx, t, "sales_orders", "order_id, day, total_cents, status, version", stored(ids, groups),
		func(row pgx.Row) (orderflow.OrderID, *SalesOrder, error) {
			var (
				o  SalesOrder
				id uuid.UUID
			)
			err := row.Scan(&id, &o.Day, &o.TotalCents, &o.Status, &o.Version)
			o.Day = o.Day.UTC()
			return orderflow.OrderID(id), &o, err
		})
	if err != nil {
		return err
	}
	loaded := keys(rows)
	changed, days := foldSales(ids, groups, rows)
	fresh, seen := partition(changed, loaded, func(id orderflow.OrderID) orderflow.OrderID { return id },
		func(a, b orderflow.OrderID) int { return bytes.Compare(a[:], b[:]) })
	if len(fresh) > 0 { // new to the view: COPY
		if _, err := tx.CopyFrom(ctx, t.Identifier("sales_orders"), []string{"order_id", "day", "total_cents", "status", "version"},
			pgx.CopyFromSlice(len(fresh), func(i int) ([]any, error) {
				o := rows[fresh[i]]
				return []any{pgUUID(fresh[i]), pgtype.Date{Time: o.Day, Valid: true}, o.TotalCents, o.Status, o.Version}, nil
			})); err != nil {
			return err
		}
	}
	if len(seen) > 0 {
		var (
			oid            []pgtype.UUID
			day            []time.Time
			total, version []int64
			status         []string
		)
		for _, id := range seen {
			o := rows[id]
			oid, day, total, status, version = append(oid, pgUUID(id)), append(day, o.Day), append(total, o.TotalCents),
				append(status, o.Status), append(version, o.Version)
		}
		if _, err := tx.Exec(ctx, `insert into `+t.Name("sales_orders")+` (order_id, day, total_cents, status, version)
			select * from unnest($1::uuid[], $2::date[], $3::bigint[], $4::text[], $5::bigint[])
			on conflict (order_id) do update set day = excluded.day, total_cents = excluded.total_cents,
				status = excluded.status, version = excluded.version`, oid, day, total, status, version); err != nil {
			return err
		}
	}
	if len(days) == 0 {
		return nil
	}
	var (
		day                              []time.Time
		placed, placedC, cancel, cancelC []int64
	)
	for _, d := range days {
		day, placed, placedC = append(day, d.Day), append(placed, d.OrdersPlaced), append(placedC, d.PlacedCents)
		cancel, cancelC = append(cancel, d.OrdersCancelled), append(cancelC, d.CancelledCents)
	}
	_, err = tx.Exec(ctx, `insert into `+t.Name("daily_sales")+` as d (day, orders_placed, placed_cents, orders_cancelled, cancelled_cents)
		select * from unnest($1::date[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
		on conflict (day) do update set orders_placed = d.orders_placed + excluded.orders_placed,
			placed_cents = d.placed_cents + excluded.placed_cents,
			orders_cancelled = d.orders_cancelled + excluded.orders_cancelled,
			cancelled_cents = d.cancelled_cents + excluded.cancelled_cents`,
		day, placed, placedC, cancel, cancelC)
	return err
}

func dayString(d DaySales) string {
	return fmt.Sprintf("day|%s|%d|%d|%d|%d", d.Day.Format(time.DateOnly), d.OrdersPlaced, d.PlacedCents, d.OrdersCancelled, d.CancelledCents)
}

func salesOrderString(id orderflow.OrderID, o *SalesOrder) string {
	return fmt.Sprintf("order|%s|%s|%d|%s|%d", id, o.Day.Format(time.DateOnly), o.TotalCents, o.Status, o.Version)
}

// Snapshot returns every row of daily_sales and sales_orders.
func (DailySales) Snapshot(ctx context.Context, q Querier, t Tables) ([]string, error) {
	var out []string
	rows, err := q.Query(ctx, `select day, orders_placed, placed_cents, orders_cancelled, cancelled_cents from `+t.Name("daily_sales"))
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var d DaySales
		if err := rows.Scan(&d.Day, &d.OrdersPlaced, &d.PlacedCents, &d.OrdersCancelled, &d.CancelledCents); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, dayString(d))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = q.Query(ctx, `select order_id, day, total_cents, status, version from `+t.Name("sales_orders"))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			o  SalesOrder
			id uuid.UUID
		)
		if err := rows.Scan(&id, &o.Day, &o.TotalCents, &o.Status, &o.Version); err != nil {
			return nil, err
		}
		out = append(out, salesOrderString(orderflow.OrderID(id), &o))
	}
	slices.Sort(out)
	return out, rows.Err()
}

// Model folds a history into daily_sales and sales_orders rows.
func (p DailySales) Model(events []Event) []string {
	ids, groups, err := byOrder(wanted(p, events))
	if err != nil {
		return nil
	}
	rows := map[orderflow.OrderID]*SalesOrder{}
	changed, days := foldSales(ids, groups, rows)
	var out []string
	for _, id := range changed {
		out = append(out, salesOrderString(id, rows[id]))
	}
	for _, d := range days {
		if d != (DaySales{Day: d.Day}) {
			out = append(out, dayString(d))
		}
	}
	slices.Sort(out)
	return out
}
