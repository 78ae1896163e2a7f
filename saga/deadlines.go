package saga

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/command"
	"github.com/orderflow/orderflow/eventstore"
)

// DeadlineLease is how long a claimed deadline belongs to the scheduler that
// claimed it; one still unfired after that (its scheduler died) is claimed
// again.
const DeadlineLease = time.Minute

// FireDeadlines cancels, with reason "timeout", the orders still pending at
// their deadline, at most limit of them, and returns how many deadlines it
// fired, with the errors of those it could not fire (they are tried again
// once their claim's lease runs out; the others fire regardless). It claims
// them first in one statement, skipping rows another instance is claiming,
// so instances running side by side fire different ones, and holds no
// transaction open while it appends. An instance that
// dies half-way leaves its claims to expire (DeadlineLease); firing one again
// appends nothing new, its command id being the deadline's.
func (p *Participants) FireDeadlines(ctx context.Context, limit int) (int, error) {
	now := p.now()
	rows, err := p.pool.Query(ctx, `update saga_deadlines set claimed_at = $1
		where order_id in (
			select order_id from saga_deadlines
			where fired_at is null and due_at <= $1 and (claimed_at is null or claimed_at <= $2)
			order by due_at limit $3 for update skip locked)
		returning order_id`, now, now.Add(-DeadlineLease), limit)
	if err != nil {
		return 0, fmt.Errorf("claim deadlines: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return 0, fmt.Errorf("claim deadlines: %w", err)
	}
	// A deadline that fails keeps its claim until the lease runs out, and
	// is retried then; the others of the batch still fire now.
	fired := 0
	var errs []error
	for _, raw := range ids {
		id := orderflow.OrderID(raw)
		// The deadline itself is the trigger: its command id is the same
		// however often it fires.
		trigger := eventstore.Event{ID: uuid.NewSHA1(uuid.NameSpaceOID, []byte("deadline:"+id.String())), StreamID: id.Stream()}
		if err := p.react(ctx, trigger, "order:timeout", func(ctx context.Context) ([]Write, error) {
			o, err := p.order(ctx, id)
			return orderWrite(o, command.DecideSagaCancel(o, orderflow.ReasonTimeout, p.now())), err
		}); err != nil {
			errs = append(errs, fmt.Errorf("deadline of %s: %w", id, err))
			continue
		}
		if _, err := p.pool.Exec(ctx, `update saga_deadlines set fired_at = now() where order_id = $1`, raw); err != nil {
			errs = append(errs, fmt.Errorf("deadline of %s: %w", id, err))
			continue
		}
		fired++
	}
	return fired, errors.Join(errs...)
}

// RunDeadlines fires due deadlines every interval until ctx ends.
func (p *Participants) RunDeadlines(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for {
			n, err := p.FireDeadlines(ctx, 100)
			if err != nil && ctx.Err() == nil {
				p.logger.Warn("saga: firing deadlines failed; will retry", "err", err)
			}
			if err != nil || n < 100 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
