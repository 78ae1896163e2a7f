package eventstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/internal/dbtest"
)

// answerCutter is a TCP proxy in front of PostgreSQL that, once armed, drops
// the first connection whose server side answers an append that stored
// events, instead of passing the answer on: the append has committed, and
// its caller never hears so.
type answerCutter struct {
	ln     net.Listener
	target string
	armed  atomic.Bool
	cuts   atomic.Int32
}

func newAnswerCutter(t *testing.T, target string) *answerCutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &answerCutter{ln: ln, target: target}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { c.serve(client) })
		}
	})
	return c
}

func (c *answerCutter) serve(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", c.target)
	if err != nil {
		return
	}
	defer server.Close()
	go func() {
		_, _ = io.Copy(server, client)
		server.Close()
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 {
			// orderflow_append's answer for an append that stored events.
			if bytes.Contains(buf[:n], []byte(`"s": "ok"`)) && c.armed.CompareAndSwap(true, false) {
				c.cuts.Add(1)
				return // both sides closed; the answer is lost
			}
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// An append whose answer is lost after it committed is reported as of
// unknown outcome, and never retried: retried, it would be told that it
// conflicts with itself (its stream is already at the version it wrote),
// and a client would place the order again. Retrying with the same command
// id tells what happened.
func TestAnAppendWhoseAnswerIsLostIsOfUnknownOutcome(t *testing.T) {
	t.Parallel()
	cfg, err := pgxpool.ParseConfig(dbtest.MustURL(t))
	if err != nil {
		t.Fatal(err)
	}
	cutter := newAnswerCutter(t, net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))))
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = "127.0.0.1", uint16(cutter.ln.Addr().(*net.TCPAddr).Port)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	// One worker, so appends made while one is under way share the next
	// transaction.
	store, err := eventstore.New(pool, eventstore.Config{AppendWorkers: 1, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)

	const n = 8
	appendOf := func(i int) eventstore.Append {
		a := one(fmt.Sprintf("lost-%d", i), eventstore.NoStream, ev("Placed", i))
		a.CommandID, a.Fingerprint = fmt.Sprintf("lost-cmd-%d", i), "place"
		return a
	}
	cutter.armed.Store(true)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = store.Append(context.Background(), appendOf(i)) })
	}
	wg.Wait()
	if cutter.cuts.Load() != 1 {
		t.Fatalf("the proxy cut %d answers, want 1", cutter.cuts.Load())
	}
	var unknown []int
	for i, err := range errs {
		switch {
		case errors.Is(err, eventstore.ErrOutcomeUnknown):
			unknown = append(unknown, i)
		case err != nil:
			t.Fatalf("append %d: %v; want success or an unknown outcome, never a conflict with itself", i, err)
		}
	}
	if len(unknown) == 0 {
		t.Fatalf("no append was told its outcome is unknown: %v", errs)
	}
	// Every append was stored, those whose answer was lost included, and
	// retrying them with their command id says so.
	for _, i := range unknown {
		res, err := store.Append(context.Background(), appendOf(i))
		if !errors.Is(err, eventstore.ErrDuplicateCommand) || len(res.Streams) != 1 || res.Streams[0].Version != 1 {
			t.Fatalf("retry of append %d, whose answer was lost: %+v, %v; want the duplicate of version 1", i, res, err)
		}
	}
	for i := range n {
		events, err := store.ReadStream(context.Background(), fmt.Sprintf("lost-%d", i), 1, 0)
		if err != nil || len(events) != 1 {
			t.Fatalf("stream lost-%d: %d events, %v; want its one event", i, len(events), err)
		}
	}
}

// A batch that never reached the server (no connection could be made) fails
// each of its appends at once: retried alone, each would wait out its own
// timeout on the same unreachable server, one after another.
func TestAppendsNeverSentAreNotRetriedAlone(t *testing.T) {
	t.Parallel()
	// A server that accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	pool, err := pgxpool.New(context.Background(), "postgres://orderflow:x@"+ln.Addr().String()+"/orderflow?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	reg := prometheus.NewRegistry()
	s, err := eventstore.New(pool, eventstore.Config{AppendWorkers: 1, AppendTimeout: 300 * time.Millisecond, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)

	const appends = 10
	var wg sync.WaitGroup
	errs := make(chan error, appends)
	for i := range appends {
		wg.Go(func() {
			_, err := s.Append(context.Background(), eventstore.Append{Streams: []eventstore.StreamAppend{{
				StreamID: fmt.Sprintf("order-%d", i), Expected: eventstore.NoStream,
				Events: []eventstore.EventData{{Type: "A", Data: []byte(`{}`)}}}}})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, eventstore.ErrUnavailable) || errors.Is(err, eventstore.ErrOutcomeUnknown) {
			t.Fatalf("append: %v; want ErrUnavailable, a failure that certainly stored nothing", err)
		}
	}
	// One transaction attempt per batch: with one worker, the first append
	// goes alone and the rest queue behind it.
	families, _ := reg.Gather() // the gauges that query the server fail; the histogram is there
	for _, f := range families {
		if f.GetName() != "orderflow_eventstore_append_batch_size" {
			continue
		}
		if n := f.GetMetric()[0].GetHistogram().GetSampleCount(); n >= appends {
			t.Fatalf("%d append transactions tried for %d appends; want one per batch, none per append", n, appends)
		}
		return
	}
	t.Fatal("no orderflow_eventstore_append_batch_size metric")
}
