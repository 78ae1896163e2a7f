package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// renderRelay writes the relay section's markdown.
func renderRelay(cfg config, m machine, b backlog, backlogProblems []string, runs []relayCatchUp, lat latencyRun, notes []string) string {
	var s strings.Builder
	s.WriteString("## Kafka relay\n\n")
	s.WriteString(m.markdown())
	fmt.Fprintf(&s, "- Kafka: %s; every point on fresh topics (4 topics × %d partitions, 1 replica), deleted afterwards\n",
		strings.Join(cfg.kafkaBrokers, ","), relayPartitions)
	fmt.Fprintf(&s, "- Backlog: %d events over %d streams (a third each order, sku, payment), %d bytes of JSON data and metadata per event on average; inserted and vacuumed in %s\n",
		b.Events, b.Streams, perEvent(b.Bytes, b.Events), b.Took.Round(time.Second))
	fmt.Fprintf(&s, "- Targets: catch-up ≥ %d events/s and ≥ %.1f× the raw producer; append-to-consumer p99 ≤ %s at %d events/s\n\n",
		targetCatchUp, targetCatchUpRatio, targetLatencyP99, latencyRate)

	var problems strings.Builder
	problems.WriteString(problemList("backlog", backlogProblems))

	s.WriteString("### Catch-up: draining the backlog\n\n")
	t := table{header: []string{"Batch", "Relay events/s", "Raw producer msgs/s", "Relay/raw", "Relay time", "Raw time", "Other work relay / raw", "Duplicates", "Check"}}
	var lead, fastest *relayCatchUp
	for i, r := range runs {
		all := append(append([]string{}, backlogProblems...), r.Relay.Problems...)
		all = append(all, r.Raw.Problems...)
		batch := fmt.Sprint(r.Relay.Batch)
		if r.Relay.Batch == cfg.relayBatch {
			batch = "**" + batch + "** (-relay-batch)"
		}
		t.add(batch, perSecond(r.Relay.Rate()), perSecond(r.Raw.Rate()), ratio(r.Relay.Rate(), r.Raw.Rate()),
			secs(r.Relay.Took), secs(r.Raw.Took), otherWork(r.Relay.CPU, r.Relay.Took)+" / "+otherWork(r.Raw.CPU, r.Raw.Took),
			fmt.Sprint(r.Relay.Duplicates), validity(all))
		problems.WriteString(problemList(fmt.Sprintf("relay, batch %d", r.Relay.Batch), r.Relay.Problems))
		problems.WriteString(problemList(fmt.Sprintf("raw producer, batch %d", r.Raw.Batch), r.Raw.Problems))
		if len(all) > 0 {
			continue
		}
		if r.Relay.Batch == cfg.relayBatch {
			lead = &runs[i]
		}
		if fastest == nil || r.Relay.Rate() > fastest.Relay.Rate() {
			fastest = &runs[i]
		}
	}
	s.WriteString(t.String())
	if lead != nil {
		rate, rel := lead.Relay.Rate(), lead.Relay.Rate()/lead.Raw.Rate()
		fmt.Fprintf(&s, "\nAt batch %d: %s events/s, %.2f× the raw producer: the %d events/s target is %s, the %.1f× target is %s.",
			lead.Relay.Batch, perSecond(rate), rel, targetCatchUp, metOrMissed(rate >= targetCatchUp),
			targetCatchUpRatio, metOrMissed(rel >= targetCatchUpRatio))
	} else {
		fmt.Fprintf(&s, "\nAt batch %d: no valid catch-up figure.", cfg.relayBatch)
	}
	if fastest != nil {
		fmt.Fprintf(&s, " Fastest: batch %d, %s events/s (%s).", fastest.Relay.Batch,
			perSecond(fastest.Relay.Rate()), ratio(fastest.Relay.Rate(), fastest.Raw.Rate()))
	}
	s.WriteString("\n")

	s.WriteString("\n#### Where the relay's time and CPU go\n\n")
	t = table{header: []string{"Batch", "Batches", "Read (ReadAll)", "Write (WriteMessages)", "Checkpoint (UPDATE)", "Handover (callback)", "Publisher's other time",
		"Relay CPU/event: bench, PostgreSQL, Kafka, machine", "Raw CPU/msg: bench, Kafka, machine", "Go GCs relay / raw"}}
	for _, r := range runs {
		p := r.Relay.Phases
		n := int64(len(p.Sizes))
		wall := r.Relay.Took
		phase := func(total time.Duration, per int64) string {
			return fmt.Sprintf("%s (%.0f%%, %s/batch)", secs(total), share(total, wall), ms(perOp(total, per)))
		}
		other := max(0, wall-sum(p.Write)-sum(p.Checkpoint))
		rc, wc := r.Relay.CPU.perEvent(r.Relay.Events), r.Raw.CPU.perEvent(r.Raw.Events)
		t.add(fmt.Sprint(r.Relay.Batch), fmt.Sprint(n),
			phase(sum(p.Read), int64(len(p.Read))), phase(sum(p.Write), int64(len(p.Write))),
			phase(sum(p.Checkpoint), int64(len(p.Checkpoint))), phase(sum(p.Handover), int64(len(p.Handover))), phase(other, n),
			fmt.Sprintf("%s, %s, %s, %s", us(rc.Bench), us(rc.Postgres), us(rc.Kafka), us(rc.Machine)),
			fmt.Sprintf("%s, %s, %s", us(wc.Bench), us(wc.Kafka), us(wc.Machine)),
			fmt.Sprintf("%d / %d", r.Relay.GCs, r.Raw.GCs))
	}
	s.WriteString(t.String())

	fmt.Fprintf(&s, "\n### Latency: append to consumer at %d events/s\n\n", lat.Rate)
	fmt.Fprintf(&s, "Batch %d; offered %d/s, achieved %s/s; %d events measured (%d appended in all); %d relay batches of %.1f events on average; %d duplicates; send lag p99 %s.\n\n",
		lat.Batch, lat.Rate, perSecond(lat.Achieved), lat.Measured, lat.Appended, len(lat.Phases.Sizes), meanSize(lat.Phases.Sizes),
		lat.Duplicates, ms(lat.SendLag.pct(0.99)))
	lp := lat.Phases
	fmt.Fprintf(&s, "Per relay batch, mean / p99: Read %s / %s, Write %s / %s, Checkpoint %s / %s, Handover %s / %s.\n\n",
		ms(mean(lp.Read)), ms(p99(lp.Read)), ms(mean(lp.Write)), ms(p99(lp.Write)),
		ms(mean(lp.Checkpoint)), ms(p99(lp.Checkpoint)), ms(mean(lp.Handover)), ms(p99(lp.Handover)))
	t = table{header: []string{"From the scheduled append to", "p50", "p90", "p99", "max", "Check"}}
	for _, row := range []struct {
		name string
		l    latencies
	}{
		{"Append returned (committed)", lat.Committed},
		{"the relay's WriteMessages returned (broker acknowledged)", lat.Acked},
		{"**a consumer received it**", lat.Received},
		{"(per event: received − committed, the relay's and consumer's share)", lat.RelayDelay},
	} {
		t.add(row.name, ms(row.l.pct(0.5)), ms(row.l.pct(0.9)), ms(row.l.pct(0.99)), ms(row.l.max()), validity(lat.Problems))
	}
	s.WriteString(t.String())
	p99 := lat.Received.pct(0.99)
	pe := lat.CPU.perEvent(lat.Measured)
	fmt.Fprintf(&s, "\nThe p99 target of %s is %s (%s). CPU in the measured window per event: bench (generator, store, relay, consumers) %s, PostgreSQL %s, Kafka %s, machine %s; other work %s.\n",
		targetLatencyP99, metOrMissed(len(lat.Problems) == 0 && p99 > 0 && p99 <= targetLatencyP99), ms(p99),
		us(pe.Bench), us(pe.Postgres), us(pe.Kafka), us(pe.Machine), otherWork(lat.CPU, lat.Duration))
	problems.WriteString(problemList(fmt.Sprintf("latency at %d/s", lat.Rate), lat.Problems))

	if problems.Len() > 0 {
		s.WriteString("\n" + problems.String())
	}
	for _, n := range notes {
		fmt.Fprintf(&s, "\n- **Note:** %s\n", n)
	}
	s.WriteString(`
- Catch-up: a fresh migrated database gets the backlog by SQL (` + "`insert … select … from generate_series`" + `,
  one transaction per 100,000 events, so the log is ordered by (tx_id, seq) as appends leave it; event i
  is version i/10,000+1 of stream i mod 10,000, so every stream's versions run 1, 2, 3 … in log order;
  ~200 bytes of JSON data, metadata with a correlation id and a traceparent, ids from gen_random_uuid()),
  then ` + "`vacuum (analyze)`" + `, untimed. At each batch size a relay (` + "`relay.New`" + ` with ` + "`relay.NewProducer`" + `, a
  breaker, an ` + "`eventstore.Store`" + ` as its tailer, its own checkpoint name so it starts at zero) publishes to
  fresh topics. Relay events/s: backlog ÷ the time from ` + "`Run`" + ` until its row in relay_checkpoints, read
  every 50 ms, holds the last event's position; the relay moves it only after the broker acknowledged, so it
  is the acknowledged position.
- Raw producer: a kafka-go Writer from ` + "`relay.NewWriter`" + ` (acks from all in-sync replicas, murmur2 by key,
  the same batch size), no relay and no database, sends the same number of messages, built by
  ` + "`relay.Message`" + ` from synthetic twins of the backlog's events (same keys, topics, payloads, headers), in
  synchronous WriteMessages calls of one batch each, one at a time as the relay makes them, to fresh topics
  of its own. The messages are built in chunks of 100,000 before each chunk's sending is timed (building all
  1,000,000 at once holds a heap the relay never has, which slowed the producer by about a quarter).
- Check: afterwards the topics' partitions must hold, in all (last offset − first offset, summed), exactly
  the events sent; more are duplicates (counted), fewer are losses and mark the figure INVALID. The backlog
  is checked against the raw producer's synthetic events on a sample of rows.
- Where the time goes, observed from outside the relay (which is unchanged), so it holds whether the relay
  publishes one batch at a time or reads ahead while it publishes: Read is each ReadAll of its tail (query,
  row scan, metadata decoding; timed by a pgx tracer on the relay's pool, whose config its lock connection
  copies), Write each WriteMessages of its producer until the broker acknowledged, Checkpoint each UPDATE
  of relay_checkpoints, committed (the same tracer), Handover each batch callback it gave Subscribe, from call
  to return (the whole publish when it publishes inside the callback, the wait for a busy publisher when it
  hands batches over). Publisher's other time: the run's wall time less Write and Checkpoint, that is
  building messages, the breaker, and waiting for the next batch; the relay writes its checkpoint behind
  the publisher, overlapping the writes, so this is a lower bound (0 when all of it overlaps).
  Percentages are of the wall time; phases that overlap add up to more than 100%.
  CPU/event: CPU time over the run, per event, of this process (the relay, or the raw producer), of the
  PostgreSQL processes serving the run's database (its backends and the shared WAL writer, checkpointer …),
  of the Kafka broker's JVM and of the whole machine (/proc). Other work: the machine's busy time that none
  of these account for, in cores kept busy on average: the kernel's work for them, and anything else that
  ran meanwhile. From 0.25 cores on the point shared the machine and its figures are skewed (marked shared).
  ` + "`-relay-cpuprofile=PREFIX`" + ` writes a Go CPU profile of each run.
- Latency: the relay as ` + "`orderflow serve`" + ` builds it by default (pool of 20, 2 append workers unless
  ORDERFLOW_APPEND_WORKERS says otherwise, breaker 5 failures / 5s) on a fresh database and fresh topics;
  an open-loop generator calls ` + "`Store.Append`" + ` with one event on one of 1,000 streams every 0.5 ms whatever
  the answers, for the warm-up and then the measured duration; each event's data carries its scheduled
  time (Unix ns). kafka-go Readers on every partition (no consumer group, from the first offset) take the
  receive time. Latencies run from the scheduled time, so a stall is charged to every event it delays.
  Every appended event must arrive within 30s of the last append, each stream in version order
  (` + "`kafkatest.Verify`" + `); otherwise the figure is INVALID.
- Client (relay, producer, generator, consumers), PostgreSQL and Kafka share the machine's cores. Before each
  point the machine must be quiet (under 15% busy for a second, waiting at most 10s).
`)
	return s.String()
}

// busyOther is how much other work, in cores kept busy on average, marks a
// point as shared: a quiet point shows only the kernel's share, well below.
const busyOther = 0.25

// otherWork formats the CPU that none of the measured parts account for, as
// cores kept busy on average over d, flagged when the point shared the
// machine.
func otherWork(c cpuSplit, d time.Duration) string {
	if d <= 0 {
		return "–"
	}
	cores := c.other().Seconds() / d.Seconds()
	if cores >= busyOther {
		return fmt.Sprintf("**%.2f cores (shared)**", cores)
	}
	return fmt.Sprintf("%.2f cores", cores)
}

// secs formats a duration in seconds.
func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// share returns d as a percentage of total.
func share(d, total time.Duration) float64 {
	if total == 0 {
		return 0
	}
	return 100 * float64(d) / float64(total)
}

// perEvent divides n over events, 0 when there are none.
func perEvent(n, events int64) int64 {
	if events == 0 {
		return 0
	}
	return n / events
}

// mean returns the mean of ds, 0 when empty.
func mean(ds []time.Duration) time.Duration { return perOp(sum(ds), int64(len(ds))) }

// p99 returns the 99th percentile of ds, leaving ds as it is.
func p99(ds []time.Duration) time.Duration { return summarise(slices.Clone(ds)).pct(0.99) }

// meanSize returns the mean of sizes, 0 when empty.
func meanSize(sizes []int) float64 {
	if len(sizes) == 0 {
		return 0
	}
	total := 0
	for _, n := range sizes {
		total += n
	}
	return float64(total) / float64(len(sizes))
}

func metOrMissed(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}
