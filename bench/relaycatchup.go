package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orderflow/breaker"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/relay"
)

// relaySource is the CloudEvents source of every benchmark message.
const relaySource = "/orderflow"

// checkpointPoll is how often a catch-up run reads the relay's checkpoint.
const checkpointPoll = 50 * time.Millisecond

// catchUpRun is the relay draining a backlog, or the raw producer sending
// the same messages, at one batch size.
type catchUpRun struct {
	Batch  int
	Events int64
	Took   time.Duration
	// Duplicates is how many more messages the topics hold than were sent.
	Duplicates int64
	CPU        cpuSplit
	GCs        uint32 // Go garbage collections during the run
	// Phases is where the relay's time went, batch by batch (relay only).
	Phases   *phaseTimes
	Problems []string
}

// Rate returns events (or messages) per second.
func (r catchUpRun) Rate() float64 {
	if r.Took <= 0 {
		return 0
	}
	return float64(r.Events) / r.Took.Seconds()
}

// measureCatchUp runs a relay with batch size batch over the backlog in the
// database behind pool (whose tracer is timer), from checkpoint zero to fresh
// topics, and times it until the checkpoint row holds the backlog's last
// position. Then it checks that the topics hold every event. With profile
// set, it writes a CPU profile of the run there.
func measureCatchUp(ctx context.Context, log *slog.Logger, pool *pgxpool.Pool, timer *sqlTimer, brokers []string, b backlog, batch int, profile string) (res catchUpRun, err error) {
	res = catchUpRun{Batch: batch, Events: b.Events, Phases: &phaseTimes{}}
	topics, err := createTopics(ctx, brokers, "relay")
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, topics.delete(ctx)) }()
	// A Store with its default Config, as the relay's tailer; its append
	// workers idle.
	store, err := eventstore.New(pool, eventstore.Config{})
	if err != nil {
		return res, err
	}
	defer store.Close()
	producer := relay.NewProducer(brokers)
	defer producer.Close()
	br, err := breaker.New(breaker.Config{Name: "kafka-bench"}, log)
	if err != nil {
		return res, err
	}
	// A checkpoint (and leader lock) of its own per run: each starts at zero.
	name := fmt.Sprintf("bench-catchup-%d", batch)
	r, err := relay.New(relay.Config{Name: name, TopicPrefix: topics.prefix, BatchSize: batch}, pool,
		&timedTailer{next: store, t: res.Phases}, &timedProducer{next: producer, t: res.Phases}, br, log)
	if err != nil {
		return res, err
	}
	poll, err := pool.Acquire(ctx)
	if err != nil {
		return res, err
	}
	defer poll.Release()

	if profile != "" {
		stop, err := startProfile(profile)
		if err != nil {
			return res, err
		}
		defer stop()
	}
	log.Info("relay catch-up", "batch", batch, "events", b.Events, "topics", topics.prefix+".*")
	timer.into(res.Phases)
	defer timer.into(nil)
	runCtx, cancel := context.WithCancel(ctx)
	var runErr error
	stopped := make(chan struct{})
	var gcBefore runtime.MemStats
	runtime.ReadMemStats(&gcBefore)
	database := pool.Config().ConnConfig.Database
	cpuBefore := sampleCPU(database)
	start := time.Now()
	go func() { runErr = r.Run(runCtx); close(stopped) }()
	reached, err := awaitCheckpoint(ctx, poll.Conn(), name, b.Last, stopped)
	res.Took = time.Since(start)
	res.CPU = sampleCPU(database).sub(cpuBefore)
	var gcAfter runtime.MemStats
	runtime.ReadMemStats(&gcAfter)
	res.GCs = gcAfter.NumGC - gcBefore.NumGC
	cancel()
	<-stopped
	if err = errors.Join(err, runErr); err != nil {
		return res, err
	}
	if !reached {
		res.Problems = append(res.Problems, fmt.Sprintf("the checkpoint did not reach %s within %s", b.Last, catchUpLimit))
	}
	counts, err := topics.count(ctx)
	if err != nil {
		return res, err
	}
	var problems []string
	res.Duplicates, problems = checkDelivered("relay", counts, b.Events)
	res.Problems = append(res.Problems, problems...)
	return res, nil
}

// catchUpLimit bounds one catch-up run.
const catchUpLimit = 3 * time.Minute

// awaitCheckpoint reads the relay's checkpoint every checkpointPoll until it
// is at last (true), catchUpLimit passes (false), or the relay stops.
func awaitCheckpoint(ctx context.Context, conn *pgx.Conn, name string, last eventstore.Position, stopped <-chan struct{}) (bool, error) {
	deadline := time.Now().Add(catchUpLimit)
	tick := time.NewTicker(checkpointPoll)
	defer tick.Stop()
	for {
		var at eventstore.Position
		err := conn.QueryRow(ctx, `select tx_id, seq from relay_checkpoints where name = $1`, name).Scan(&at.TxID, &at.Seq)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return false, fmt.Errorf("read checkpoint: %w", err)
		}
		if at.Compare(last) >= 0 {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-tick.C:
		case <-stopped:
			return false, errors.New("the relay stopped before catching up")
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// buildMessages returns the Kafka messages of the synthetic twins of backlog
// events lo..hi-1, as relay.Message builds them, for the topics under prefix.
func buildMessages(lo, hi int, prefix string) []kafka.Message {
	now := time.Now()
	msgs := make([]kafka.Message, 0, hi-lo)
	for i := lo; i < hi; i++ {
		msgs = append(msgs, relay.Message(backlogEvent(i, now), relaySource, prefix))
	}
	return msgs
}

// rawChunk is about how many messages the raw producer builds before it
// sends them. Building all at once would hold a heap of over a gigabyte that
// the relay never has, and the producer's allocations would then fault in
// fresh memory all the way (measured: a quarter fewer messages per second).
const rawChunk = 100_000

// measureRawProducer sends the synthetic twins of the n backlog events to
// fresh topics through a writer configured exactly as the relay's
// (relay.NewWriter: acks from all, murmur2, the same batch size), in
// synchronous WriteMessages calls of batch messages, one at a time as the
// relay makes them: the most the relay could do with this broker and
// client, with no database in the way. The messages are built in chunks of
// about rawChunk, each before its sending starts; only sending is timed.
func measureRawProducer(ctx context.Context, log *slog.Logger, brokers []string, n int64, batch int, profile string) (res catchUpRun, err error) {
	res = catchUpRun{Batch: batch, Events: n}
	topics, err := createTopics(ctx, brokers, "raw")
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, topics.delete(ctx)) }()
	writer := relay.NewWriter(brokers, batch)
	defer writer.Close()

	if profile != "" {
		stop, err := startProfile(profile)
		if err != nil {
			return res, err
		}
		defer stop()
	}
	log.Info("raw producer", "batch", batch, "messages", n, "topics", topics.prefix+".*")
	chunk := max(batch, rawChunk/batch*batch) // whole batches
	for lo := 0; lo < int(n); lo += chunk {
		msgs := buildMessages(lo, min(lo+chunk, int(n)), topics.prefix)
		runtime.GC() // the garbage of building, not of sending
		var gcBefore, gcAfter runtime.MemStats
		runtime.ReadMemStats(&gcBefore)
		cpuBefore := sampleCPU("")
		start := time.Now()
		for b := 0; b < len(msgs); b += batch {
			if err := writer.WriteMessages(ctx, msgs[b:min(b+batch, len(msgs))]...); err != nil {
				return res, fmt.Errorf("raw producer: write messages %d..: %.300s", lo+b, err)
			}
		}
		res.Took += time.Since(start)
		cpu := sampleCPU("").sub(cpuBefore)
		res.CPU = cpuSplit{Bench: res.CPU.Bench + cpu.Bench, Postgres: res.CPU.Postgres + cpu.Postgres,
			Kafka: res.CPU.Kafka + cpu.Kafka, Machine: res.CPU.Machine + cpu.Machine}
		runtime.ReadMemStats(&gcAfter)
		res.GCs += gcAfter.NumGC - gcBefore.NumGC
	}

	counts, err := topics.count(ctx)
	if err != nil {
		return res, err
	}
	var problems []string
	res.Duplicates, problems = checkDelivered("raw producer", counts, res.Events)
	res.Problems = append(res.Problems, problems...)
	return res, nil
}

// startProfile starts a CPU profile into path and returns its stop.
func startProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
