package projector

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/orderflow/orderflow"
)

// SagaTimeline keeps saga_orders (where each order's saga stands) and
// saga_steps (every event of its order-, reservation- and payment- streams).
// The sku- streams are left out: the reservation stream's Inventory* events
// summarize what happened to them for the order.
type SagaTimeline struct{}

func (SagaTimeline) Name() string { return "saga_timeline" }
func (SagaTimeline) Prefixes() []string {
	return []string{orderflow.OrderStreamPrefix, orderflow.ReservationStreamPrefix, orderflow.PaymentStreamPrefix}
}
func (SagaTimeline) Tables() []string { return []string{"saga_orders", "saga_steps"} }

// sagaOrderOf returns the order whose saga a stream belongs to.
func sagaOrderOf(streamID string) (orderflow.OrderID, error) {
	for _, prefix := range (SagaTimeline{}).Prefixes() {
		if rest, ok := strings.CutPrefix(streamID, prefix); ok {
			return orderflow.ParseOrderID("stream_id", rest)
		}
	}
	return orderflow.OrderID{}, orderflow.Invalid("stream_id", "is not a stream of an order's saga")
}

// bySaga groups events by the order whose saga they belong to, keeping
// first-seen order of ids.
func bySaga(events []Event) ([]orderflow.OrderID, map[orderflow.OrderID][]Event, error) {
	var ids []orderflow.OrderID
	groups := map[orderflow.OrderID][]Event{}
	for _, e := range events {
		id, err := sagaOrderOf(e.StreamID)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", e.StreamID, err)
		}
		if _, ok := groups[id]; !ok {
			ids = append(ids, id)
		}
		groups[id] = append(groups[id], e)
	}
	return ids, groups, nil
}

// foldSagas folds grouped events into rows (nil rows: none yet).
func foldSagas(ids []orderflow.OrderID, groups map[orderflow.OrderID][]Event, rows map[orderflow.OrderID]*SagaView) {
	for _, id := range ids {
		v := rows[id]
		if v == nil {
			v = &SagaView{OrderID: id}
		}
		for _, e := range groups[id] {
			v = FoldSaga(v, e)
		}
		rows[id] = v
	}
}

func sagaColumns(alias string) string {
	cols := []string{"order_id", "status", "reason", "placed_at", "deadline_at", "updated_at", "inventory", "payment",
		"version_order", "version_reservation", "version_payment"}
	for i, c := range cols {
		cols[i] = alias + c
	}
	return strings.Join(cols, ", ")
}

// scanSaga scans the columns of sagaColumns, then dest.
func scanSaga(row pgx.Row, dest ...any) (*SagaView, error) {
	var (
		v                SagaView
		id               uuid.UUID
		placed, deadline *time.Time
	)
	err := row.Scan(append([]any{&id, &v.Status, &v.Reason, &placed, &deadline, &v.UpdatedAt, &v.Inventory, &v.Payment,
		&v.VersionOrder, &v.VersionReservation, &v.VersionPayment}, dest...)...)
	if err != nil {
		return nil, err
	}
	v.OrderID, v.UpdatedAt = orderflow.OrderID(id), v.UpdatedAt.UTC()
	if placed != nil {
		v.PlacedAt = placed.UTC()
	}
	if deadline != nil {
		v.DeadlineAt = deadline.UTC()
	}
	return &v, nil
}

// fresh reports whether a row holds nothing yet: the placeholder ApplyBatch
// inserts for an order it has never seen. Every event applied sets the
// version of its stream, so a committed row is never fresh.
func (v *SagaView) fresh() bool {
	return v.VersionOrder == 0 && v.VersionReservation == 0 && v.VersionPayment == 0
}

func timestamptz(t time.Time) pgtype.Timestamptz {
	return pgtype.Timestamptz{Time: t, Valid: !t.IsZero()}
}

// ApplyBatch folds the events into their orders' rows and adds their steps.
// The order-, reservation- and payment- streams of an order arrive on
// different topics and are applied concurrently, so it locks the rows before
// reading them (creating a placeholder for an order it has not seen): two
// streams of one order never fold onto the same stale row.
func (SagaTimeline) ApplyBatch(ctx context.Context, tx pgx.Tx, t Tables, events []Event) error {
	ids, groups, err := bySaga(events)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	locking := slices.Clone(ids) // in one order, so concurrent batches cannot deadlock
	slices.SortFunc(locking, func(a, b orderflow.OrderID) int { return strings.Compare(a.String(), b.String()) })
	res, err := tx.Query(ctx, `insert into `+t.Name("saga_orders")+` as o (order_id)
		select id from unnest($1::uuid[]) with ordinality as u(id, n) order by n
		on conflict (order_id) do update set version_order = o.version_order
		returning `+sagaColumns("o."), uuids(locking))
	if err != nil {
		return err
	}
	rows := map[orderflow.OrderID]*SagaView{}
	for res.Next() {
		v, err := scanSaga(res)
		if err != nil {
			res.Close()
			return err
		}
		if !v.fresh() {
			rows[v.OrderID] = v
		}
	}
	res.Close()
	if err := res.Err(); err != nil {
		return err
	}
	foldSagas(ids, groups, rows)

	var (
		oid                                []pgtype.UUID
		status, reason, inventory, payment []string
		placed, deadline                   []pgtype.Timestamptz
		updated                            []time.Time
		vOrder, vReservation, vPayment     []int64

		sOrder                               []pgtype.UUID
		sStream, sType, sEvent, sCorr, sCaus []string
		sVersion                             []int64
		sAt                                  []time.Time
	)
	for _, id := range ids {
		v := rows[id]
		oid, status, reason = append(oid, pgUUID(id)), append(status, v.Status), append(reason, v.Reason)
		placed, deadline, updated = append(placed, timestamptz(v.PlacedAt)), append(deadline, timestamptz(v.DeadlineAt)), append(updated, v.UpdatedAt)
		inventory, payment = append(inventory, v.Inventory), append(payment, v.Payment)
		vOrder, vReservation, vPayment = append(vOrder, v.VersionOrder), append(vReservation, v.VersionReservation), append(vPayment, v.VersionPayment)
		for _, s := range v.Steps {
			sOrder, sStream, sVersion, sType, sAt = append(sOrder, pgUUID(id)), append(sStream, s.StreamID), append(sVersion, s.Version),
				append(sType, s.Type), append(sAt, s.RecordedAt)
			sEvent, sCorr, sCaus = append(sEvent, s.EventID), append(sCorr, s.CorrelationID), append(sCaus, s.CausationID)
		}
	}
	if _, err := tx.Exec(ctx, `update `+t.Name("saga_orders")+` as o set status = u.status, reason = u.reason,
			placed_at = u.placed_at, deadline_at = u.deadline_at, updated_at = u.updated_at, inventory = u.inventory,
			payment = u.payment, version_order = u.version_order, version_reservation = u.version_reservation,
			version_payment = u.version_payment
		from unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::timestamptz[],
			$7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::bigint[])
			as u(order_id, status, reason, placed_at, deadline_at, updated_at, inventory, payment,
				version_order, version_reservation, version_payment)
		where o.order_id = u.order_id`,
		oid, status, reason, placed, deadline, updated, inventory, payment, vOrder, vReservation, vPayment); err != nil {
		return err
	}
	if len(sOrder) == 0 {
		return nil
	}
	_, err = tx.Exec(ctx, `insert into `+t.Name("saga_steps")+`
		(order_id, stream_id, version, event_type, recorded_at, event_id, correlation_id, causation_id)
		select * from unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::timestamptz[], $6::text[], $7::text[], $8::text[])
		on conflict (order_id, stream_id, version) do nothing`,
		sOrder, sStream, sVersion, sType, sAt, sEvent, sCorr, sCaus)
	return err
}

// LoadSaga returns the order's saga with every step, ordered as SortSteps
// orders them, or nil when the view holds nothing of the order. The row and
// its steps are read in one statement, so they agree with each other.
func LoadSaga(ctx context.Context, q Querier, t Tables, id orderflow.OrderID) (*SagaView, error) {
	rows, err := q.Query(ctx, `select `+sagaColumns("o.")+`, coalesce(s.stream_id, ''), coalesce(s.version, 0),
			coalesce(s.event_type, ''), coalesce(s.recorded_at, o.updated_at), coalesce(s.event_id, ''),
			coalesce(s.correlation_id, ''), coalesce(s.causation_id, '')
		from `+t.Name("saga_orders")+` o left join `+t.Name("saga_steps")+` s on s.order_id = o.order_id
		where o.order_id = $1
		order by s.recorded_at, s.stream_id collate "C", s.version`, uuid.UUID(id))
	if err != nil {
		return nil, fmt.Errorf("load saga of %s: %w", id, err)
	}
	defer rows.Close()
	var v *SagaView
	for rows.Next() {
		var s SagaStep
		row, err := scanSaga(rows, &s.StreamID, &s.Version, &s.Type, &s.RecordedAt, &s.EventID, &s.CorrelationID, &s.CausationID)
		if err != nil {
			return nil, fmt.Errorf("load saga of %s: %w", id, err)
		}
		if v == nil {
			v = row
		}
		if s.Version > 0 {
			s.RecordedAt = s.RecordedAt.UTC()
			v.Steps = append(v.Steps, s)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load saga of %s: %w", id, err)
	}
	return v, nil
}

// us is t at the microsecond precision PostgreSQL keeps (pgx truncates).
func us(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return ts(t.Truncate(time.Microsecond))
}

func sagaString(v *SagaView) string {
	return fmt.Sprintf("order|%s|%s|%s|%s|%s|%s|%s|%s|%d|%d|%d", v.OrderID, v.Status, v.Reason, us(v.PlacedAt), us(v.DeadlineAt),
		us(v.UpdatedAt), v.Inventory, v.Payment, v.VersionOrder, v.VersionReservation, v.VersionPayment)
}

func sagaStepString(id orderflow.OrderID, s SagaStep) string {
	return fmt.Sprintf("step|%s|%s|%d|%s|%s|%s|%s|%s", id, s.StreamID, s.Version, s.Type, us(s.RecordedAt), s.EventID,
		s.CorrelationID, s.CausationID)
}

// Snapshot returns every row of saga_orders and saga_steps.
func (SagaTimeline) Snapshot(ctx context.Context, q Querier, t Tables) ([]string, error) {
	var out []string
	rows, err := q.Query(ctx, `select `+sagaColumns("")+` from `+t.Name("saga_orders"))
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		v, err := scanSaga(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, sagaString(v))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = q.Query(ctx, `select order_id, stream_id, version, event_type, recorded_at, event_id, correlation_id, causation_id
		from `+t.Name("saga_steps"))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			s  SagaStep
			id uuid.UUID
		)
		if err := rows.Scan(&id, &s.StreamID, &s.Version, &s.Type, &s.RecordedAt, &s.EventID, &s.CorrelationID, &s.CausationID); err != nil {
			return nil, err
		}
		out = append(out, sagaStepString(orderflow.OrderID(id), s))
	}
	slices.Sort(out)
	return out, rows.Err()
}

// Model folds a history into saga_orders and saga_steps rows. Events of a
// stream that names no order are left out: live, they park their stream.
func (p SagaTimeline) Model(events []Event) []string {
	var keep []Event
	for _, e := range wanted(p, events) {
		if _, err := sagaOrderOf(e.StreamID); err == nil {
			keep = append(keep, e)
		}
	}
	ids, groups, err := bySaga(keep)
	if err != nil {
		return nil
	}
	rows := map[orderflow.OrderID]*SagaView{}
	foldSagas(ids, groups, rows)
	var out []string
	for _, id := range ids {
		v := rows[id]
		out = append(out, sagaString(v))
		for _, s := range v.Steps {
			out = append(out, sagaStepString(id, s))
		}
	}
	slices.Sort(out)
	return out
}
