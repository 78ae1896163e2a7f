package projector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/orderflow/orderflow/relay"
)

// ErrMalformed marks a message that is not an orderflow CloudEvent; the
// router's poison queue takes it.
var ErrMalformed = errors.New("projector: malformed message")

// Handler returns the watermill handler that applies relayed events to p.
// It acknowledges a message once its effect is committed (or it is a
// duplicate, or its stream is parked) and fails it, for the router to retry,
// when the database cannot be reached. Messages handled concurrently (a
// subscription with MaxInFlight above 1) share transactions: see
// HandleBatched.
func (en *Engine) Handler(p Projection) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		e, err := relay.EventFromHeaders(msg.Metadata, msg.Payload)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		received := time.Now()
		out, err := en.HandleBatched(msg.Context(), p, e)
		if err == nil && out == Applied {
			en.delivery.WithLabelValues(p.Name()).Observe(received.Sub(e.RecordedAt).Seconds())
		}
		return err
	}
}

// ConsumerGroup is the Kafka consumer group of a projection that consumes
// one topic: its name. A projection consuming several topics has a group per
// topic (see Subscriptions).
func ConsumerGroup(p Projection) string { return "orderflow.projection." + p.Name() }

// contexts returns the bounded contexts of p's stream prefixes, in the order
// of Prefixes, without repeats.
func contexts(p Projection) []string {
	var out []string
	for _, sp := range p.Prefixes() {
		if c := relay.ContextOf(sp + "x"); !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// Topics returns the topics p consumes under the relay's topic prefix: one
// per bounded context its streams belong to, without repeats.
func Topics(p Projection, prefix string) []string {
	var out []string
	for _, c := range contexts(p) {
		out = append(out, relay.Topic(prefix, c))
	}
	return out
}

// Subscription is one topic a projection consumes, with the watermill
// handler and the Kafka consumer group that consume it.
type Subscription struct {
	Handler       string // the handler's name, unique among all projections'
	Topic         string
	ConsumerGroup string
}

// Subscriptions returns one subscription per topic of Topics(p, prefix). A
// watermill handler reads one topic and each handler has a consumer group of
// its own, so a projection consuming several topics has a handler and group
// named ConsumerGroup(p)+"."+context per topic. A projection consuming one
// topic keeps its name as the handler's and ConsumerGroup(p) as the group,
// so its committed offsets stay where they are.
func Subscriptions(p Projection, prefix string) []Subscription {
	cs := contexts(p)
	if len(cs) == 1 {
		return []Subscription{{Handler: p.Name(), Topic: relay.Topic(prefix, cs[0]), ConsumerGroup: ConsumerGroup(p)}}
	}
	out := make([]Subscription, len(cs))
	for i, c := range cs {
		group := ConsumerGroup(p) + "." + c
		out[i] = Subscription{Handler: group, Topic: relay.Topic(prefix, c), ConsumerGroup: group}
	}
	return out
}

// Backfill rebuilds every projection that was never built (a projection added
// later starts from the whole history), or whose rebuild was interrupted. A
// projection another process is rebuilding right now is left to it: its
// live consumers start as they do beside any rebuild, and that rebuild's
// swap brings in the whole history.
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
		}); errors.Is(err, ErrRebuildRunning) {
			en.logger.Info("projection is being rebuilt by another process; not backfilling it here", "projection", p.Name())
		} else if err != nil {
			return err
		}
	}
	return nil
}
