package main

import (
	"context"
	"crypto/md5"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/eventstore"
)

const (
	// backlogStreams is how many streams the backlog spreads over; stream
	// s is of category backlogCategories[s%3].
	backlogStreams = 10_000
	// backlogChunk is how many events one backlog transaction inserts.
	backlogChunk = 100_000
)

// backlogCategories and backlogTypes give a stream's category (and so its
// topic) and its events' type; all three bounded contexts get a third.
var (
	backlogCategories = []string{"order", "sku", "payment"}
	backlogTypes      = []string{"OrderPlaced", "StockReserved", "PaymentAuthorized"}
)

// backlogSQL inserts the events lo..hi of the backlog in one statement, so in
// one transaction: event i is version i/streams+1 of stream i%streams, so
// each stream's versions run 1, 2, 3 … in (tx_id, seq) order, as appends
// would leave them. The payload is written in jsonb's own key order and
// spacing, so the text the relay reads back is byte for byte backlogData(i).
const backlogSQL = `
insert into events (event_id, stream_id, version, type, schema_version, data, metadata)
select gen_random_uuid(),
       (array['order','sku','payment'])[1 + s % 3] || '-' || md5('stream' || s)::uuid,
       i / $3::bigint + 1,
       (array['OrderPlaced','StockReserved','PaymentAuthorized'])[1 + s % 3],
       1,
       format('{"sku": "SKU-%s", "note": "relay backlog event number %s", "currency": "EUR", '
              '"order_id": "%s", "quantity": %s, "customer_id": "cust-%s", "unit_price_cents": %s}',
              i % 113, i, md5(i::text)::uuid, 1 + i % 5, i % 997, 1999 + i % 1000)::jsonb,
       jsonb_build_object('correlation_id', gen_random_uuid(),
                          'traceparent', '00-' || md5('t' || i) || '-' || left(md5('s' || i), 16) || '-01')
from generate_series($1::bigint, $2::bigint) as i, lateral (select i % $3::bigint as s) as x
order by i`

// backlogStream returns the stream of backlog event i.
func backlogStream(i int) string {
	s := i % backlogStreams
	return backlogCategories[s%3] + "-" + md5UUID("stream"+strconv.Itoa(s))
}

// backlogData returns the payload of backlog event i: ~200 bytes of JSON,
// exactly the text PostgreSQL returns for the row backlogSQL inserts.
func backlogData(i int) []byte {
	return fmt.Appendf(nil, `{"sku": "SKU-%d", "note": "relay backlog event number %d", "currency": "EUR", `+
		`"order_id": "%s", "quantity": %d, "customer_id": "cust-%d", "unit_price_cents": %d}`,
		i%113, i, md5UUID(strconv.Itoa(i)), 1+i%5, i%997, 1999+i%1000)
}

// backlogEvent returns a synthetic recorded event with the stream, version,
// type, payload and metadata of backlog event i, at an invented position.
func backlogEvent(i int, now time.Time) eventstore.Event {
	s := i % backlogStreams
	t, sp := md5.Sum([]byte("t"+strconv.Itoa(i))), md5.Sum([]byte("s"+strconv.Itoa(i)))
	return eventstore.Event{
		ID:            uuid.New(),
		StreamID:      backlogStream(i),
		Version:       int64(i/backlogStreams + 1),
		Type:          backlogTypes[s%3],
		SchemaVersion: 1,
		Data:          backlogData(i),
		Metadata: eventstore.Metadata{
			CorrelationID: uuid.NewString(),
			TraceParent:   fmt.Sprintf("00-%x-%x-01", t, sp[:8]),
		},
		RecordedAt: now,
		Position:   eventstore.Position{TxID: int64(1000 + i/backlogChunk), Seq: int64(i + 1)},
	}
}

// md5UUID is PostgreSQL's md5(s)::uuid.
func md5UUID(s string) string { return uuid.UUID(md5.Sum([]byte(s))).String() }

// backlog is the log a catch-up run drains.
type backlog struct {
	Events  int64
	Last    eventstore.Position // of the last event
	Took    time.Duration       // to insert and vacuum it
	Streams int64
	Bytes   int64 // of data and metadata as text, for the record
}

// createBacklog inserts n events into the (empty, migrated) database at url
// in transactions of backlogChunk events, vacuums and analyses the table as
// autovacuum eventually would (so it does not start during a measurement),
// and checks that the relay will read exactly what the baseline sends.
func createBacklog(ctx context.Context, url string, n int) (backlog, []string, error) {
	var b backlog
	began := time.Now()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return b, nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for lo := 0; lo < n; lo += backlogChunk {
		hi := min(lo+backlogChunk, n) - 1
		if _, err := conn.Exec(ctx, backlogSQL, lo, hi, backlogStreams); err != nil {
			return b, nil, fmt.Errorf("insert backlog events %d..%d: %w", lo, hi, err)
		}
	}
	if _, err := conn.Exec(ctx, "vacuum (analyze) events"); err != nil {
		return b, nil, fmt.Errorf("vacuum the backlog: %w", err)
	}
	b.Took = time.Since(began)
	err = conn.QueryRow(ctx, `select count(*), count(distinct stream_id),
		sum(octet_length(data::text) + octet_length(metadata::text)) from events`).Scan(&b.Events, &b.Streams, &b.Bytes)
	if err != nil {
		return b, nil, fmt.Errorf("count the backlog: %w", err)
	}
	err = conn.QueryRow(ctx, `select tx_id, seq from events order by tx_id desc, seq desc limit 1`).Scan(&b.Last.TxID, &b.Last.Seq)
	if err != nil {
		return b, nil, fmt.Errorf("last backlog position: %w", err)
	}

	// The baseline's messages are built from backlogEvent: the rows must be
	// the same (a sample; the SQL and Go formulas are the same throughout).
	var problems []string
	if b.Events != int64(n) {
		problems = append(problems, fmt.Sprintf("the backlog holds %d events, want %d", b.Events, n))
	}
	rows, err := conn.Query(ctx, `select seq, stream_id, version, type, data::text from events
		where seq in (1, 2, 3, $1::bigint, $1::bigint + 1, $2::bigint) order by seq`, backlogStreams, n)
	if err != nil {
		return b, nil, err
	}
	for rows.Next() {
		var (
			seq, version int64
			stream, typ  string
			data         string
		)
		if err := rows.Scan(&seq, &stream, &version, &typ, &data); err != nil {
			return b, nil, err
		}
		want := backlogEvent(int(seq-1), time.Time{})
		if stream != want.StreamID || version != want.Version || typ != want.Type || data != string(want.Data) {
			problems = append(problems, fmt.Sprintf("backlog event %d is %s v%d %s %s; the baseline sends %s v%d %s %s",
				seq, stream, version, typ, data, want.StreamID, want.Version, want.Type, want.Data))
		}
	}
	if err := rows.Err(); err != nil {
		return b, nil, err
	}
	return b, problems, nil
}
