package projector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/internal/batch"
)

// customPlans makes a transaction plan each statement for its arguments. The
// projections' statements look rows up by arrays of keys ("= any($1)"); a
// generic plan cached while the checkpoint and view tables were small scans
// them whole, and they only grow: under load every batch slowed with the
// table (command→view p99 at 2,000/s went from about 390 ms to seconds).
const customPlans = `set local plan_cache_mode = force_custom_plan`

// MaxBatch is the most events one live batch applies in a transaction.
const MaxBatch = 1024

// batchTimeout bounds one batch transaction; a handler that stops waiting
// earlier (its message's context ended) leaves the batch to finish.
const batchTimeout = 30 * time.Second

// result is what a live batch did with one event.
type result struct {
	out Outcome
	err error
}

// batcherFor returns p's batcher, shared by all of p's handlers: concurrent
// deliveries share one transaction and one commit.
func (en *Engine) batcherFor(p Projection) *batch.Batcher[eventstore.Event, result] {
	en.mu.Lock()
	defer en.mu.Unlock()
	b := en.batchers[p.Name()]
	if b == nil {
		b = batch.New(MaxBatch, func(events []eventstore.Event) []result { return en.applyBatch(p, events) })
		en.batchers[p.Name()] = b
	}
	return b
}

// HandleBatched applies e like Handle, but in one transaction with the
// other events of p being handled concurrently. It returns when e's batch
// committed (or failed), or when ctx ends.
func (en *Engine) HandleBatched(ctx context.Context, p Projection, e eventstore.Event) (Outcome, error) {
	if !Wants(p, e.StreamID) {
		en.observe(p, e, Skipped)
		return Skipped, nil
	}
	r, err := en.batcherFor(p).Do(ctx, e)
	if err != nil {
		return 0, err
	}
	return r.out, r.err
}

// applyBatch applies events in one transaction and returns each one's
// result, in their order. When the transaction fails for a reason other than
// the database being away, it applies the events one by one (Handle), so
// that only a stream whose event keeps failing is parked.
func (en *Engine) applyBatch(p Projection, events []eventstore.Event) []result {
	order := make([]int, len(events)) // events by stream and version
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(x, y int) int {
		return cmp.Or(cmp.Compare(events[x].StreamID, events[y].StreamID), cmp.Compare(events[x].Version, events[y].Version))
	})
	sorted := make([]eventstore.Event, len(events))
	for i, j := range order {
		sorted[i] = events[j]
	}
	var outs []Outcome
	release := en.turn() // the batcher gathers the next batch meanwhile
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	start := time.Now()
	err := en.live(ctx, p, func(tx pgx.Tx) error {
		var err error
		outs, err = en.applyLive(ctx, tx, p, sorted)
		return err
	})
	en.batchTime.WithLabelValues(p.Name()).Observe(time.Since(start).Seconds())
	release() // the one-by-one fallback below goes without: it can take long
	results := make([]result, len(events))
	switch {
	case err == nil:
		for i, j := range order {
			results[j].out = outs[i]
			en.observe(p, sorted[i], outs[i])
		}
	case transient(ctx, err):
		for i := range results {
			results[i].err = err
		}
	default:
		en.logger.Warn("projection batch failed; applying its events one by one", "projection", p.Name(), "events", len(events), "err", err)
		for _, j := range order {
			results[j].out, results[j].err = en.Handle(ctx, p, events[j])
		}
	}
	return results
}

// turn waits for a turn to run a live batch transaction (MaxLiveBatches)
// and returns the function that gives it back.
func (en *Engine) turn() (release func()) {
	if en.turns == nil {
		return func() {}
	}
	en.waiting.Inc()
	en.turns <- struct{}{}
	en.waiting.Dec()
	return func() { <-en.turns }
}

// live runs fn in a transaction on p's live tables that holds the shared
// side of p's lock from its first statement, and plans each statement for
// its arguments (customPlans). The lock is taken by the BEGIN itself, in the
// same round trip: taken by a later statement, it could come after a read
// of one of p's tables had locked it (pgx prepares a batch's statements
// before running any on a new connection), and a swap holding the lock
// while it waits for that table would deadlock with this transaction.
func (en *Engine) live(ctx context.Context, p Projection, fn func(pgx.Tx) error) error {
	key := strings.ReplaceAll(lockKey(p.Name()), "'", "''")
	return pgx.BeginTxFunc(ctx, en.pool, pgx.TxOptions{
		BeginQuery: "begin; " + customPlans + "; select pg_advisory_xact_lock_shared(hashtextextended('" + key + "', 0))",
	}, fn)
}

// streamStates reads, in a live transaction (see live), where each stream
// of events (sorted by stream and version) stands in p's live tables: its
// checkpoint and whether it is parked.
func (en *Engine) streamStates(ctx context.Context, tx pgx.Tx, p Projection, events []eventstore.Event) (map[string]*streamState, error) {
	var streams []string
	for _, e := range events {
		if len(streams) == 0 || streams[len(streams)-1] != e.StreamID {
			streams = append(streams, e.StreamID)
		}
	}
	states := make(map[string]*streamState, len(streams))
	for _, s := range streams {
		states[s] = &streamState{}
	}
	var replayed eventstore.Position
	b := &pgx.Batch{}
	// Read under the lock (the transaction began with it: see live), so it
	// belongs to the tables this transaction writes: a swap changes both at
	// once.
	b.Queue(`select replayed_tx_id, replayed_seq from projection_builds where projection = $1`, p.Name()).
		QueryRow(func(row pgx.Row) error {
			if err := row.Scan(&replayed.TxID, &replayed.Seq); err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			return nil
		})
	// The checkpoints are read, not locked: the transaction writes nothing
	// (and takes no transaction id) until the view's writes at its end. An
	// open transaction holding an id keeps every newer event from the
	// relay (it publishes below the oldest one), so a projection that wrote
	// early would slow the very events it waits for. The checkpoint writes
	// at the end check that nobody moved them meanwhile (errCheckpointMoved
	// rolls everything back), which is what locking them would have done.
	b.Queue(`select stream_id, version from `+checkpoints(p, Live)+` where stream_id = any($1)`, streams).
		Query(func(rows pgx.Rows) error {
			var (
				s string
				v int64
			)
			_, err := pgx.ForEachRow(rows, []any{&s, &v}, func() error {
				states[s].cp, states[s].stored = v, true
				return nil
			})
			return err
		})
	b.Queue(`select stream_id from projection_parked where projection = $1 and stream_id = any($2)`, parkedKey(p, Live), streams).
		Query(func(rows pgx.Rows) error {
			var s string
			_, err := pgx.ForEachRow(rows, []any{&s}, func() error {
				states[s].parked = true
				return nil
			})
			return err
		})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	if err := replayedCheckpoints(ctx, tx, events, states, replayed); err != nil {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	return states, nil
}

// applyLive applies events (sorted by stream and version) to p's live
// tables with the checkpoints of their streams, in a live transaction (see
// live: it holds the shared side of the projection's lock, so a rebuild can
// swap tables under it), and returns each event's outcome. A stream's events
// at or below its checkpoint are duplicates; versions missing between the
// checkpoint and the newest event are read from the event store; a parked
// stream is skipped.
//
// A stream's checkpoint is its row in p's checkpoint table or, if it has
// none, its last version at or before the position the last rebuild
// replayed to (see replayedCheckpoints).
func (en *Engine) applyLive(ctx context.Context, tx pgx.Tx, p Projection, events []eventstore.Event) ([]Outcome, error) {
	states, err := en.streamStates(ctx, tx, p, events)
	if err != nil {
		return nil, err
	}

	outs := make([]Outcome, len(events))
	var (
		decoded                     []Event
		moved, added                []string
		movedFrom, movedTo, addedTo []int64
	)
	for i := 0; i < len(events); {
		stream := events[i].StreamID
		j := i
		for j < len(events) && events[j].StreamID == stream {
			j++
		}
		st := states[stream]
		var fresh []eventstore.Event
		for k := i; k < j; k++ {
			e := events[k]
			switch {
			case st.parked:
				outs[k] = Skipped
			case e.Version <= st.cp || (len(fresh) > 0 && e.Version == fresh[len(fresh)-1].Version):
				outs[k] = Duplicate
			default:
				outs[k] = Applied
				fresh = append(fresh, e)
			}
		}
		if len(fresh) > 0 {
			last := fresh[len(fresh)-1].Version
			if int64(len(fresh)) != last-st.cp { // versions missing: read them all from the store
				all, err := en.store.ReadStream(ctx, stream, st.cp+1, int(last-st.cp))
				if err != nil {
					return nil, fmt.Errorf("read missing versions of %s: %w", stream, err)
				}
				if int64(len(all)) != last-st.cp {
					return nil, fmt.Errorf("read missing versions of %s: got %d of %d", stream, len(all), last-st.cp)
				}
				fresh = all
			}
			for _, r := range fresh {
				e, err := Decode(r)
				if err != nil {
					return nil, err
				}
				decoded = append(decoded, e)
			}
			if st.stored {
				moved, movedFrom, movedTo = append(moved, stream), append(movedFrom, st.cp), append(movedTo, last)
			} else {
				added, addedTo = append(added, stream), append(addedTo, last)
			}
		}
		i = j
	}
	if len(decoded) == 0 {
		return outs, nil
	}
	if err := p.ApplyBatch(ctx, tx, Live, decoded); err != nil {
		return nil, fmt.Errorf("%s: apply %d events: %w", p.Name(), len(decoded), err)
	}
	b := &pgx.Batch{}
	if len(moved) > 0 {
		b.Queue(`update `+checkpoints(p, Live)+` c set version = u.version
			from unnest($1::text[], $2::bigint[], $3::bigint[]) as u(stream_id, version, was)
			where c.stream_id = u.stream_id and c.version = u.was`, moved, movedTo, movedFrom).
			Exec(func(ct pgconn.CommandTag) error {
				if ct.RowsAffected() != int64(len(moved)) {
					return errCheckpointMoved
				}
				return nil
			})
	}
	if len(added) > 0 {
		// If another transaction inserted one meanwhile, this one must not
		// count.
		b.Queue(`insert into `+checkpoints(p, Live)+` (stream_id, version)
			select * from unnest($1::text[], $2::bigint[]) on conflict (stream_id) do nothing`, added, addedTo).
			Exec(func(ct pgconn.CommandTag) error {
				if ct.RowsAffected() != int64(len(added)) {
					return errCheckpointMoved
				}
				return nil
			})
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	return outs, nil
}

// streamState is what a live batch knows of one stream's checkpoint.
type streamState struct {
	cp     int64
	stored bool // it has a checkpoint row
	parked bool
}

// replayedCheckpoints sets the checkpoint of each stream of events that has
// no row: its last version at or before replayed, the position up to which
// the last rebuild applied the whole log. Mostly the batch itself tells: an
// event at or before replayed was applied, and a stream's first event past
// it that follows on from such an event (or is its stream's first) starts
// right after the checkpoint. Only a stream whose first event past replayed
// comes with nothing before it is looked up in the log, in one query.
func replayedCheckpoints(ctx context.Context, tx pgx.Tx, events []eventstore.Event, states map[string]*streamState, replayed eventstore.Position) error {
	var lookup []string
	for i := 0; i < len(events); {
		stream := events[i].StreamID
		st := states[stream]
		j := i
		for j < len(events) && events[j].StreamID == stream {
			j++
		}
		if !st.stored && !st.parked {
			k := i
			for k < j && events[k].Position.Compare(replayed) <= 0 {
				st.cp = events[k].Version
				k++
			}
			if k < j && events[k].Version != st.cp+1 {
				lookup = append(lookup, stream)
			}
		}
		i = j
	}
	if len(lookup) == 0 || replayed == (eventstore.Position{}) { // nothing replayed: nothing to find
		return nil
	}
	rows, err := tx.Query(ctx, `select stream_id, max(version) from events
		where stream_id = any($1) and (tx_id, seq) <= ($2, $3) group by stream_id`, lookup, replayed.TxID, replayed.Seq)
	if err != nil {
		return err
	}
	var (
		s string
		v int64
	)
	_, err = pgx.ForEachRow(rows, []any{&s, &v}, func() error {
		states[s].cp = v
		return nil
	})
	return err
}
