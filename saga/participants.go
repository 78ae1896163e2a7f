package saga

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/command"
	"github.com/orderflow/orderflow/eventcodec"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/internal/batch"
	"github.com/orderflow/orderflow/paymentprovider"
	"github.com/orderflow/orderflow/relay"
)

// EventStore is what the participants need of the event log.
type EventStore interface {
	Append(ctx context.Context, a eventstore.Append) (eventstore.Result, error)
	ReadStream(ctx context.Context, streamID string, from int64, limit int) ([]eventstore.Event, error)
}

// Provider is the payment service, behind its circuit breaker.
type Provider interface {
	Charge(ctx context.Context, orderID string, amountCents int64, idempotencyKey string) (paymentprovider.Charge, error)
	Void(ctx context.Context, idempotencyKey string) (paymentprovider.Charge, error)
	Refund(ctx context.Context, chargeID string, amountCents int64, idempotencyKey string) (paymentprovider.Refund, error)
}

// ErrMalformed marks a trigger that is not a decodable orderflow event, or
// one whose reaction must fold a stored event this build cannot decode; it
// belongs on the dead-letter topic.
var ErrMalformed = errors.New("saga: malformed event")

// Participants runs the saga's reactions.
type Participants struct {
	store    EventStore
	provider Provider
	pool     *pgxpool.Pool
	now      func() time.Time
	logger   *slog.Logger

	// stocks caches each SKU's folded stock and the version it was folded
	// to: a reservation then reads only the events of the SKU's stream since
	// (a busy SKU's stream grows by every order), and the cache can never be
	// wrong for long because a stale version fails the append and the
	// decision is made again on fresh events.
	stockMu sync.Mutex
	stocks  map[orderflow.SKU]Stock
	// skuLocks serialize this process's reservations of one SKU: concurrent
	// deliveries wait for each other instead of losing the append race over
	// and over. Other processes are kept apart by the expected versions.
	skuLocks map[orderflow.SKU]*sync.Mutex
	// reservers batch the reservations of orders naming the same SKUs: one
	// append reserves them all, so a busy SKU is not limited to one
	// reservation per commit.
	reservers *skuBatchers[toReserve]
	// settlers batch the commits and releases of orders naming the same
	// SKUs, the same way.
	settlers *skuBatchers[toSettle]
}

// toReserve is an OrderPlaced waiting to be reserved.
type toReserve struct {
	trigger eventstore.Event
	placed  orderflow.OrderPlaced
}

// toSettle is a commit or a release of an order's reservation, with the
// reservation as read when it was asked for.
type toSettle struct {
	trigger eventstore.Event
	action  string
	id      orderflow.OrderID
	res     Reservation
	decide  func(orderflow.OrderID, Reservation) []Write
}

// New returns the participants over store, charging through provider and
// keeping deadlines in pool's database.
func New(store EventStore, provider Provider, pool *pgxpool.Pool, now func() time.Time, logger *slog.Logger) (*Participants, error) {
	if store == nil || provider == nil || pool == nil || now == nil || logger == nil {
		return nil, errors.New("saga: New: nil dependency")
	}
	p := &Participants{store: store, provider: provider, pool: pool, now: now, logger: logger,
		stocks: map[orderflow.SKU]Stock{}, skuLocks: map[orderflow.SKU]*sync.Mutex{}}
	p.reservers = newSKUBatchers(p.reserveBatch)
	p.settlers = newSKUBatchers(func(skus []orderflow.SKU, items []toSettle) []error {
		return eachGets(p.settleBatch(skus, items), len(items))
	})
	return p, nil
}

// Reaction is one participant's handler for one topic: its name is its
// consumer group.
type Reaction struct {
	Name    string
	Context string   // the topic's bounded context (relay.ContextOrder, ...)
	Types   []string // the event types it reacts to; it ignores the others
	Handle  func(ctx context.Context, e eventstore.Event) error
}

// Reactions lists every handler of the saga.
func (p *Participants) Reactions() []Reaction {
	return []Reaction{
		{Name: "inventory", Context: relay.ContextOrder, Handle: p.inventory,
			Types: []string{orderflow.EventOrderPlaced, orderflow.EventOrderConfirmed, orderflow.EventOrderCancelled}},
		{Name: "payment-on-inventory", Context: relay.ContextInventory, Handle: p.paymentOnInventory,
			Types: []string{orderflow.EventInventoryReserved}},
		{Name: "payment-on-order", Context: relay.ContextOrder, Handle: p.paymentOnOrder,
			Types: []string{orderflow.EventOrderCancelled}},
		{Name: "payment-on-payment", Context: relay.ContextPayment, Handle: p.paymentOnPayment,
			Types: []string{orderflow.EventPaymentCaptured}},
		{Name: "order-on-inventory", Context: relay.ContextInventory, Handle: p.orderOnInventory,
			Types: []string{orderflow.EventInventoryRejected}},
		{Name: "order-on-payment", Context: relay.ContextPayment, Handle: p.orderOnPayment,
			Types: []string{orderflow.EventPaymentCaptured, orderflow.EventPaymentFailed}},
	}
}

// decode returns the trigger's payload, or ErrMalformed.
func decode(e eventstore.Event) (orderflow.Event, error) {
	payload, err := eventcodec.Decode(e.Type, e.SchemaVersion, e.Data)
	if errors.Is(err, eventcodec.ErrUnknownEvent) {
		return nil, nil // a type this build does not react to
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s@%d: %w", ErrMalformed, e.Type, e.StreamID, e.Version, err)
	}
	return payload, nil
}

// load folds a stream's events with apply; a stream that does not exist
// folds nothing.
func (p *Participants) load(ctx context.Context, stream string, apply func(orderflow.Event)) error {
	return p.loadFrom(ctx, stream, 1, apply)
}

// loadFrom folds a stream's events from version from on with apply.
func (p *Participants) loadFrom(ctx context.Context, stream string, from int64, apply func(orderflow.Event)) error {
	recorded, err := p.store.ReadStream(ctx, stream, from, 0)
	if errors.Is(err, eventstore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, r := range recorded {
		e, err := eventcodec.Decode(r.Type, r.SchemaVersion, r.Data)
		if errors.Is(err, eventcodec.ErrUnknownEvent) {
			apply(nil) // counts for the version
			continue
		}
		if err != nil { // no retry can read it: a dead letter, not a partition held back for good
			return fmt.Errorf("%w: load %s: %s@%d: %w", ErrMalformed, stream, r.Type, r.Version, err)
		}
		apply(e)
	}
	return nil
}

func (p *Participants) order(ctx context.Context, id orderflow.OrderID) (command.Order, error) {
	var o command.Order
	err := p.load(ctx, id.Stream(), func(e orderflow.Event) { o = o.Apply(e) })
	return o, err
}

// stock returns sku's stock folded to the latest version: the cached fold
// and the stream's events since.
func (p *Participants) stock(ctx context.Context, sku orderflow.SKU) (Stock, error) {
	p.stockMu.Lock()
	s := p.stocks[sku]
	p.stockMu.Unlock()
	if err := p.loadFrom(ctx, sku.Stream(), s.Version+1, func(e orderflow.Event) { s = s.Apply(e) }); err != nil {
		return Stock{}, err
	}
	p.stockMu.Lock()
	if s.Version > p.stocks[sku].Version {
		p.stocks[sku] = s
	}
	p.stockMu.Unlock()
	return s, nil
}

// lockSKUs takes this process's locks of skus, in sorted order so that two
// orders sharing SKUs never wait for each other in a cycle, and returns
// their release.
func (p *Participants) lockSKUs(skus []orderflow.SKU) (unlock func()) {
	skus = slices.Clone(skus)
	slices.Sort(skus)
	skus = slices.Compact(skus)
	locks := make([]*sync.Mutex, len(skus))
	p.stockMu.Lock()
	for i, sku := range skus {
		if p.skuLocks[sku] == nil {
			p.skuLocks[sku] = &sync.Mutex{}
		}
		locks[i] = p.skuLocks[sku]
	}
	p.stockMu.Unlock()
	for _, l := range locks {
		l.Lock()
	}
	return func() {
		for _, l := range slices.Backward(locks) {
			l.Unlock()
		}
	}
}

// maxReserveBatch is the most orders one reservation append holds.
const maxReserveBatch = 64

// reserveTimeout bounds one batch of reservations, retries included.
const reserveTimeout = 30 * time.Second

// skusOf returns the SKUs lines name, sorted, without repeats.
func skusOf(lines []orderflow.OrderLine) []orderflow.SKU {
	skus := make([]orderflow.SKU, len(lines))
	for i, l := range lines {
		skus[i] = l.SKU
	}
	slices.Sort(skus)
	return slices.Compact(skus)
}

// skuSetKey is the key of a set of SKUs (sorted, without repeats).
func skuSetKey(skus []orderflow.SKU) string {
	parts := make([]string, len(skus))
	for i, sku := range skus {
		parts[i] = string(sku)
	}
	return strings.Join(parts, "\x00")
}

// skuBatchers batch the items of orders naming the same SKUs, by the
// sorted SKU list. A list's batcher lives while items use it: the SKU lists
// of multi-line orders are mostly all different, and batchers kept for good
// would grow with the orders handled.
type skuBatchers[T any] struct {
	run func([]orderflow.SKU, []T) []error // one error per item
	mu  sync.Mutex
	m   map[string]*skuBatcher[T]
}

type skuBatcher[T any] struct {
	b     *batch.Batcher[T, error]
	users int // items added and not yet answered
}

func newSKUBatchers[T any](run func([]orderflow.SKU, []T) []error) *skuBatchers[T] {
	return &skuBatchers[T]{run: run, m: map[string]*skuBatcher[T]{}}
}

// do adds item to the next batch of skus (sorted, without repeats) and
// returns the item's error from the batch, or ctx's if it ends first (the
// batch still runs the item).
func (s *skuBatchers[T]) do(ctx context.Context, skus []orderflow.SKU, item T) error {
	key := skuSetKey(skus)
	s.mu.Lock()
	sb := s.m[key]
	if sb == nil {
		sb = &skuBatcher[T]{b: batch.New(maxReserveBatch, func(items []T) []error { return s.run(skus, items) })}
		s.m[key] = sb
	}
	sb.users++
	s.mu.Unlock()
	err, cerr := sb.b.Do(ctx, item)
	s.mu.Lock()
	if sb.users--; sb.users == 0 {
		delete(s.m, key)
	}
	s.mu.Unlock()
	return cmp.Or(cerr, err)
}

// batchCommandID is the command id of an append for the reactions to
// triggers: a redelivered batch appends nothing new.
func batchCommandID(action string, triggers []eventstore.Event) string {
	if len(triggers) == 1 {
		return "saga:" + action + ":" + triggers[0].ID.String()
	}
	ids := make([]string, len(triggers))
	for i, t := range triggers {
		ids[i] = t.ID.String()
	}
	slices.Sort(ids)
	sum := sha256.Sum256([]byte(strings.Join(ids, ",")))
	return "saga:" + action + ":batch:" + hex.EncodeToString(sum[:16])
}

// reserveBatch reserves (or rejects) placed orders naming the same skus in
// one append: decided in turn on the SKUs' current stock, retried on fresh
// stock when another writer moved a SKU first. Its command id comes from
// the triggers, so a redelivered batch appends nothing new, and an order
// reserved before (in another batch) is skipped by its reservation stream.
//
// It returns each item's error: an order whose own streams cannot be
// decoded fails alone (ErrMalformed) and the others are decided without
// it; any other failure is the whole batch's.
func (p *Participants) reserveBatch(skus []orderflow.SKU, items []toReserve) []error {
	ctx, cancel := context.WithTimeout(context.Background(), reserveTimeout)
	defer cancel()
	defer p.lockSKUs(skus)()
	const action = "inventory:reserve"
	triggers := make([]eventstore.Event, len(items))
	for i, it := range items {
		triggers[i] = it.trigger
	}
	a := eventstore.Append{Fingerprint: action, CommandID: batchCommandID(action, triggers)}
	var itemErrs []error
	err := p.appendRetrying(ctx, a, fmt.Sprintf("%s of %d orders", action, len(items)), func(a *eventstore.Append) error {
		ids := make([]orderflow.OrderID, len(items))
		for i, it := range items {
			ids[i] = it.placed.OrderID
		}
		res, statuses, errs := p.reservationsAndStatuses(ctx, ids)
		itemErrs = make([]error, len(items))
		var (
			decided []int // the items decided, by index
			placed  []orderflow.OrderPlaced
			decStat []string
			decRes  []Reservation
		)
		for i, err := range errs {
			switch {
			case err == nil:
				decided = append(decided, i)
				placed, decStat, decRes = append(placed, items[i].placed), append(decStat, statuses[i]), append(decRes, res[i])
			case errors.Is(err, ErrMalformed):
				itemErrs[i] = err
			default:
				return err
			}
		}
		stocks := make(map[orderflow.SKU]Stock, len(skus))
		for _, sku := range skus {
			var err error
			if stocks[sku], err = p.stock(ctx, sku); err != nil {
				return err
			}
		}
		for k, writes := range DecideReserveBatch(placed, decStat, decRes, stocks) {
			if err := addWrites(a, writes, metadata(items[decided[k]].trigger, action)); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && itemErrs != nil {
		return itemErrs
	}
	return eachGets(err, len(items))
}

// eachGets returns err once for each of n items.
func eachGets(err error, n int) []error {
	out := make([]error, n)
	for i := range out {
		out[i] = err
	}
	return out
}

// appendRetrying appends a with the streams build adds to it, building
// afresh when another writer moved one of them first, up to 20 times; it
// appends nothing when build adds nothing.
func (p *Participants) appendRetrying(ctx context.Context, a eventstore.Append, what string, build func(*eventstore.Append) error) error {
	const attempts = 20
	for range attempts {
		a.Streams = nil
		if err := build(&a); err != nil || len(a.Streams) == 0 {
			return err
		}
		if err := p.append(ctx, a); !errors.Is(err, eventstore.ErrConcurrency) {
			return err
		}
	}
	return fmt.Errorf("saga %s: still conflicting after %d attempts", what, attempts)
}

func (p *Participants) reservation(ctx context.Context, id orderflow.OrderID) (Reservation, error) {
	var r Reservation
	err := p.load(ctx, id.ReservationStream(), func(e orderflow.Event) { r = r.Apply(e) })
	return r, err
}

// reservations returns the reservations of ids, read at once: the event
// store serves concurrent reads in one query.
func (p *Participants) reservations(ctx context.Context, ids []orderflow.OrderID) ([]Reservation, error) {
	out := make([]Reservation, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { out[i], errs[i] = p.reservation(ctx, id) })
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// reservationsAndStatuses reads the orders' reservations and statuses, all
// at once (the store serves concurrent reads with one query), with each
// order's error.
func (p *Participants) reservationsAndStatuses(ctx context.Context, ids []orderflow.OrderID) ([]Reservation, []string, []error) {
	res := make([]Reservation, len(ids))
	statuses := make([]string, len(ids))
	resErrs, orderErrs := make([]error, len(ids)), make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { res[i], resErrs[i] = p.reservation(ctx, id) })
		wg.Go(func() {
			o, err := p.order(ctx, id)
			statuses[i], orderErrs[i] = string(o.Status), err
		})
	}
	wg.Wait()
	errs := make([]error, len(ids))
	for i := range errs {
		errs[i] = errors.Join(resErrs[i], orderErrs[i])
	}
	return res, statuses, errs
}

func (p *Participants) payment(ctx context.Context, id orderflow.OrderID) (Payment, error) {
	var pay Payment
	err := p.load(ctx, id.PaymentStream(), func(e orderflow.Event) { pay = pay.Apply(e) })
	return pay, err
}

// react decides and appends, deciding again when a concurrent writer moved a
// stream first. The command id comes from the trigger and the action, so a
// redelivered trigger appends nothing new.
func (p *Participants) react(ctx context.Context, trigger eventstore.Event, action string, decide func(ctx context.Context) ([]Write, error)) error {
	a := eventstore.Append{CommandID: batchCommandID(action, []eventstore.Event{trigger}), Fingerprint: action}
	return p.appendRetrying(ctx, a, fmt.Sprintf("%s on %s@%d", action, trigger.StreamID, trigger.Version), func(a *eventstore.Append) error {
		writes, err := decide(ctx)
		if err != nil {
			return err
		}
		return addWrites(a, writes, metadata(trigger, action))
	})
}

// append appends a; a command appended before is a success.
func (p *Participants) append(ctx context.Context, a eventstore.Append) error {
	_, err := p.store.Append(ctx, a)
	if errors.Is(err, eventstore.ErrDuplicateCommand) {
		return nil
	}
	return err
}

// metadata is the metadata of the events a reaction to trigger appends.
func metadata(trigger eventstore.Event, action string) eventstore.Metadata {
	return eventstore.Metadata{
		CorrelationID: trigger.Metadata.CorrelationID, CausationID: trigger.ID.String(),
		Actor: "saga:" + strings.SplitN(action, ":", 2)[0], TraceParent: trigger.Metadata.TraceParent, TraceState: trigger.Metadata.TraceState,
	}
}

// addWrites adds writes to a, with md on each event. A write to a stream a
// already holds adds its events to that stream's (see MergeWrites).
func addWrites(a *eventstore.Append, writes []Write, md eventstore.Metadata) error {
	for _, w := range writes {
		i := slices.IndexFunc(a.Streams, func(sa eventstore.StreamAppend) bool { return sa.StreamID == w.StreamID })
		if i < 0 {
			i = len(a.Streams)
			a.Streams = append(a.Streams, eventstore.StreamAppend{StreamID: w.StreamID, Expected: w.Expected})
		}
		for _, e := range w.Events {
			data, err := eventcodec.Encode(e)
			if err != nil {
				return err
			}
			a.Streams[i].Events = append(a.Streams[i].Events, eventstore.EventData{Type: e.EventType(), SchemaVersion: e.SchemaVersion(), Data: data, Metadata: md})
		}
	}
	return nil
}

// inventory reserves placed orders, commits confirmed ones and releases
// cancelled ones.
func (p *Participants) inventory(ctx context.Context, e eventstore.Event) error {
	payload, err := decode(e)
	if err != nil {
		return err
	}
	switch ev := payload.(type) {
	case orderflow.OrderPlaced:
		return p.reservers.do(ctx, skusOf(ev.Lines), toReserve{trigger: e, placed: ev})
	case orderflow.OrderConfirmed:
		return p.settle(ctx, e, "inventory:commit", ev.OrderID, DecideCommit)
	case orderflow.OrderCancelled:
		return p.settle(ctx, e, "inventory:release", ev.OrderID, DecideRelease)
	}
	return nil
}

// settle commits or releases what the order reserved. It goes through the
// batcher of the order's SKUs, which holds this process's locks of them as
// reservations do: its stock events would otherwise move the SKUs' versions
// under a reservation batch deciding on them, which then conflicts and
// starts over, and one append settles many orders of a busy SKU.
func (p *Participants) settle(ctx context.Context, trigger eventstore.Event, action string, id orderflow.OrderID,
	decide func(orderflow.OrderID, Reservation) []Write) error {
	res, err := p.reservation(ctx, id)
	if err != nil || len(decide(id, res)) == 0 {
		return err
	}
	return p.settlers.do(ctx, skusOf(res.Lines), toSettle{trigger: trigger, action: action, id: id, res: res, decide: decide})
}

// settleBatch commits or releases the reservations of orders naming the
// same skus in one append. The first attempt decides on the reservations
// as the items read them: every write to a reservation stream expects the
// version it was decided on, so one that moved since conflicts, and the
// retry reads them all afresh. Every item is decided, in order, on its
// order's reservation as the items before it in the batch leave it: an
// order with a commit and then a release in one batch gets both, and a
// duplicate decides nothing the second time.
func (p *Participants) settleBatch(skus []orderflow.SKU, items []toSettle) error {
	ctx, cancel := context.WithTimeout(context.Background(), reserveTimeout)
	defer cancel()
	defer p.lockSKUs(skus)()
	const action = "inventory:settle"
	var (
		triggers []eventstore.Event
		ids      []orderflow.OrderID
		read     = map[orderflow.OrderID]Reservation{} // as the first item of each order read it
	)
	for _, it := range items {
		triggers = append(triggers, it.trigger)
		if _, ok := read[it.id]; !ok {
			ids, read[it.id] = append(ids, it.id), it.res
		}
	}
	a := eventstore.Append{Fingerprint: action, CommandID: batchCommandID(action, triggers)}
	first := true
	return p.appendRetrying(ctx, a, fmt.Sprintf("%s of %d orders", action, len(ids)), func(a *eventstore.Append) error {
		if !first {
			fresh, err := p.reservations(ctx, ids)
			if err != nil {
				return err
			}
			for i, id := range ids {
				read[id] = fresh[i]
			}
		}
		first = false
		cur := maps.Clone(read)
		for _, it := range items {
			writes := it.decide(it.id, cur[it.id])
			if err := addWrites(a, writes, metadata(it.trigger, it.action)); err != nil {
				return err
			}
			for _, w := range writes {
				if w.StreamID == it.id.ReservationStream() {
					for _, e := range w.Events {
						cur[it.id] = cur[it.id].Apply(e)
					}
				}
			}
		}
		return nil
	})
}

// paymentOnInventory charges orders whose stock is reserved.
func (p *Participants) paymentOnInventory(ctx context.Context, e eventstore.Event) error {
	payload, err := decode(e)
	if err != nil {
		return err
	}
	ev, ok := payload.(orderflow.InventoryReserved)
	if !ok {
		return nil
	}
	return p.react(ctx, e, "payment:charge", func(ctx context.Context) ([]Write, error) {
		// Both reads at once: they join the same batch of stream reads.
		var (
			o    command.Order
			oErr error
			wg   sync.WaitGroup
		)
		wg.Go(func() { o, oErr = p.order(ctx, ev.OrderID) })
		pay, err := p.payment(ctx, ev.OrderID)
		wg.Wait()
		if err = errors.Join(oErr, err); err != nil || pay.Version > 0 {
			return nil, err
		}
		// One idempotency key per order: a retried or duplicated trigger
		// never charges twice. While the breaker is open this fails fast
		// and the trigger is retried later; the order waits, it does not fail.
		key := "charge:" + ev.OrderID.String()
		var charge paymentprovider.Charge
		if ShouldCharge(string(o.Status), pay) {
			if charge, err = p.provider.Charge(ctx, ev.OrderID.String(), ev.TotalCents, key); err != nil {
				return nil, fmt.Errorf("charge order %s: %w", ev.OrderID, err)
			}
		} else {
			// Cancelled while the charge waited (a provider outage past the
			// deadline). An earlier attempt may still have charged (its
			// answer lost, or a second delivery of the trigger charging right
			// now): voiding the key returns that charge, recorded as captured
			// and then refunded like any late capture, or makes sure there
			// never is one.
			if charge, err = p.provider.Void(ctx, key); err != nil {
				return nil, fmt.Errorf("void the charge of order %s: %w", ev.OrderID, err)
			}
			if charge.DeclineReason == paymentprovider.VoidedDeclineReason {
				charge.DeclineReason = "order " + string(o.Status) + " before it was charged"
			}
		}
		return DecideChargeResult(ev.OrderID, pay, charge.Status == paymentprovider.StatusCaptured, ev.TotalCents, charge.ID, charge.DeclineReason), nil
	})
}

// refund gives back the order's captured payment if the order ended cancelled.
func (p *Participants) refund(ctx context.Context, trigger eventstore.Event, id orderflow.OrderID) error {
	return p.react(ctx, trigger, "payment:refund", func(ctx context.Context) ([]Write, error) {
		o, err := p.order(ctx, id)
		if err != nil || o.Status != command.StatusCancelled {
			return nil, err // only a cancelled order is refunded: no need to read its payment
		}
		pay, err := p.payment(ctx, id)
		if err != nil || !ShouldRefund(string(o.Status), pay) {
			return nil, err
		}
		if _, err := p.provider.Refund(ctx, pay.ChargeID, pay.AmountCents, "refund:"+id.String()); err != nil {
			return nil, fmt.Errorf("refund order %s: %w", id, err)
		}
		return DecideRefunded(id, pay), nil
	})
}

// paymentOnOrder refunds a cancelled order's capture.
func (p *Participants) paymentOnOrder(ctx context.Context, e eventstore.Event) error {
	payload, err := decode(e)
	if err != nil {
		return err
	}
	if ev, ok := payload.(orderflow.OrderCancelled); ok {
		return p.refund(ctx, e, ev.OrderID)
	}
	return nil
}

// paymentOnPayment refunds a capture that arrived after its order was
// cancelled.
func (p *Participants) paymentOnPayment(ctx context.Context, e eventstore.Event) error {
	payload, err := decode(e)
	if err != nil {
		return err
	}
	if ev, ok := payload.(orderflow.PaymentCaptured); ok {
		return p.refund(ctx, e, ev.OrderID)
	}
	return nil
}

// orderOnInventory rejects an order the inventory could not serve.
func (p *Participants) orderOnInventory(ctx context.Context, e eventstore.Event) error {
	payload, err := decode(e)
	if err != nil {
		return err
	}
	ev, ok := payload.(orderflow.InventoryRejected)
	if !ok {
		return nil
	}
	return p.react(ctx, e, "order:reject", func(ctx context.Context) ([]Write, error) {
		o, err := p.order(ctx, ev.OrderID)
		return orderWrite(o, command.DecideReject(o, ev.Reason, p.now())), err
	})
}

// orderOnPayment confirms a paid order, or cancels one whose payment failed.
func (p *Participants) orderOnPayment(ctx context.Context, e eventstore.Event) error {
	payload, err := decode(e)
	if err != nil {
		return err
	}
	switch ev := payload.(type) {
	case orderflow.PaymentCaptured:
		return p.react(ctx, e, "order:confirm", func(ctx context.Context) ([]Write, error) {
			o, err := p.order(ctx, ev.OrderID)
			return orderWrite(o, command.DecideConfirm(o, p.now())), err
		})
	case orderflow.PaymentFailed:
		return p.react(ctx, e, "order:cancel", func(ctx context.Context) ([]Write, error) {
			o, err := p.order(ctx, ev.OrderID)
			return orderWrite(o, command.DecideSagaCancel(o, orderflow.ReasonPaymentFailed, p.now())), err
		})
	}
	return nil
}

// orderWrite appends events to an order at the version they were decided on.
func orderWrite(o command.Order, events []orderflow.Event) []Write {
	if len(events) == 0 {
		return nil
	}
	return []Write{{StreamID: o.ID.Stream(), Expected: eventstore.Exactly(o.Version), Events: events}}
}
