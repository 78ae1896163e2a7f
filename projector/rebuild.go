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
	Read       int64 // events of the log read so far (all streams)
	Total      int64 // events in the log when the rebuild (re)started, plus Read before it
	Started    time.Time
	Done       bool
}

// RebuildChunk is how many events of the log one rebuild transaction reads.
const RebuildChunk = 10_000

// Rebuild replays the event log into p's shadow tables, catches up with the
// live log, and swaps the shadow tables in atomically: queries keep reading
// the old tables until the swap commits. Its position is saved with every
// chunk, so an interrupted rebuild (ctx cancelled, process killed) resumes
// where it stopped when called again. progress, if not nil, is called after
// every chunk.
func (en *Engine) Rebuild(ctx context.Context, p Projection, log Log, progress func(Progress)) error {
	pos, read, err := en.startRebuild(ctx, p)
	if err != nil {
		return err
	}
	var remaining int64
	if err := en.pool.QueryRow(ctx, `select count(*) from events where (tx_id, seq) > ($1, $2)`, pos.TxID, pos.Seq).Scan(&remaining); err != nil {
		return fmt.Errorf("rebuild %s: %w", p.Name(), err)
	}
	pr := Progress{Projection: p.Name(), Read: read, Total: read + remaining, Started: time.Now()}
	report := func() {
		if progress != nil {
			progress(pr)
		}
	}
	report()
	for {
		events, err := log.ReadAll(ctx, pos, RebuildChunk)
		if err != nil {
			return fmt.Errorf("rebuild %s: %w", p.Name(), err)
		}
		if len(events) < RebuildChunk {
			break // nearly caught up: the rest is applied under the swap's lock
		}
		if err := pgx.BeginFunc(ctx, en.pool, func(tx pgx.Tx) error {
			if err := en.applyChunk(ctx, tx, p, events, false); err != nil {
				return err
			}
			last := events[len(events)-1].Position
			_, err := tx.Exec(ctx, `update projection_rebuilds set tx_id = $2, seq = $3, applied = applied + $4, updated_at = now()
				where projection = $1`, p.Name(), last.TxID, last.Seq, len(events))
			return err
		}); err != nil {
			return fmt.Errorf("rebuild %s: %w", p.Name(), err)
		}
		pos = events[len(events)-1].Position
		pr.Read += int64(len(events))
		if pr.Read > pr.Total {
			pr.Total = pr.Read
		}
		report()
	}
	if err := en.swap(ctx, p, log, pos, &pr); err != nil {
		return fmt.Errorf("rebuild %s: %w", p.Name(), err)
	}
	pr.Done = true
	report()
	return nil
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
			for _, table := range p.Tables() {
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
		for _, table := range p.Tables() {
			if _, err := tx.Exec(ctx, `drop table if exists `+Shadow.Name(table)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `create table `+Shadow.Name(table)+` (like `+Live.Name(table)+` including all)`); err != nil {
				return err
			}
		}
		shadow := checkpointName(p, Shadow)
		if _, err := tx.Exec(ctx, `delete from projection_checkpoints where projection = $1`, shadow); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `delete from projection_parked where projection = $1`, shadow); err != nil {
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

// applyChunk applies the events p wants to its shadow tables, and with
// checkpoints set moves their shadow checkpoints. The log yields each stream
// in version order with no repeats, so no per-event checkpoint check is
// needed; the replay leaves checkpoints to the swap, which derives them from
// the log in one statement (writing a million of them a chunk at a time
// cost more than the views themselves).
func (en *Engine) applyChunk(ctx context.Context, tx pgx.Tx, p Projection, events []eventstore.Event, checkpoints bool) error {
	var (
		wanted   []Event
		streams  []string
		versions []int64
		last     = map[string]int{}
	)
	for _, r := range events {
		if !Wants(p, r.StreamID) {
			continue
		}
		e, err := Decode(r)
		if err != nil {
			return err
		}
		wanted = append(wanted, e)
		if i, ok := last[r.StreamID]; ok {
			versions[i] = r.Version
			continue
		}
		last[r.StreamID] = len(streams)
		streams, versions = append(streams, r.StreamID), append(versions, r.Version)
	}
	if len(wanted) == 0 {
		return nil
	}
	if err := p.ApplyBatch(ctx, tx, Shadow, wanted); err != nil {
		return err
	}
	if !checkpoints {
		return nil
	}
	_, err := tx.Exec(ctx, `insert into projection_checkpoints (projection, stream_id, version)
		select $1, * from unnest($2::text[], $3::bigint[])
		on conflict (projection, stream_id) do update set version = excluded.version`,
		checkpointName(p, Shadow), streams, versions)
	return err
}

// swap catches the shadow tables up and swaps them in, in one transaction
// holding the projection's lock exclusively, so no live apply runs during it.
func (en *Engine) swap(ctx context.Context, p Projection, log Log, pos eventstore.Position, pr *Progress) error {
	return pgx.BeginFunc(ctx, en.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `select pg_advisory_xact_lock(hashtextextended($1, 0))`, lockKey(p.Name())); err != nil {
			return err
		}
		for { // the rest of the log
			events, err := log.ReadAll(ctx, pos, RebuildChunk)
			if err != nil {
				return err
			}
			if len(events) == 0 {
				break
			}
			if err := en.applyChunk(ctx, tx, p, events, false); err != nil {
				return err
			}
			pos = events[len(events)-1].Position
			pr.Read += int64(len(events))
		}
		// The shadow checkpoints: each stream's last version up to where
		// the replay stopped. Nothing before pos can still commit (the replay
		// read only below the snapshot horizon), so the log is final there.
		if _, err := tx.Exec(ctx, `insert into projection_checkpoints (projection, stream_id, version)
			select $1, stream_id, max(version) from events
			where stream_id like any($2::text[]) and (tx_id, seq) <= ($3, $4)
			group by stream_id
			on conflict (projection, stream_id) do update set version = excluded.version`,
			checkpointName(p, Shadow), likePrefixes(p.Prefixes()), pos.TxID, pos.Seq); err != nil {
			return err
		}
		// The live projection may have applied events that committed after
		// the last read (their transactions were still open then): carry
		// them over so the swap never loses a row the live view had.
		rows, err := tx.Query(ctx, `select l.stream_id, coalesce(s.version, 0), l.version
			from projection_checkpoints l
			left join projection_checkpoints s on s.projection = $2 and s.stream_id = l.stream_id
			where l.projection = $1 and l.version > coalesce(s.version, 0)`, checkpointName(p, Live), checkpointName(p, Shadow))
		if err != nil {
			return err
		}
		type gap struct {
			stream   string
			from, to int64
		}
		var gaps []gap
		for rows.Next() {
			var g gap
			if err := rows.Scan(&g.stream, &g.from, &g.to); err != nil {
				rows.Close()
				return err
			}
			gaps = append(gaps, g)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, g := range gaps {
			missing, err := en.store.ReadStream(ctx, g.stream, g.from+1, int(g.to-g.from))
			if err != nil {
				return err
			}
			if err := en.applyChunk(ctx, tx, p, missing, true); err != nil {
				return err
			}
		}
		for _, table := range p.Tables() {
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
		live, shadow := checkpointName(p, Live), checkpointName(p, Shadow)
		for _, table := range []string{"projection_checkpoints", "projection_parked"} {
			if _, err := tx.Exec(ctx, `delete from `+table+` where projection = $1`, live); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `update `+table+` set projection = $1 where projection = $2`, live, shadow); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `delete from projection_rebuilds where projection = $1`, p.Name()); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `insert into projection_builds (projection) values ($1)
			on conflict (projection) do update set built_at = now()`, p.Name())
		return err
	})
}
