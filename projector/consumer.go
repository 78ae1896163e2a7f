package projector

import (
	"context"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/orderflow/orderflow/relay"
)

// ErrMalformed marks a message that is not an orderflow CloudEvent; the
// router's poison queue takes it.
var ErrMalformed = errors.New("projector: malformed message")

// Handler returns the watermill handler that applies relayed events to p.
// It acknowledges a message once its effect is committed (or it is a
// duplicate, or its stream is parked) and fails it, for the router to retry,
// when the database cannot be reached.
func (en *Engine) Handler(p Projection) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		e, err := relay.EventFromHeaders(msg.Metadata, msg.Payload)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		_, err = en.Handle(msg.Context(), p, e)
		return err
	}
}

// ConsumerGroup is the Kafka consumer group of a projection: its name.
func ConsumerGroup(p Projection) string { return "orderflow.projection." + p.Name() }

// Topic is the topic a projection consumes under the relay's topic prefix.
func Topic(p Projection, prefix string) string {
	return relay.Topic(prefix, relay.ContextOf(p.Prefix()+"x"))
}

// Backfill rebuilds every projection that was never built (a projection added
// later starts from the whole history), or whose rebuild was interrupted.
func (en *Engine) Backfill(ctx context.Context, log Log, projections []Projection) error {
	for _, p := range projections {
		var pending bool
		err := en.pool.QueryRow(ctx, `select not exists (select 1 from projection_builds where projection = $1)
			or exists (select 1 from projection_rebuilds where projection = $1)`, p.Name()).Scan(&pending)
		if err != nil {
			return fmt.Errorf("backfill %s: %w", p.Name(), err)
		}
		if !pending {
			continue
		}
		en.logger.Info("backfilling projection from the event store", "projection", p.Name())
		if err := en.Rebuild(ctx, p, log, func(pr Progress) {
			if pr.Done {
				en.logger.Info("projection backfilled", "projection", p.Name(), "events_read", pr.Read)
			}
		}); err != nil {
			return err
		}
	}
	return nil
}
