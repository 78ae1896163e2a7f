package projector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/eventstore"
)

// Log is what a rebuild reads: the whole event log in its safe order.
type Log interface {
	ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.Event, error)
}

// Progress reports a rebuild's advance.
type Progress struct {
	Projection string
	Read       int64     // events of the log read so far (all streams)
	Total      int64     // events in the log when the rebuild (re)started, plus Read before it
	Resumed    int64     // of Read, the events an earlier, interrupted run had read
	Started    time.Time // when this run started
	Done       bool
}

// Rate is the events this run has read per second, up to now.
func (pr Progress) Rate(now time.Time) float64 {
	elapsed := now.Sub(pr.Started).Seconds()
	if elapsed <= 0 {
		return 0
	}
	return float64(pr.Read-pr.Resumed) / elapsed
}

// ETA is how long the rest takes at this run's rate so far; false while
// the rate is not known yet.
func (pr Progress) ETA(now time.Time) (time.Duration, bool) {
	rate := pr.Rate(now)
	if rate <= 0 {
		return 0, false
	}
	return time.Duration(float64(max(pr.Total-pr.Read, 0)) / rate * float64(time.Second)), true
}

// RebuildChunk is how many events of the log one rebuild read takes, unless
// EngineConfig says otherwise.
const RebuildChunk = 10_000

// RebuildTxEvents is about how many events of the log one rebuild
// transaction folds, unless EngineConfig says otherwise: the more, the more
// often the touches of one row fold into one write, and the fewer commits.
const RebuildTxEvents = 100_000

// Rebuild replays the event log into p's shadow tables, catches up with the
// live log, and swaps the shadow tables in atomically: queries keep reading
// the old tables until the swap commits. Its position is saved with every
// transaction, so an interrupted rebuild (ctx cancelled, process killed)
// resumes where it stopped when called again. progress, if not nil, is
// called after every transaction.
//
// Reading and decoding run ahead of the writes, on their own goroutine, so
// the database writes one part while the next is read.
//
// One rebuild of a projection runs at a time, across processes: another one
// started meanwhile (from the CLI, the admin API, or a second projector's
// start-up backfill) returns ErrRebuildRunning at once and changes nothing.
// Two would fold the same events into the same shadow tables twice.
func (en *Engine) Rebuild(ctx context.Context, p Projection, log Log, progress func(Progress)) error {
	unlock, err := en.lockRebuild(ctx, p)
	if err != nil {
		return err
	}
	defer unlock()
	pos, read, err := en.startRebuild(ctx, p)
	if err != nil {
		return err
	}
	var remaining int64
	if err := en.pool.QueryRow(ctx, `select count(*) from events where (tx_id, seq) > ($1, $2)`, pos.TxID, pos.Seq).Scan(&remaining); err != nil {
		return fmt.Errorf("rebuild %s: %w", p.Name(), err)
	}
	pr := Progress{Projection: p.Name(), Read: read, Total: read + remaining, Resumed: read, Started: time.Now()}
	report := func() {
		if progress != nil {
			progress(pr)
		}
	}
	report()

	ps, err := loadPoison(ctx, en.pool, p)
	if err != nil {
		return fmt.Errorf("rebuild %s: %w", p.Name(), err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The reader may run a whole transaction ahead: while one transaction
	// writes, the next one's events are read and decoded.
	parts := make(chan replayPart, max(4, 2*en.cfg.RebuildTxEvents/en.cfg.RebuildChunk))
	readErr := make(chan error, 1)
	go func() {
		defer close(parts)
		readErr <- readAhead(ctx, p, log, pos, en.cfg.RebuildChunk, ps, parts)
	}()
	var (
		wanted []Event
		parked []parkedEvent
		n      int64
		last   eventstore.Position
	)
	flush := func() error {
		if n == 0 {
			return nil
		}
		err := pgx.BeginFunc(ctx, en.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, customPlans); err != nil {
				return err
			}
			if err := park(ctx, tx, p, parked); err != nil {
				return err
			}
			if len(wanted) > 0 {
				if err := p.ApplyBatch(ctx, tx, Shadow, wanted); err != nil {
					return err
				}
			}
			_, err := tx.Exec(ctx, `update projection_rebuilds set tx_id = $2, seq = $3, applied = applied + $4, updated_at = now()
				where projection = $1`, p.Name(), last.TxID, last.Seq, n)
			return err
		})
		if err != nil {
			return err
		}
		pos = last
		pr.Read += n
		pr.Total = max(pr.Total, pr.Read)
		wanted, parked, n = nil, nil, 0
		report()
		return nil
	}
	for part := range parts {
		wanted = append(wanted, part.wanted...)
		parked = append(parked, part.parked...)
		n += int64(part.read)
		last = part.last
		if n >= int64(en.cfg.RebuildTxEvents) {
			if err := flush(); err != nil {
				return fmt.Errorf("rebuild %s: %w", p.Name(), err)
			}
		}
	}
	if err := <-readErr; err != nil {
		return fmt.Errorf("rebuild %s: %w", p.Name(), err)
	}
	if err := flush(); err != nil {
		return fmt.Errorf("rebuild %s: %w", p.Name(), err)
	}
	if err := en.swap(ctx, p, log, pos, &pr); err != nil {
		return fmt.Errorf("rebuild %s: %w", p.Name(), err)
	}
	pr.Done = true
	report()
	return nil
}

// poison is what a rebuild does with events that do not decode: it parks
// their stream, as the live projection does, and skips the stream's later
// events, so one bad event cannot stop a rebuild (or the projector's
// start-up backfill). The swap hands the parked streams to the live
// projection; a later rebuild, with a build that reads them, clears them.
type poison struct {
	skip   map[string]bool
	parked []parkedEvent // parked since the last take
}

type parkedEvent struct {
	stream  string
	version int64
	cause   string
}

// ErrRebuildRunning reports that a rebuild of the projection is already
// running, in this process or another.
var ErrRebuildRunning = errors.New("projector: a rebuild of this projection is already running")

// lockRebuild takes p's rebuild lock: a session advisory lock, held on a
// connection of its own until the returned func releases it. If the process
// dies, its session ends and the lock with it. The key is not lockKey's,
// which live applies take (shared) in every transaction.
func (en *Engine) lockRebuild(ctx context.Context, p Projection) (unlock func(), err error) {
	key := "orderflow.projection-rebuild." + p.Name()
	conn, err := en.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("rebuild %s: %w", p.Name(), err)
	}
	var locked bool
	if err := conn.QueryRow(ctx, `select pg_try_advisory_lock(hashtextextended($1, 0))`, key).Scan(&locked); err != nil || !locked {
		conn.Release()
		if err == nil {
			err = ErrRebuildRunning
		}
		return nil, fmt.Errorf("rebuild %s: %w", p.Name(), err)
	}
	return func() {
		// ctx may have ended (an interrupted rebuild): unlock regardless.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, `select pg_advisory_unlock(hashtextextended($1, 0))`, key); err != nil {
			_ = conn.Conn().Close(ctx) // ending the session releases the lock
		}
		conn.Release()
	}, nil
}

// loadPoison returns the streams an interrupted rebuild of p parked already.
func loadPoison(ctx context.Context, q Querier, p Projection) (*poison, error) {
	rows, err := q.Query(ctx, `select stream_id from projection_parked where projection = $1`, parkedKey(p, Shadow))
	if err != nil {
		return nil, err
	}
	streams, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	ps := &poison{skip: map[string]bool{}}
	for _, s := range streams {
		ps.skip[s] = true
	}
	return ps, nil
}

// decodeWanted decodes the events p wants, in their order, leaving out
// parked streams and parking the stream of an event that does not decode.
func (ps *poison) decodeWanted(p Projection, events []eventstore.Event) []Event {
	var out []Event
	for _, r := range events {
		if !Wants(p, r.StreamID) || ps.skip[r.StreamID] {
			continue
		}
		e, err := Decode(r)
		if err != nil {
			ps.skip[r.StreamID] = true
			ps.parked = append(ps.parked, parkedEvent{stream: r.StreamID, version: r.Version, cause: err.Error()})
			continue
		}
		out = append(out, e)
	}
	return out
}

// take returns the streams parked since the last take.
func (ps *poison) take() []parkedEvent {
	out := ps.parked
	ps.parked = nil
	return out
}

// park records parked streams of p's shadow in tx.
func park(ctx context.Context, tx pgx.Tx, p Projection, parked []parkedEvent) error {
	if len(parked) == 0 {
		return nil
	}
	streams, versions, causes := make([]string, len(parked)), make([]int64, len(parked)), make([]string, len(parked))
	for i, k := range parked {
		streams[i], versions[i], causes[i] = k.stream, k.version, k.cause
	}
	_, err := tx.Exec(ctx, `insert into projection_parked (projection, stream_id, version, error)
		select $1, * from unnest($2::text[], $3::bigint[], $4::text[]) on conflict (projection, stream_id) do nothing`,
		parkedKey(p, Shadow), streams, versions, causes)
	return err
}

// replayPart is one read of the log, decoded: the events p wants, the
// streams it parked, how many events the read returned, and the position of
// its last one.
type replayPart struct {
	wanted []Event
	parked []parkedEvent
	read   int
	last   eventstore.Position
}

// readAhead reads the log after pos in full chunks and sends them decoded,
// until a read comes back short: the rest is left to the swap, which applies
// it under the projection's lock.
func readAhead(ctx context.Context, p Projection, log Log, pos eventstore.Position, chunk int, ps *poison, parts chan<- replayPart) error {
	for {
		events, err := log.ReadAll(ctx, pos, chunk)
		if err != nil {
			return err
		}
		if len(events) < chunk {
			return nil
		}
		part := replayPart{read: len(events), last: events[len(events)-1].Position}
		part.wanted = ps.decodeWanted(p, events)
		part.parked = ps.take()
		select {
		case parts <- part:
		case <-ctx.Done():
			return ctx.Err()
		}
		pos = part.last
	}
}

// startRebuild resumes an interrupted rebuild of p, or starts one with empty
// shadow tables.
func (en *Engine) startRebuild(ctx context.Context, p Projection) (eventstore.Position, int64, error) {
	var (
		pos  eventstore.Position
		read int64
	)
	err := pgx.BeginFunc(ctx, en.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `select tx_id, seq, applied from projection_rebuilds where projection = $1`, p.Name()).
			Scan(&pos.TxID, &pos.Seq, &read)
		if err == nil {
			var missing bool
			for _, table := range tables(p) {
				var exists bool
				if err := tx.QueryRow(ctx, `select to_regclass($1) is not null`, Shadow.Name(table)).Scan(&exists); err != nil {
					return err
				}
				missing = missing || !exists
			}
			if !missing {
				return nil // resume
			}
			pos, read = eventstore.Position{}, 0
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		for _, table := range tables(p) {
			if _, err := tx.Exec(ctx, `drop table if exists `+Shadow.Name(table)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `create table `+Shadow.Name(table)+` (like `+Live.Name(table)+` including all)`); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `delete from projection_parked where projection = $1`, parkedKey(p, Shadow)); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `insert into projection_rebuilds (projection) values ($1)
			on conflict (projection) do update set tx_id = 0, seq = 0, applied = 0, started_at = now(), updated_at = now()`, p.Name())
		return err
	})
	if err != nil {
		return eventstore.Position{}, 0, fmt.Errorf("rebuild %s: start: %w", p.Name(), err)
	}
	return pos, read, nil
}

// applyShadow applies the events p wants to its shadow tables and returns
// them, decoded. The events come in version order per stream with no
// repeats, following what the shadow tables hold, so no per-event check is
// needed.
func applyShadow(ctx context.Context, tx pgx.Tx, p Projection, ps *poison, events []eventstore.Event) ([]Event, error) {
	wanted := ps.decodeWanted(p, events)
	if err := park(ctx, tx, p, ps.take()); err != nil || len(wanted) == 0 {
		return nil, err
	}
	return wanted, p.ApplyBatch(ctx, tx, Shadow, wanted)
}

// checkpointShadow sets the shadow checkpoint of each stream of events to
// its last version there.
func checkpointShadow(ctx context.Context, tx pgx.Tx, p Projection, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	var (
		streams  []string
		versions []int64
		last     = map[string]int{}
	)
	for _, e := range events {
		if i, ok := last[e.StreamID]; ok {
			versions[i] = e.Version
			continue
		}
		last[e.StreamID] = len(streams)
		streams, versions = append(streams, e.StreamID), append(versions, e.Version)
	}
	_, err := tx.Exec(ctx, `insert into `+checkpoints(p, Shadow)+` (stream_id, version)
		select * from unnest($1::text[], $2::bigint[])
		on conflict (stream_id) do update set version = excluded.version`, streams, versions)
	return err
}

// swap catches the shadow tables up and swaps them in, in one transaction
// holding the projection's lock exclusively, so no live apply runs during
// it. It records the position the shadow tables hold the whole log up to:
// a stream without a checkpoint row stands at its last version there.
func (en *Engine) swap(ctx context.Context, p Projection, log Log, pos eventstore.Position, pr *Progress) error {
	return pgx.BeginFunc(ctx, en.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, customPlans); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `select pg_advisory_xact_lock(hashtextextended($1, 0))`, lockKey(p.Name())); err != nil {
			return err
		}
		ps, err := loadPoison(ctx, tx, p)
		if err != nil {
			return err
		}
		for { // the rest of the log
			events, err := log.ReadAll(ctx, pos, en.cfg.RebuildChunk)
			if err != nil {
				return err
			}
			if len(events) == 0 {
				break
			}
			if _, err := applyShadow(ctx, tx, p, ps, events); err != nil {
				return err
			}
			pos = events[len(events)-1].Position
			pr.Read += int64(len(events))
		}
		// Events past pos that committed already but are not readable in
		// the log's order yet (an older transaction is still open) may be
		// in the live view: apply them too, with checkpoint rows, so the
		// swap never loses a row the live view had. When the live
		// projection gets them, they are duplicates.
		if err := en.applyBeyond(ctx, tx, p, ps, pos); err != nil {
			return err
		}
		for _, table := range tables(p) {
			old := pgx.Identifier{table + "_old"}.Sanitize()
			for _, stmt := range []string{
				`drop table if exists ` + old,
				`alter table ` + Live.Name(table) + ` rename to ` + pgx.Identifier{table + "_old"}.Sanitize(),
				`alter table ` + Shadow.Name(table) + ` rename to ` + pgx.Identifier{table}.Sanitize(),
				`drop table ` + old,
			} {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return err
				}
			}
		}
		live, shadow := parkedKey(p, Live), parkedKey(p, Shadow)
		if _, err := tx.Exec(ctx, `delete from projection_parked where projection = $1`, live); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `update projection_parked set projection = $1 where projection = $2`, live, shadow); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `delete from projection_rebuilds where projection = $1`, p.Name()); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `insert into projection_builds (projection, replayed_tx_id, replayed_seq) values ($1, $2, $3)
			on conflict (projection) do update set built_at = now(), replayed_tx_id = $2, replayed_seq = $3`, p.Name(), pos.TxID, pos.Seq)
		return err
	})
}

// applyBeyond applies to p's shadow tables, with checkpoint rows, the events
// of p's streams that committed past pos.
func (en *Engine) applyBeyond(ctx context.Context, tx pgx.Tx, p Projection, ps *poison, pos eventstore.Position) error {
	rows, err := tx.Query(ctx, `select stream_id, min(version), max(version) from events
		where (tx_id, seq) > ($1, $2) and stream_id like any($3::text[]) group by stream_id`,
		pos.TxID, pos.Seq, LikePatterns(p))
	if err != nil {
		return err
	}
	type span struct {
		stream   string
		from, to int64
	}
	spans, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (span, error) {
		var s span
		err := row.Scan(&s.stream, &s.from, &s.to)
		return s, err
	})
	if err != nil {
		return err
	}
	for _, s := range spans {
		events, err := en.store.ReadStream(ctx, s.stream, s.from, int(s.to-s.from+1))
		if err != nil {
			return err
		}
		applied, err := applyShadow(ctx, tx, p, ps, events)
		if err != nil {
			return err
		}
		if err := checkpointShadow(ctx, tx, p, applied); err != nil {
			return err
		}
	}
	return nil
}
