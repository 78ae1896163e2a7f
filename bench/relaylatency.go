package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow/breaker"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/relay"
)

const (
	// latencyStreams is how many streams the latency point appends to.
	latencyStreams = 1000
	// deliveryLimit bounds the wait, after the last append, for the
	// consumers to receive every appended event.
	deliveryLimit = 30 * time.Second
)

// latencyRun is the relay live at a constant append rate: how long each
// event took from its scheduled append to a consumer.
type latencyRun struct {
	Batch    int
	Rate     int
	Duration time.Duration
	// Appended is how many appends succeeded over the whole run; Measured,
	// how many of those were scheduled in the measured window.
	Appended, Measured int64
	// Achieved is Measured per second of the measured window, until the
	// last measured append committed.
	Achieved float64
	// Latencies of the measured events from their scheduled append time:
	// until Append returned (committed), until the relay's WriteMessages
	// returned (the broker acknowledged), until a consumer received it.
	Committed, Acked, Received latencies
	// RelayDelay is, per measured event, received − committed: the relay's
	// share (and the consumer's), without the append's.
	RelayDelay latencies
	SendLag    latencies // how late the generator called Append
	Duplicates int       // messages received twice or more
	Phases     *phaseTimes
	CPU        cpuSplit // of the measured window
	Problems   []string
}

// latencyData is the payload of a latency event, in jsonb's key order: its
// number, padding to ~200 bytes like the backlog, and its scheduled append
// time in Unix nanoseconds.
type latencyData struct {
	N      int    `json:"n"`
	Pad    string `json:"pad"`
	SentAt int64  `json:"sent_at"`
}

const latencyPad = "relay latency event: the padding brings the payload to about the size of a real OrderPlaced, 200 bytes or so."

// latencyStream returns the stream of latency event i: a thousand streams,
// a third in each bounded context.
func latencyStream(i int) string {
	s := i % latencyStreams
	return backlogCategories[s%3] + "-" + md5UUID("latency"+strconv.Itoa(s))
}

// deliveries records when each event was acknowledged and received, by event
// number (the first time only), from any goroutine.
type deliveries struct {
	acked, received []atomic.Int64 // Unix nanoseconds; 0: not yet
	dups            atomic.Int64

	mu   sync.Mutex
	msgs []kafka.Message // as received, values dropped: for kafkatest.Verify
}

// number returns the event number and scheduled time carried by a message.
func number(m kafka.Message) (latencyData, bool) {
	var d latencyData
	if err := json.Unmarshal(m.Value, &d); err != nil || d.SentAt == 0 {
		return d, false
	}
	return d, true
}

// ackProducer records when the broker acknowledged each message.
type ackProducer struct {
	next relay.Producer
	d    *deliveries
}

func (p *ackProducer) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	err := p.next.WriteMessages(ctx, msgs...)
	if err != nil {
		return err
	}
	now := time.Now().UnixNano()
	for _, m := range msgs {
		if d, ok := number(m); ok && d.N >= 0 && d.N < len(p.d.acked) {
			p.d.acked[d.N].CompareAndSwap(0, now)
		}
	}
	return nil
}

// measureRelayLatency runs orderflow's relay (relay.New, relay.NewProducer, a
// breaker; the Store and pool as `orderflow serve` configures them by default)
// on a fresh database and fresh topics, appends single events through
// Store.Append at latencyRate per second in an open loop for warm-up plus
// duration, and times each measured event from its scheduled append to its
// arrival at consumers reading every partition from the start. It checks
// that every appended event arrived, each stream in version order.
func measureRelayLatency(ctx context.Context, log *slog.Logger, cfg config, batch int) (res latencyRun, err error) {
	res = latencyRun{Batch: batch, Rate: latencyRate, Duration: cfg.duration, Phases: &phaseTimes{}}
	db, err := createDatabase(ctx, cfg.databaseURL, true)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, db.drop(ctx)) }()
	topics, err := createTopics(ctx, cfg.kafkaBrokers, "latency")
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, topics.delete(ctx)) }()

	poolCfg, err := pgxpool.ParseConfig(db.url)
	if err != nil {
		return res, err
	}
	poolCfg.MaxConns = 20 // orderflow serve's default
	timer := &sqlTimer{t: res.Phases}
	poolCfg.ConnConfig.Tracer = timer
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return res, err
	}
	defer pool.Close()
	workers := 2 // orderflow serve's default
	if n, err := strconv.Atoi(os.Getenv("ORDERFLOW_APPEND_WORKERS")); err == nil && n > 0 {
		workers = n
	}
	store, err := eventstore.New(pool, eventstore.Config{AppendWorkers: workers})
	if err != nil {
		return res, err
	}
	defer store.Close()

	interval := time.Second / time.Duration(latencyRate)
	total := int((cfg.warmup + cfg.duration) / interval)
	first := int(cfg.warmup / interval)
	d := &deliveries{acked: make([]atomic.Int64, total), received: make([]atomic.Int64, total)}

	// The relay, as orderflow serve builds it.
	producer := relay.NewProducer(cfg.kafkaBrokers)
	defer producer.Close()
	br, err := breaker.New(breaker.Config{Name: "kafka-bench-latency", Failures: 5, OpenTimeout: 5 * time.Second}, log)
	if err != nil {
		return res, err
	}
	r, err := relay.New(relay.Config{TopicPrefix: topics.prefix, BatchSize: batch}, pool,
		&timedTailer{next: store, t: res.Phases}, &timedProducer{next: &ackProducer{next: producer, d: d}, t: res.Phases}, br, log)
	if err != nil {
		return res, err
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	defer stopRelay()
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(relayCtx) }()
	defer func() {
		stopRelay()
		err = errors.Join(err, <-relayDone)
	}()

	// The consumers: every partition from its first offset, no group.
	readCtx, stopReading := context.WithCancel(ctx)
	var readers sync.WaitGroup
	defer func() { stopReading(); readers.Wait() }()
	var readErr atomic.Pointer[error]
	for _, topic := range topics.names {
		for p := range relayPartitions {
			rd := kafka.NewReader(kafka.ReaderConfig{
				Brokers: cfg.kafkaBrokers, Topic: topic, Partition: p,
				MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 250 * time.Millisecond, ReadLagInterval: -1,
			})
			readers.Go(func() {
				defer rd.Close()
				for {
					m, err := rd.ReadMessage(readCtx)
					if err != nil {
						if readCtx.Err() == nil && !errors.Is(err, net.ErrClosed) {
							err = fmt.Errorf("read %s/%d: %w", topic, p, err)
							readErr.CompareAndSwap(nil, &err)
						}
						return
					}
					now := time.Now().UnixNano()
					if n, ok := number(m); ok && n.N >= 0 && n.N < total {
						if !d.received[n.N].CompareAndSwap(0, now) {
							d.dups.Add(1)
						}
					}
					m.Value = nil
					d.mu.Lock()
					d.msgs = append(d.msgs, m)
					d.mu.Unlock()
				}
			})
		}
	}
	if err := awaitLeader(ctx, r); err != nil {
		return res, err
	}

	if path := profilePath(cfg, "latency", batch); path != "" {
		stop, err := startProfile(path)
		if err != nil {
			return res, err
		}
		defer stop()
	}
	log.Info("relay latency", "rate", latencyRate, "batch", batch, "warmup", cfg.warmup, "duration", cfg.duration, "topics", topics.prefix+".*")
	committed := make([]int64, total) // Unix nanoseconds; 0: failed
	lag := make([]time.Duration, total)
	var (
		appendErrs errorTally
		inflight   atomic.Int64
		appends    sync.WaitGroup
	)
	start := time.Now()
	var cpuBefore, cpuAfter cpuSplit
	cpuDone := make(chan struct{})
	go func() { // the measured window's CPU
		defer close(cpuDone)
		if sleepUntil(ctx, start.Add(cfg.warmup)) {
			cpuBefore = sampleCPU(db.name)
			if sleepUntil(ctx, start.Add(cfg.warmup+cfg.duration)) {
				cpuAfter = sampleCPU(db.name)
			}
		}
	}()
	for i := range total {
		sched := start.Add(time.Duration(i) * interval)
		if w := time.Until(sched); w > 0 {
			time.Sleep(w)
		}
		if ctx.Err() != nil {
			break
		}
		if inflight.Load() >= maxInFlight {
			appendErrs.add(fmt.Errorf("not sent: %d appends already in flight", maxInFlight))
			continue
		}
		inflight.Add(1)
		appends.Go(func() {
			defer inflight.Add(-1)
			lag[i] = time.Since(sched)
			data, _ := json.Marshal(latencyData{N: i, Pad: latencyPad, SentAt: sched.UnixNano()})
			_, err := store.Append(ctx, eventstore.Append{Streams: []eventstore.StreamAppend{{
				StreamID: latencyStream(i), Expected: eventstore.Any,
				Events: []eventstore.EventData{{Type: "LatencyProbe", Data: data, Metadata: eventstore.Metadata{
					CorrelationID: fmt.Sprintf("corr-%d", i), TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
				}}},
			}}})
			if err != nil {
				appendErrs.add(err)
				return
			}
			committed[i] = time.Now().UnixNano()
		})
	}
	appends.Wait()
	<-cpuDone
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.CPU = cpuAfter.sub(cpuBefore)
	res.Problems = append(res.Problems, appendErrs.problems()...)

	// Every appended event must arrive; wait for the stragglers.
	deadline := time.Now().Add(deliveryLimit)
	missing := func() int {
		n := 0
		for i := range total {
			if committed[i] != 0 && d.received[i].Load() == 0 {
				n++
			}
		}
		return n
	}
	for missing() > 0 && time.Now().Before(deadline) && readErr.Load() == nil {
		if !sleepUntil(ctx, time.Now().Add(50*time.Millisecond)) {
			return res, ctx.Err()
		}
	}
	stopReading()
	readers.Wait()
	if e := readErr.Load(); e != nil {
		return res, *e
	}
	if n := missing(); n > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d appended events did not reach the consumers within %s", n, deliveryLimit))
	}
	if delivery, err := kafkatest.Verify(d.msgs); err != nil {
		res.Problems = append(res.Problems, "delivery order: "+err.Error())
	} else if got, want := len(delivery.IDs), countCommitted(committed); got != want {
		res.Problems = append(res.Problems, fmt.Sprintf("the consumers received %d distinct events, %d appends succeeded", got, want))
	}
	res.Duplicates = int(d.dups.Load())

	var committedLat, ackedLat, receivedLat, relayLat, lags []time.Duration
	var lastCommit int64
	for i := range total {
		if committed[i] == 0 {
			continue
		}
		res.Appended++
		if i < first {
			continue
		}
		sched := start.Add(time.Duration(i) * interval).UnixNano()
		res.Measured++
		lastCommit = max(lastCommit, committed[i])
		committedLat = append(committedLat, time.Duration(committed[i]-sched))
		lags = append(lags, lag[i])
		if a := d.acked[i].Load(); a != 0 {
			ackedLat = append(ackedLat, time.Duration(a-sched))
		}
		if rcv := d.received[i].Load(); rcv != 0 {
			receivedLat = append(receivedLat, time.Duration(rcv-sched))
			relayLat = append(relayLat, time.Duration(rcv-committed[i]))
		}
	}
	res.Committed, res.Acked, res.Received, res.SendLag = summarise(committedLat), summarise(ackedLat), summarise(receivedLat), summarise(lags)
	res.RelayDelay = summarise(relayLat)
	if window := time.Unix(0, lastCommit).Sub(start.Add(time.Duration(first) * interval)); res.Measured > 0 && window > 0 {
		res.Achieved = float64(res.Measured) / window.Seconds()
	}
	return res, nil
}

// countCommitted counts the successful appends.
func countCommitted(committed []int64) int {
	n := 0
	for _, c := range committed {
		if c != 0 {
			n++
		}
	}
	return n
}

// awaitLeader waits until r leads, for at most 30s.
func awaitLeader(ctx context.Context, r *relay.Relay) error {
	deadline := time.Now().Add(30 * time.Second)
	for !r.IsLeader() {
		if time.Now().After(deadline) {
			return errors.New("the relay did not become the leader within 30s")
		}
		if !sleepUntil(ctx, time.Now().Add(10*time.Millisecond)) {
			return ctx.Err()
		}
	}
	return nil
}
