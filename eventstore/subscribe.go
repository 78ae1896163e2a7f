package eventstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Subscribe tails the log from after position after, calling fn with each
// batch of at most batchSize events (0: 500) in the safe global order of
// ReadAll. It wakes on the store's notification, reads again at once when a
// transaction that had already ended held a read back (no notification
// would come for it), and polls every PollInterval in case a notification
// was lost or events were inserted without the store. It returns when ctx ends (with ctx.Err()) or
// when fn returns an error (with that error); fn's batch is then not
// acknowledged and the caller resumes from the last position it kept.
func (s *Store) Subscribe(ctx context.Context, after Position, batchSize int, fn func(context.Context, []Event) error) error {
	return s.tail(ctx, after, batchSize, fn, func(ctx context.Context, after Position, limit int) ([]Event, bool, error) {
		return s.readAll(ctx, s.pool, after, limit)
	})
}

// tail is Subscribe reading through read.
func (s *Store) tail(ctx context.Context, after Position, batchSize int, fn func(context.Context, []Event) error,
	read func(ctx context.Context, after Position, limit int) (events []Event, settled bool, err error)) error {
	if batchSize <= 0 {
		batchSize = 500
	}
	var listener *pgx.Conn
	defer func() {
		if listener != nil {
			listener.Close(context.WithoutCancel(ctx))
		}
	}()
	warned, rereads := false, 0
	for {
		events, settled, err := read(ctx, after, batchSize)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if len(events) > 0 {
			if err := fn(ctx, events); err != nil {
				return err
			}
			after = events[len(events)-1].Position
			if len(events) == batchSize {
				continue // more is waiting
			}
		}
		// Stopped by a transaction that had already ended: nothing will
		// announce what lies past it, so read again now. Each such stop is
		// another transaction ending at that moment, so a run of them is
		// short; after maxRereads in a row the tail waits as usual.
		if settled || len(events) > 0 {
			rereads = 0
		}
		if !settled && rereads < maxRereads {
			rereads++
			continue
		}
		rereads = 0
		if listener == nil || listener.IsClosed() {
			// (Re)connect the listener; until it works, tailing polls.
			if listener != nil {
				listener.Close(ctx)
			}
			var err error
			if listener, err = s.listen(ctx); err != nil && !warned {
				s.cfg.Logger.Warn("eventstore: tailing without notifications; polling until the listener reconnects", "err", err)
				warned = true
			} else if err == nil {
				warned = false
				continue // read what arrived while the listener was down
			}
		}
		if err := s.waitForEvents(ctx, listener); err != nil {
			return err
		}
	}
}

// maxRereads bounds the reads a tail repeats at once, in a row, past
// transactions that had already ended (see tail).
const maxRereads = 8

// listen opens a connection of its own that LISTENs on the store's channel.
// It does not come from the pool: a listening connection must never be
// handed to someone else.
func (s *Store) listen(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("eventstore: listen: %w", err)
	}
	if _, err := conn.Exec(ctx, "listen "+pgx.Identifier{s.cfg.Channel}.Sanitize()); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("eventstore: listen: %w", err)
	}
	return conn, nil
}

// waitForEvents returns after a notification, after PollInterval, or with
// ctx.Err() when ctx ends.
func (s *Store) waitForEvents(ctx context.Context, listener *pgx.Conn) error {
	wctx, cancel := context.WithTimeout(ctx, s.cfg.PollInterval)
	defer cancel()
	if listener == nil || listener.IsClosed() {
		<-wctx.Done()
		return ctx.Err()
	}
	_, err := listener.WaitForNotification(wctx)
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err == nil, errors.Is(err, context.DeadlineExceeded):
		return nil
	default:
		// The connection broke; keep tailing by polling.
		s.cfg.Logger.Warn("eventstore: listener lost; polling", "err", err)
		<-wctx.Done()
		return ctx.Err()
	}
}
