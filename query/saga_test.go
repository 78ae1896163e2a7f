package query_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/httpapi"
	"github.com/orderflow/orderflow/projector"
	"github.com/orderflow/orderflow/query"
)

// applySaga writes events into the saga timeline view through the
// projection itself, as the projector would.
func (c *apiClient) applySaga(events ...projector.Event) {
	c.t.Helper()
	err := pgx.BeginFunc(context.Background(), c.pool, func(tx pgx.Tx) error {
		return projector.SagaTimeline{}.ApplyBatch(context.Background(), tx, projector.Live, events)
	})
	if err != nil {
		c.t.Fatal(err)
	}
}

// sagaEvent is an event of one of the order's saga streams as the projector
// decodes it, with a fresh event id and the order's correlation id.
func sagaEvent(stream string, version int64, at time.Time, causation string, payload orderflow.Event) projector.Event {
	id := stream[strings.IndexByte(stream, '-')+1:]
	return projector.Event{StreamID: stream, Version: version, Type: payload.EventType(), RecordedAt: at,
		EventID: uuid.Must(uuid.NewV7()).String(), CorrelationID: "corr-" + id, CausationID: causation, Payload: payload}
}

// placed returns the OrderPlaced event of a new order placed at, with a
// deadline (zero: none).
func placed(at, deadline time.Time) (orderflow.OrderID, projector.Event) {
	id := orderflow.NewOrderID()
	return id, sagaEvent(id.Stream(), 1, at, "", orderflow.OrderPlaced{OrderID: id, CustomerID: "c-1",
		Lines: []orderflow.OrderLine{{SKU: "SKU-1", Quantity: 1, UnitPriceCents: 100}}, TotalCents: 100, PlacedAt: at, DeadlineAt: deadline})
}

func TestGetSaga(t *testing.T) {
	t.Parallel()
	c := MustAPI(t, query.Config{})
	id, place := placed(t0, t0.Add(30*time.Minute))
	reserved := sagaEvent(id.ReservationStream(), 1, t0.Add(time.Second), place.EventID, orderflow.InventoryReserved{OrderID: id, TotalCents: 100})
	captured := sagaEvent(id.PaymentStream(), 1, t0.Add(2*time.Second), reserved.EventID, orderflow.PaymentCaptured{OrderID: id, AmountCents: 100, ChargeID: "ch-1"})
	confirmed := sagaEvent(id.Stream(), 2, t0.Add(3*time.Second), captured.EventID, orderflow.OrderConfirmed{OrderID: id, ConfirmedAt: t0.Add(3 * time.Second)})
	// Recorded at the same instant as the confirmation: stream id breaks the tie.
	committed := sagaEvent(id.ReservationStream(), 2, t0.Add(3*time.Second), confirmed.EventID, orderflow.InventoryCommitted{OrderID: id})
	// Applied out of order across streams, as three topics deliver them.
	c.applySaga(captured)
	c.applySaga(reserved, committed)
	c.applySaga(place, confirmed)

	path := "/v1/orders/" + id.String() + "/saga"
	res := c.mustOK(path)
	var got query.Saga
	res.decode(t, &got)
	deadline := t0.Add(30 * time.Minute)
	want := query.Saga{OrderID: id.String(), Status: "confirmed", PlacedAt: t0, DeadlineAt: &deadline,
		Inventory: "committed", Payment: "captured"}
	for _, e := range []projector.Event{place, reserved, captured, confirmed, committed} {
		want.Steps = append(want.Steps, query.SagaStep{StreamID: e.StreamID, Version: e.Version, Type: e.Type, RecordedAt: e.RecordedAt,
			EventID: e.EventID, CorrelationID: e.CorrelationID, CausationID: e.CausationID})
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("saga =\n%+v\nwant\n%+v", got, want)
	}
	if got.DeadlineAt == nil || !got.DeadlineAt.Equal(deadline) {
		t.Fatalf("deadline_at = %v, want %v", got.DeadlineAt, deadline)
	}
	etag := res.header.Get("ETag")
	if want := `W/"saga-` + id.String() + `-v2.2.1"`; etag != want {
		t.Fatalf("ETag = %q, want %q", etag, want)
	}
	if res := c.get(path, "If-None-Match", etag); res.status != http.StatusNotModified || len(res.body) != 0 {
		t.Fatalf("If-None-Match %s: %d %q", etag, res.status, res.body)
	}
	res = c.mustOK(path + "?min_version=2")
	if res.header.Get("ETag") != etag {
		t.Fatalf("min_version reached: ETag %q, want %q", res.header.Get("ETag"), etag)
	}

	// A pending order without a deadline: deadline_at is null, the
	// participants' states are empty.
	open, openPlace := placed(t0, time.Time{})
	c.applySaga(openPlace)
	res = c.mustOK("/v1/orders/" + open.String() + "/saga")
	if !strings.Contains(string(res.body), `"deadline_at":null`) || !strings.Contains(string(res.body), `"inventory":"","payment":""`) {
		t.Fatalf("pending saga = %s", res.body)
	}

	// Unknown order; and an order whose reservation arrived before its
	// OrderPlaced: both 404.
	early := orderflow.NewOrderID()
	c.applySaga(sagaEvent(early.ReservationStream(), 1, t0, "", orderflow.InventoryReserved{OrderID: early}))
	for _, missing := range []string{uuid.Must(uuid.NewV7()).String(), early.String()} {
		res := c.get("/v1/orders/" + missing + "/saga")
		if res.status != http.StatusNotFound || res.header.Get("Content-Type") != httpapi.ProblemContentType {
			t.Fatalf("saga of %s: %d %s", missing, res.status, res.body)
		}
	}
}

func TestGetSagaMinVersion(t *testing.T) {
	t.Parallel()
	c := MustAPI(t, query.Config{})
	id, place := placed(t0, t0.Add(time.Hour))
	c.applySaga(place)

	// The view holds version 1 of the order stream; the read waits for 2.
	res := c.mustAwait("/v1/orders/"+id.String()+"/saga?min_version=2",
		c.later(sql(`update saga_orders set status = 'cancelled', reason = 'timeout', version_order = 2 where order_id = $1`, uuid.UUID(id))))
	var got query.Saga
	res.decode(t, &got)
	if got.Status != "cancelled" || got.Reason != "timeout" {
		t.Fatalf("saga = %s", res.body)
	}

	// A saga the view does not hold yet appears while the read waits.
	fresh, freshPlace := placed(t0, time.Time{})
	// The row and its step in one statement: the projection commits them together.
	res = c.mustAwait("/v1/orders/"+fresh.String()+"/saga?min_version=1", c.later(
		sql(`with o as (insert into saga_orders (order_id, status, placed_at, updated_at, version_order) values ($1, 'pending', $3, $3, 1))
			insert into saga_steps (order_id, stream_id, version, event_type, recorded_at, event_id) values ($1, $2, 1, 'OrderPlaced', $3, $4)`,
			uuid.UUID(fresh), fresh.Stream(), freshPlace.RecordedAt, freshPlace.EventID)))
	res.decode(t, &got)
	if got.OrderID != fresh.String() || len(got.Steps) != 1 {
		t.Fatalf("fresh saga = %s", res.body)
	}

	// Past the bound: 412, naming what the view holds.
	bounded := MustAPI(t, query.Config{MinVersionWait: 100 * time.Millisecond})
	bounded.applySaga(place)
	for path, detail := range map[string]string{
		"/v1/orders/" + id.String() + "/saga?min_version=3":                      "holds version 1 of order " + id.String(),
		"/v1/orders/" + uuid.Must(uuid.NewV7()).String() + "/saga?min_version=1": "has no order",
	} {
		res := bounded.get(path)
		if res.status != http.StatusPreconditionFailed || res.header.Get("Retry-After") != "1" {
			t.Fatalf("%s: %d %s, want 412 with Retry-After", path, res.status, res.body)
		}
		var prob httpapi.Problem
		res.decode(t, &prob)
		if prob.Type != "urn:orderflow:problem:view-behind" || !strings.Contains(prob.Detail, detail) {
			t.Fatalf("%s: problem %s, want view-behind mentioning %q", path, res.body, detail)
		}
	}
}

func TestListStuckSagas(t *testing.T) {
	t.Parallel()
	c := MustAPI(t, query.Config{})
	now := time.Now().UTC().Truncate(time.Microsecond)

	// Empty to begin with.
	res := c.mustOK("/v1/sagas?state=stuck")
	if want := `{"sagas":[],"next_cursor":null}`; strings.TrimSpace(string(res.body)) != want {
		t.Fatalf("no stuck sagas = %s, want %s", res.body, want)
	}

	type fixture struct {
		id        orderflow.OrderID
		deadline  time.Time
		inventory string
	}
	var stuck []fixture
	place := func(deadline time.Time, more ...func(orderflow.OrderID, projector.Event) projector.Event) orderflow.OrderID {
		id, e := placed(now.Add(-3*time.Hour), deadline)
		events := []projector.Event{e}
		for _, m := range more {
			events = append(events, m(id, e))
		}
		c.applySaga(events...)
		return id
	}
	reserve := func(id orderflow.OrderID, cause projector.Event) projector.Event {
		return sagaEvent(id.ReservationStream(), 1, now.Add(-150*time.Minute), cause.EventID, orderflow.InventoryReserved{OrderID: id})
	}
	confirm := func(id orderflow.OrderID, cause projector.Event) projector.Event {
		return sagaEvent(id.Stream(), 2, now.Add(-2*time.Hour), cause.EventID, orderflow.OrderConfirmed{OrderID: id})
	}
	// Stuck: pending past the deadline; three share a deadline, so order_id
	// breaks the tie.
	for _, d := range []time.Duration{-90 * time.Minute, -time.Hour, -time.Hour, -time.Hour, -time.Second} {
		f := fixture{deadline: now.Add(d)}
		if len(stuck)%2 == 0 {
			f.id, f.inventory = place(f.deadline, reserve), "reserved"
		} else {
			f.id = place(f.deadline)
		}
		stuck = append(stuck, f)
	}
	slices.SortFunc(stuck, func(a, b fixture) int {
		if c := a.deadline.Compare(b.deadline); c != 0 {
			return c
		}
		return strings.Compare(a.id.String(), b.id.String())
	})
	// Not stuck: a deadline still ahead, ended with its deadline past, no
	// deadline, or not placed as far as the view knows.
	place(now.Add(time.Hour))
	place(now.Add(-time.Hour), confirm)
	place(time.Time{})
	early := orderflow.NewOrderID()
	c.applySaga(sagaEvent(early.ReservationStream(), 1, now, "", orderflow.InventoryReserved{OrderID: early}))

	res = c.mustOK("/v1/sagas?state=stuck")
	var page query.SagaPage
	res.decode(t, &page)
	if len(page.Sagas) != len(stuck) || page.NextCursor != nil {
		t.Fatalf("stuck sagas = %s, want %d on one page", res.body, len(stuck))
	}
	for i, s := range page.Sagas {
		f := stuck[i]
		if s.OrderID != f.id.String() || s.Status != "pending" || s.DeadlineAt == nil || !s.DeadlineAt.Equal(f.deadline) ||
			!s.PlacedAt.Equal(now.Add(-3*time.Hour)) || s.Inventory != f.inventory || s.Payment != "" {
			t.Fatalf("saga %d = %+v, want %+v", i, s, f)
		}
	}

	// Walk the pages two at a time: the same sagas, none twice, none skipped.
	var (
		seen  []string
		sizes []int
		path  = "/v1/sagas?state=stuck&limit=2"
	)
	for range 10 {
		res := c.mustOK(path)
		res.decode(t, &page)
		sizes = append(sizes, len(page.Sagas))
		for _, s := range page.Sagas {
			seen = append(seen, s.OrderID)
		}
		if page.NextCursor == nil {
			break
		}
		path = "/v1/sagas?state=stuck&limit=2&cursor=" + *page.NextCursor
	}
	var want []string
	for _, f := range stuck {
		want = append(want, f.id.String())
	}
	if !slices.Equal(sizes, []int{2, 2, 1}) || !slices.Equal(seen, want) {
		t.Fatalf("walked %v in pages of %v, want %v in pages of [2 2 1]", seen, sizes, want)
	}

	// The list's ETag follows its content.
	etag := c.mustOK("/v1/sagas?state=stuck").header.Get("ETag")
	if res := c.get("/v1/sagas?state=stuck", "If-None-Match", etag); res.status != http.StatusNotModified {
		t.Fatalf("If-None-Match %s: %d", etag, res.status)
	}
	c.applySaga(confirm(stuck[0].id, projector.Event{}))
	res = c.mustOK("/v1/sagas?state=stuck")
	res.decode(t, &page)
	if res.header.Get("ETag") == etag || len(page.Sagas) != len(stuck)-1 || page.Sagas[0].OrderID != stuck[1].id.String() {
		t.Fatalf("after confirming the oldest: ETag %q (was %q), %s", res.header.Get("ETag"), etag, res.body)
	}
}

func TestSagaCursorsBelongToTheirList(t *testing.T) {
	t.Parallel()
	c := MustAPI(t, query.Config{})
	for range 2 {
		c.insertOrder(newOrder("c-1", t0))
		_, e := placed(t0, time.Now().Add(-time.Hour))
		c.applySaga(e)
	}
	var orders query.OrderPage
	c.mustOK("/v1/orders?customer_id=c-1&limit=1").decode(t, &orders)
	var sagas query.SagaPage
	c.mustOK("/v1/sagas?state=stuck&limit=1").decode(t, &sagas)
	if orders.NextCursor == nil || sagas.NextCursor == nil {
		t.Fatal("want a next page of both lists")
	}
	for _, path := range []string{
		"/v1/sagas?state=stuck&cursor=" + *orders.NextCursor,
		"/v1/orders?customer_id=c-1&cursor=" + *sagas.NextCursor,
	} {
		if res := c.get(path); res.status != http.StatusBadRequest {
			t.Fatalf("GET %s: %d %s, want 400", path, res.status, res.body)
		}
	}
}
