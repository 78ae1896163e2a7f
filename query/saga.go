package query

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/httpapi"
	"github.com/orderflow/orderflow/projector"
)

// SagaStep is one step of a Saga: an event of the order's order-,
// reservation- or payment- stream. CausationID is the EventID of the step
// that caused it, when a saga participant appended it.
type SagaStep struct {
	StreamID      string    `json:"stream_id"`
	Version       int64     `json:"version"`
	Type          string    `json:"type"`
	RecordedAt    time.Time `json:"recorded_at"`
	EventID       string    `json:"event_id"`
	CorrelationID string    `json:"correlation_id"`
	CausationID   string    `json:"causation_id"`
}

// Saga is the body of GET /v1/orders/{id}/saga: where the order's saga
// stands and its steps, oldest first.
type Saga struct {
	OrderID    string     `json:"order_id"`
	Status     string     `json:"status"`
	Reason     string     `json:"reason"`
	PlacedAt   time.Time  `json:"placed_at"`
	DeadlineAt *time.Time `json:"deadline_at"`
	Inventory  string     `json:"inventory"`
	Payment    string     `json:"payment"`
	Steps      []SagaStep `json:"steps"`
}

func optionalTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func sagaFromView(v *projector.SagaView) Saga {
	s := Saga{
		OrderID: v.OrderID.String(), Status: v.Status, Reason: v.Reason, PlacedAt: v.PlacedAt.UTC(),
		DeadlineAt: optionalTime(v.DeadlineAt), Inventory: v.Inventory, Payment: v.Payment,
		Steps: make([]SagaStep, len(v.Steps)),
	}
	for i, st := range v.Steps {
		s.Steps[i] = SagaStep{StreamID: st.StreamID, Version: st.Version, Type: st.Type, RecordedAt: st.RecordedAt.UTC(),
			EventID: st.EventID, CorrelationID: st.CorrelationID, CausationID: st.CausationID}
	}
	return s
}

// sagaETag names the state of a saga: each field of the view comes from one
// of the order's three streams, so their versions determine it.
func sagaETag(v *projector.SagaView) string {
	return `W/"saga-` + v.OrderID.String() + "-v" + itoa(v.VersionOrder) + "." + itoa(v.VersionReservation) + "." + itoa(v.VersionPayment) + `"`
}

func (a *API) getSaga(w http.ResponseWriter, r *http.Request) {
	v := &orderflow.ValidationError{}
	id, err := orderflow.ParseOrderID("id", chi.URLParam(r, "id"))
	v.Merge(err)
	want := minVersion(r, v)
	if err := v.Err(); err != nil {
		a.fail(w, r, err)
		return
	}
	load := func(ctx context.Context) (*projector.SagaView, error) {
		return projector.LoadSaga(ctx, a.pool, projector.Live, id)
	}
	// min_version is a version of the order stream: the one commands return.
	row, ok := readView(w, r, a, "order "+id.String(), want, load, func(s *projector.SagaView) int64 { return s.VersionOrder })
	switch {
	case !ok:
	case !row.Placed():
		// Steps of the reservation or payment stream may be applied before
		// the OrderPlaced that caused them: no saga to show until it is.
		a.fail(w, r, notFound("saga of order "+id.String()))
	default:
		a.respond(w, r, sagaETag(row), sagaFromView(row))
	}
}

// SagaStateStuck selects the sagas still pending past their deadline.
const SagaStateStuck = "stuck"

// sagaStates are the values GET /v1/sagas accepts for state.
var sagaStates = []string{SagaStateStuck}

// SagaSummary is one saga of a list.
type SagaSummary struct {
	OrderID    string     `json:"order_id"`
	Status     string     `json:"status"`
	PlacedAt   time.Time  `json:"placed_at"`
	DeadlineAt *time.Time `json:"deadline_at"`
	Inventory  string     `json:"inventory"`
	Payment    string     `json:"payment"`
}

// SagaPage is the body of GET /v1/sagas: oldest deadline first, and the
// cursor of the next page (nil on the last page).
type SagaPage struct {
	Sagas      []SagaSummary `json:"sagas"`
	NextCursor *string       `json:"next_cursor"`
}

func (a *API) listSagas(w http.ResponseWriter, r *http.Request) {
	v := &orderflow.ValidationError{}
	if s, ok := single(r, "state", v); ok {
		if !slices.Contains(sagaStates, s) {
			v.Add("state", "must be one of "+strings.Join(sagaStates, ", "))
		}
	} else if _, present := r.URL.Query()["state"]; !present {
		v.Add("state", "is required; one of "+strings.Join(sagaStates, ", "))
	}
	limit := httpapi.QueryInt(r, "limit", DefaultPageLimit, 1, MaxPageLimit, v)
	after := queryCursor(r, cursorSagasV1, v)
	if err := v.Err(); err != nil {
		a.fail(w, r, err)
		return
	}

	// Stuck: the deadline passed (by the database's clock) and the saga has
	// not ended the order. The (status, deadline_at, order_id) index serves
	// the page, after the cursor by a row comparison.
	sql := `select order_id, status, placed_at, deadline_at, inventory, payment from ` +
		projector.Live.Name("saga_orders") + ` where status = $1 and deadline_at < now()`
	args := []any{projector.StatusPending}
	if after != nil {
		args = append(args, after.at, after.orderID)
		sql += fmt.Sprintf(` and (deadline_at, order_id) > ($%d, $%d)`, len(args)-1, len(args))
	}
	args = append(args, limit+1) // one more tells whether there is a next page
	sql += ` order by deadline_at, order_id limit $` + strconv.Itoa(len(args))

	rows, err := a.pool.Query(r.Context(), sql, args...)
	if err != nil {
		a.fail(w, r, fmt.Errorf("list stuck sagas: %w", err))
		return
	}
	type row struct {
		id       uuid.UUID
		deadline time.Time
		SagaSummary
	}
	list, err := pgx.CollectRows(rows, func(rows pgx.CollectableRow) (row, error) {
		var (
			s      row
			placed *time.Time
		)
		err := rows.Scan(&s.id, &s.Status, &placed, &s.deadline, &s.Inventory, &s.Payment)
		if placed != nil {
			s.PlacedAt = placed.UTC()
		}
		s.OrderID, s.DeadlineAt = s.id.String(), optionalTime(s.deadline)
		return s, err
	})
	if err != nil {
		a.fail(w, r, fmt.Errorf("list stuck sagas: %w", err))
		return
	}
	page := SagaPage{Sagas: make([]SagaSummary, 0, min(len(list), int(limit)))}
	if len(list) > int(limit) {
		last := list[limit-1]
		next := cursor{at: last.deadline, orderID: last.id}.encode(cursorSagasV1)
		page.NextCursor, list = &next, list[:limit]
	}
	for _, s := range list {
		page.Sagas = append(page.Sagas, s.SagaSummary)
	}
	a.respond(w, r, "", page)
}
