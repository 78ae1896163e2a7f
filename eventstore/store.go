package eventstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	json "github.com/goccy/go-json"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/batch"
	"github.com/orderflow/orderflow/internal/latency"
)

// Config tunes a Store. The zero value is usable.
type Config struct {
	// AppendWorkers is how many append transactions may run at once
	// (default 2). Appends arriving while all are busy are batched into the
	// next transaction, so concurrent writers share commits: fewer workers
	// make bigger batches and fewer commits, more workers overlap round
	// trips. On 2 cores, 2 measured best (BENCHMARKS.md).
	AppendWorkers int
	// MaxBatch caps the appends carried by one transaction (default 128).
	MaxBatch int
	// AppendTimeout bounds one append transaction (default 30s).
	AppendTimeout time.Duration
	// PollInterval is how often a tailer polls when no notification wakes
	// it (default 250ms).
	PollInterval time.Duration
	// Channel is the LISTEN/NOTIFY channel for new events (default
	// "orderflow_events").
	Channel string
	// Registerer receives the store's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives unexpected errors; nil discards them.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.AppendWorkers <= 0 {
		c.AppendWorkers = 2
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 128
	}
	if c.AppendTimeout <= 0 {
		c.AppendTimeout = 30 * time.Second
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 250 * time.Millisecond
	}
	if c.Channel == "" {
		c.Channel = "orderflow_events"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Store is the event log. It is safe for concurrent use; Close stops its
// background work.
type Store struct {
	pool *pgxpool.Pool
	cfg  Config

	queue   chan *appendRequest
	reads   *batch.Batcher[readRequest, readResult]
	wake    chan struct{}
	closing chan struct{}
	once    sync.Once
	wg      sync.WaitGroup

	appended   prometheus.Counter
	events     prometheus.Counter
	conflicts  prometheus.Counter
	duplicates prometheus.Counter
	batchSize  prometheus.Histogram
	readSize   prometheus.Histogram
	appendTime prometheus.Histogram // Append: queue, transaction, commit
	txTime     prometheus.Histogram // one append transaction, committed
}

// New returns a Store over pool and starts its append workers and notifier.
func New(pool *pgxpool.Pool, cfg Config) (*Store, error) {
	if pool == nil {
		return nil, errors.New("eventstore: nil pool")
	}
	cfg.setDefaults()
	s := &Store{
		pool:    pool,
		cfg:     cfg,
		queue:   make(chan *appendRequest),
		wake:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		appended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_eventstore_appends_total", Help: "Appends committed.",
		}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_eventstore_events_appended_total", Help: "Events committed.",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_eventstore_conflicts_total", Help: "Appends refused because an expected version did not hold.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_eventstore_duplicate_commands_total", Help: "Appends answered from an earlier command with the same id.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "orderflow_eventstore_append_batch_size", Help: "Appends carried by one append transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 8),
		}),
		readSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "orderflow_eventstore_read_batch_size", Help: "Stream reads served by one query.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 9),
		}),
		appendTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "orderflow_eventstore_append_seconds", Help: "Time from Append to its answer: waiting for an append worker, the transaction and its commit.",
			Buckets: latency.Buckets(),
		}),
		txTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "orderflow_eventstore_append_transaction_seconds", Help: "Time of one append transaction (a batch of appends), to its commit.",
			Buckets: latency.Buckets(),
		}),
	}
	s.reads = batch.New(maxReadBatch, s.readBatch)
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.appended, s.events, s.conflicts, s.duplicates, s.batchSize, s.readSize, s.appendTime, s.txTime, &txAgeCollector{s}} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("eventstore: register metrics: %w", err)
			}
		}
	}
	for range cfg.AppendWorkers {
		s.wg.Go(s.appendWorker)
	}
	s.wg.Go(s.notifier)
	return s, nil
}

// Close stops the workers after the transactions in flight finish. Appends
// after Close fail with ErrClosed. The pool is not closed.
func (s *Store) Close() {
	s.once.Do(func() { close(s.closing) })
	s.wg.Wait()
}

type appendRequest struct {
	payload []byte // one element of the batch array
	events  int
	done    chan appendOutcome
}

type appendOutcome struct {
	res Result
	err error
}

// Append appends a to the log, all or nothing. It returns ErrConcurrency
// (as a *ConflictError) when an expected version does not hold,
// ErrDuplicateCommand with the first Result when the command id was already
// used by the same command, ErrCommandIDReused when it was used by another,
// and ErrInvalidAppend for a malformed append. If ctx ends while the append
// is in flight, the append may still commit.
func (s *Store) Append(ctx context.Context, a Append) (Result, error) {
	payload, err := encodeAppend(a)
	if err != nil {
		return Result{}, err
	}
	events := 0
	for _, st := range a.Streams {
		events += len(st.Events)
	}
	req := &appendRequest{payload: payload, events: events, done: make(chan appendOutcome, 1)}
	start := time.Now()
	select {
	case s.queue <- req:
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case <-s.closing:
		return Result{}, ErrClosed
	}
	select {
	case out := <-req.done:
		s.appendTime.Observe(time.Since(start).Seconds())
		return out.res, out.err
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

func (s *Store) appendWorker() {
	batch := make([]*appendRequest, 0, s.cfg.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case r := <-s.queue:
			batch = append(batch, r)
		case <-s.closing:
			return
		}
	drain:
		for len(batch) < s.cfg.MaxBatch {
			select {
			case r := <-s.queue:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.runBatch(batch)
	}
}

// runBatch appends a batch in one transaction. If the server refused the
// transaction, each append is retried alone so one bad append cannot fail
// others. If the batch was never sent (no connection), each append fails
// with ErrUnavailable: alone, each would wait for the same server in turn. If
// its outcome is unknown (it may have committed), nothing is retried: an
// append that had committed would be told it conflicts with itself. Each
// caller gets ErrOutcomeUnknown instead.
func (s *Store) runBatch(batch []*appendRequest) {
	s.batchSize.Observe(float64(len(batch)))
	start := time.Now()
	outs, err := s.execBatch(batch)
	s.txTime.Observe(time.Since(start).Seconds())
	switch {
	case err == nil:
	case neverSent(err):
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	case refused(err):
		if len(batch) > 1 {
			for _, r := range batch {
				s.runBatch([]*appendRequest{r})
			}
			return
		}
	default:
		err = fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
	}
	wrote := false
	for i, r := range batch {
		if err != nil {
			r.done <- appendOutcome{err: err}
			continue
		}
		if outs[i].err == nil {
			wrote = true
		}
		r.done <- outs[i]
	}
	if wrote {
		s.notify()
	}
}

type batchResult struct {
	Status   string `json:"s"`
	Result   Result `json:"r"`
	Stream   string `json:"stream"`
	Expected int64  `json:"expected"`
	Actual   int64  `json:"actual"`
}

func (s *Store) execBatch(batch []*appendRequest) ([]appendOutcome, error) {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, r := range batch {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(r.payload)
	}
	buf.WriteByte(']')

	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.AppendTimeout)
	defer cancel()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("eventstore: append: %w: %w", errNotSent, err)
	}
	defer conn.Release()
	var raw []byte
	if err := conn.QueryRow(ctx, "select orderflow_append($1::jsonb)", buf.Bytes()).Scan(&raw); err != nil {
		return nil, mapError(fmt.Errorf("eventstore: append: %w", err))
	}
	var results []batchResult
	if err := json.Unmarshal(raw, &results); err != nil || len(results) != len(batch) {
		return nil, fmt.Errorf("eventstore: append: unexpected result %.200s", raw)
	}
	outs := make([]appendOutcome, len(batch))
	for i, r := range results {
		switch r.Status {
		case "ok":
			s.appended.Inc()
			s.events.Add(float64(batch[i].events))
			outs[i] = appendOutcome{res: r.Result}
		case "dup":
			s.duplicates.Inc()
			outs[i] = appendOutcome{res: r.Result, err: ErrDuplicateCommand}
		case "reused":
			outs[i] = appendOutcome{err: ErrCommandIDReused}
		case "conflict":
			s.conflicts.Inc()
			outs[i] = appendOutcome{err: &ConflictError{StreamID: r.Stream, Expected: ExpectedVersion(r.Expected), Actual: r.Actual}}
		default:
			return nil, fmt.Errorf("eventstore: append: unexpected status %q", r.Status)
		}
	}
	return outs, nil
}

// errNotSent marks an append transaction that never reached the server:
// no connection could be had from the pool.
var errNotSent = errors.New("no connection")

// An append transaction that returned an error certainly stored nothing
// when the server refused it (an error of its own: the statement rolled
// back) or when it was never sent (no connection could be had or made, or
// pgx says so). Anything else may have come after the commit.
func refused(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg)
}

func neverSent(err error) bool {
	var connect *pgconn.ConnectError
	return errors.Is(err, errNotSent) || errors.As(err, &connect) || pgconn.SafeToRetry(err)
}

// mapError turns PostgreSQL errors callers branch on into sentinels.
func mapError(err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "23505" { // unique_violation: a writer that bypassed the locks
		return fmt.Errorf("%w: %w", ErrConcurrency, err)
	}
	return err
}

type wireEvent struct {
	ID   uuid.UUID       `json:"id"`
	Type string          `json:"type"`
	SV   int             `json:"sv"`
	Data json.RawMessage `json:"data"`
	Meta Metadata        `json:"meta"`
}

type wireStream struct {
	ID     string      `json:"id"`
	Exp    int64       `json:"exp"`
	Events []wireEvent `json:"events"`
}

type wireAppend struct {
	Cmd     string       `json:"cmd"`
	FP      string       `json:"fp"`
	Streams []wireStream `json:"streams"`
}

// encodeAppend validates a and encodes it as one element of a batch.
func encodeAppend(a Append) ([]byte, error) {
	if len(a.Streams) == 0 {
		return nil, fmt.Errorf("%w: no streams", ErrInvalidAppend)
	}
	if !Storable(a.CommandID) || !Storable(a.Fingerprint) {
		return nil, fmt.Errorf("%w: command id or fingerprint is not valid UTF-8 without NUL", ErrInvalidAppend)
	}
	w := wireAppend{Cmd: a.CommandID, FP: a.Fingerprint, Streams: make([]wireStream, len(a.Streams))}
	seen := make(map[string]bool, len(a.Streams))
	for i, st := range a.Streams {
		switch {
		case st.StreamID == "":
			return nil, fmt.Errorf("%w: empty stream id", ErrInvalidAppend)
		case !Storable(st.StreamID):
			return nil, fmt.Errorf("%w: stream id %q is not valid UTF-8 without NUL", ErrInvalidAppend, st.StreamID)
		case seen[st.StreamID]:
			return nil, fmt.Errorf("%w: stream %s named twice", ErrInvalidAppend, st.StreamID)
		case len(st.Events) == 0:
			return nil, fmt.Errorf("%w: no events for stream %s", ErrInvalidAppend, st.StreamID)
		case st.Expected < Any:
			return nil, fmt.Errorf("%w: expected version %d for stream %s", ErrInvalidAppend, st.Expected, st.StreamID)
		}
		seen[st.StreamID] = true
		ws := wireStream{ID: st.StreamID, Exp: int64(st.Expected), Events: make([]wireEvent, len(st.Events))}
		for j, e := range st.Events {
			if e.Type == "" || !Storable(e.Type) {
				return nil, fmt.Errorf("%w: event without a type, or one not valid UTF-8 without NUL, in stream %s", ErrInvalidAppend, st.StreamID)
			}
			if !json.Valid(e.Data) {
				return nil, fmt.Errorf("%w: event %s in stream %s: data is not JSON", ErrInvalidAppend, e.Type, st.StreamID)
			}
			if !utf8.Valid(e.Data) || escapesNUL(e.Data) {
				return nil, fmt.Errorf("%w: event %s in stream %s: data holds invalid UTF-8 or a NUL character", ErrInvalidAppend, e.Type, st.StreamID)
			}
			if m := e.Metadata; !Storable(m.CorrelationID) || !Storable(m.CausationID) || !Storable(m.CommandID) ||
				!Storable(m.Actor) || !Storable(m.TraceParent) || !Storable(m.TraceState) {
				return nil, fmt.Errorf("%w: event %s in stream %s: metadata is not valid UTF-8 without NUL", ErrInvalidAppend, e.Type, st.StreamID)
			}
			id := e.ID
			if id == uuid.Nil {
				id = uuid.Must(uuid.NewV7())
			}
			sv := e.SchemaVersion
			if sv <= 0 {
				sv = 1
			}
			ws.Events[j] = wireEvent{ID: id, Type: e.Type, SV: sv, Data: e.Data, Meta: e.Metadata}
		}
		w.Streams[i] = ws
	}
	return json.Marshal(w)
}

// Storable reports whether PostgreSQL can store s as text: valid UTF-8
// without NUL. A string it cannot store fails the whole statement it rides
// in, and with it every other append or read batched there.
func Storable(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// escapesNUL reports whether the JSON text b holds the escape \u0000, which
// jsonb refuses: a "\u0000" preceded by an even number of backslashes.
func escapesNUL(b []byte) bool {
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(`\u0000`))
		if j < 0 {
			return false
		}
		j += i
		n := 0
		for k := j - 1; k >= 0 && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return true
		}
		i = j + 1
	}
}

func (s *Store) notify() {
	select {
	case s.wake <- struct{}{}:
	default: // a notification is already due; it covers this append too
	}
}

// notifier sends one NOTIFY per burst of commits, after they committed:
// NOTIFY inside an append transaction would serialise every commit on
// PostgreSQL's notify queue lock.
func (s *Store) notifier() {
	for {
		select {
		case <-s.wake:
		case <-s.closing:
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := s.pool.Exec(ctx, "select pg_notify($1, '')", s.cfg.Channel); err != nil {
			s.cfg.Logger.Warn("eventstore: notify failed; tailers fall back to polling", "err", err)
		}
		cancel()
	}
}

const eventColumns = `seq, tx_id, event_id, stream_id, version, type, schema_version, data, metadata, recorded_at`

// scanEvent scans eventColumns after the destinations in before.
func scanEvent(rows pgx.Rows, before ...any) (Event, error) {
	var (
		e          Event
		data, meta []byte
	)
	// Scanned as bytes: PostgreSQL already validated the jsonb, and
	// json.RawMessage would make pgx validate it again.
	if err := rows.Scan(append(before, &e.Position.Seq, &e.Position.TxID, &e.ID, &e.StreamID, &e.Version, &e.Type,
		&e.SchemaVersion, &data, &meta, &e.RecordedAt)...); err != nil {
		return Event{}, err
	}
	e.Data = data
	if err := json.Unmarshal(meta, &e.Metadata); err != nil {
		return Event{}, fmt.Errorf("metadata of event %s: %w", e.ID, err)
	}
	return e, nil
}

// maxReadBatch is the most stream reads one query serves.
const maxReadBatch = 256

// readTimeout bounds a batch of reads; a caller that stops waiting earlier
// leaves the batch to finish.
const readTimeout = 30 * time.Second

type readRequest struct {
	stream string
	from   int64
	limit  int // 0: all
}

type readResult struct {
	events []Event
	err    error
}

// ReadStream returns the events of streamID from version from on (1 is the
// start), in version order, at most limit of them (0: all). It returns
// ErrNotFound when the stream has no events at all.
//
// Concurrent reads share one query: those that arrive while one runs go
// together in the next (see internal/batch), so a busy saga or projector
// makes a round trip per batch rather than per stream, and a read alone is
// one query as before. A read is served by a query that starts after it
// was asked, so it sees every append that committed before.
func (s *Store) ReadStream(ctx context.Context, streamID string, from int64, limit int) ([]Event, error) {
	if !Storable(streamID) { // no such stream can exist, and the id would fail the batch's query
		return nil, fmt.Errorf("eventstore: read %q: %w", streamID, ErrNotFound)
	}
	r, err := s.reads.Do(ctx, readRequest{stream: streamID, from: max(from, 1), limit: max(limit, 0)})
	if err != nil {
		return nil, fmt.Errorf("eventstore: read %s: %w", streamID, err)
	}
	return r.events, r.err
}

// readBatch serves reads in one query, and tells apart in a second one the
// streams that read nothing from past their start from missing streams.
func (s *Store) readBatch(reqs []readRequest) []readResult {
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	s.readSize.Observe(float64(len(reqs)))
	out := make([]readResult, len(reqs))
	fail := func(err error) []readResult {
		for i := range out {
			out[i] = readResult{err: fmt.Errorf("eventstore: read %s: %w", reqs[i].stream, err)}
		}
		return out
	}
	streams, froms, limits := make([]string, len(reqs)), make([]int64, len(reqs)), make([]int64, len(reqs))
	for i, r := range reqs {
		streams[i], froms[i], limits[i] = r.stream, r.from, int64(r.limit)
	}
	rows, err := s.pool.Query(ctx, `select r.i, e.* from unnest($1::text[], $2::bigint[], $3::bigint[]) with ordinality as r(stream_id, from_version, lim, i)
		cross join lateral (select `+eventColumns+` from events
			where stream_id = r.stream_id and version >= r.from_version order by version limit nullif(r.lim, 0)) e
		order by r.i, e.version`, streams, froms, limits)
	if err != nil {
		return fail(err)
	}
	for rows.Next() {
		var i int64
		e, err := scanEvent(rows, &i)
		if err != nil {
			rows.Close()
			return fail(err)
		}
		out[i-1].events = append(out[i-1].events, e)
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	var past []string
	for i, r := range reqs {
		if len(out[i].events) == 0 && r.from > 1 {
			past = append(past, r.stream)
		}
	}
	exists := map[string]bool{}
	if len(past) > 0 {
		rows, err := s.pool.Query(ctx, `select s from unnest($1::text[]) s where exists (select 1 from events where stream_id = s)`, past)
		if err != nil {
			return fail(err)
		}
		var stream string
		if _, err := pgx.ForEachRow(rows, []any{&stream}, func() error {
			exists[stream] = true
			return nil
		}); err != nil {
			return fail(err)
		}
	}
	for i, r := range reqs {
		if len(out[i].events) == 0 && !exists[r.stream] {
			out[i].err = fmt.Errorf("%w: %s", ErrNotFound, r.stream)
		}
	}
	return out
}

// ReadAll returns up to limit events after position after, in the safe global
// order: only events of transactions older than every transaction still
// running that writes events (orderflow_log_horizon), ordered by
// (transaction id, sequence). An event that commits later always sorts after
// the last position returned, so a reader that resumes from there skips
// nothing, and each stream reads in version order.
func (s *Store) ReadAll(ctx context.Context, after Position, limit int) ([]Event, error) {
	events, _, err := s.readAll(ctx, s.pool, after, limit)
	return events, err
}

// queryer is what readAll reads through: the pool, or in tests a
// transaction whose snapshot they hold.
type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// readAll is ReadAll, and also reports whether the read stopped where a
// tailer should wait (settled: at a writer still running, which notifies
// when it commits, or at the end of the log) rather than at a transaction
// that had already ended, past which the next read goes at once
// (orderflow_log_bound, migration 012).
func (s *Store) readAll(ctx context.Context, q queryer, after Position, limit int) (events []Event, settled bool, err error) {
	if limit <= 0 {
		limit = 1000
	}
	// One row per event, each carrying the bound; no event, one row with
	// the bound alone.
	rows, err := q.Query(ctx, `select b.settled, e.* from orderflow_log_bound() b
		left join lateral (
			select `+eventColumns+` from events
			where (tx_id, seq) > ($1, $2) and tx_id < b.horizon
			order by tx_id, seq
			limit $3) e on true`, after.TxID, after.Seq, limit)
	if err != nil {
		return nil, false, fmt.Errorf("eventstore: read all after %s: %w", after, err)
	}
	defer rows.Close()
	for rows.Next() {
		if rows.RawValues()[1] == nil { // no event: the bound alone, the rest skipped
			dest := make([]any, len(rows.RawValues()))
			dest[0] = &settled
			if err := rows.Scan(dest...); err != nil {
				return nil, false, fmt.Errorf("eventstore: read all after %s: %w", after, err)
			}
			continue
		}
		e, err := scanEvent(rows, &settled)
		if err != nil {
			return nil, false, fmt.Errorf("eventstore: read all after %s: %w", after, err)
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("eventstore: read all after %s: %w", after, err)
	}
	return events, settled, nil
}

// OldestTransactionAge returns how long the oldest transaction writing events
// (orderflow_event_writers) has been open, 0 when none is: tailers read
// nothing it might come before until it ends. Transactions that write no
// events do not hold tailers back (migration 009).
func (s *Store) OldestTransactionAge(ctx context.Context) (time.Duration, error) {
	var secs float64
	err := s.pool.QueryRow(ctx, `select coalesce(extract(epoch from now() - min(xact_start)), 0)::float8
		from orderflow_event_writers`).Scan(&secs)
	if err != nil {
		return 0, fmt.Errorf("eventstore: oldest transaction: %w", err)
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// txAgeCollector exports OldestTransactionAge at scrape time.
type txAgeCollector struct{ s *Store }

var txAgeDesc = prometheus.NewDesc("orderflow_eventstore_oldest_transaction_seconds",
	"Age of the oldest open transaction writing events; tailers wait behind it.", nil, nil)

func (c *txAgeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- txAgeDesc }

func (c *txAgeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	age, err := c.s.OldestTransactionAge(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(txAgeDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(txAgeDesc, prometheus.GaugeValue, age.Seconds())
}

// CommandRecord is what the store kept of a command that appended.
type CommandRecord struct {
	CommandID   string
	Fingerprint string
	Result      Result
	RecordedAt  time.Time
}

// LookupCommand returns the record of a command id that appended, or
// ErrNotFound.
func (s *Store) LookupCommand(ctx context.Context, commandID string) (CommandRecord, error) {
	rec := CommandRecord{CommandID: commandID}
	var raw []byte
	err := s.pool.QueryRow(ctx, `select fingerprint, result, recorded_at from commands where command_id = $1`, commandID).
		Scan(&rec.Fingerprint, &raw, &rec.RecordedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return CommandRecord{}, fmt.Errorf("%w: command %s", ErrNotFound, commandID)
	}
	if err != nil {
		return CommandRecord{}, fmt.Errorf("eventstore: lookup command %s: %w", commandID, err)
	}
	if err := json.Unmarshal(raw, &rec.Result); err != nil {
		return CommandRecord{}, fmt.Errorf("eventstore: lookup command %s: %w", commandID, err)
	}
	return rec, nil
}
