package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// loadRun is one load point against one HTTP target: closed loop (Clients
// set) or open loop (Rate set).
type loadRun struct {
	Target   string
	Clients  int // closed loop: concurrent clients
	Rate     int // open loop: offered requests per second
	Duration time.Duration
	// OK is how many requests answered 201 in the measured window (closed
	// loop) or of the requests scheduled in it (open loop).
	OK int64
	// Achieved is OK per second of the measured window (open loop: until
	// the last measured request completed).
	Achieved float64
	Latency  latencies
	// SendLag is, in the open loop, how late the generator sent each
	// measured request after its scheduled time; it is part of Latency.
	SendLag latencies
	Errors  errorTally // anything but the expected 2xx, warm-up included
}

// errorTally counts failed requests and keeps the first few reasons.
type errorTally struct {
	mu     sync.Mutex
	n      int64
	sample []string
}

func (t *errorTally) add(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n++
	if len(t.sample) < 3 {
		t.sample = append(t.sample, err.Error())
	}
}

// problems returns why the figure is invalid: empty when no request failed.
func (t *errorTally) problems() []string {
	if t.n == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%d requests failed (not the expected 2xx), e.g. %q", t.n, t.sample)}
}

// newLoadClient returns a client that keeps a connection per concurrent
// request alive, so the load generator measures requests, not handshakes.
func newLoadClient(maxConns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: maxConns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// placeOrder POSTs order n to baseURL/v1/orders and returns an error unless
// the answer is 201.
func placeOrder(ctx context.Context, client *http.Client, baseURL string, n int64) error {
	body := make([]byte, 0, 96)
	body = append(body, `{"customer_id":"c-`...)
	body = strconv.AppendInt(body, n, 10)
	body = append(body, `","lines":[{"sku":"SKU-1","quantity":1,"unit_price_cents":1999}]}`...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/v1/orders", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return expectStatus(client, req, http.StatusCreated)
}

// expectStatus sends req and returns an error unless the answer has status
// want. The body is drained, so the connection is reused.
func expectStatus(client *http.Client, req *http.Request, want int) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(snippet))
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// closedLoop runs clients concurrent clients, each sending its next order as
// soon as the last one is answered, for warmup then duration; only requests
// completed in the measured window count. It returns ctx's error if ctx ends.
func closedLoop(ctx context.Context, client *http.Client, target, baseURL string, clients int, warmup, duration time.Duration) (*loadRun, error) {
	res := &loadRun{Target: target, Clients: clients, Duration: duration}
	warmEnd := time.Now().Add(warmup)
	end := warmEnd.Add(duration)
	var (
		seq atomic.Int64
		ok  atomic.Int64
		mu  sync.Mutex
		lat []time.Duration
		wg  sync.WaitGroup
	)
	for range clients {
		wg.Go(func() {
			mine := make([]time.Duration, 0, 1<<12)
			defer func() {
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
			for ctx.Err() == nil {
				began := time.Now()
				if !began.Before(end) {
					return
				}
				err := placeOrder(ctx, client, baseURL, seq.Add(1))
				done := time.Now()
				if err != nil {
					if ctx.Err() == nil {
						res.Errors.add(err)
					}
					continue
				}
				if !done.Before(warmEnd) && done.Before(end) {
					ok.Add(1)
					mine = append(mine, done.Sub(began))
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.OK = ok.Load()
	res.Achieved = float64(res.OK) / duration.Seconds()
	res.Latency = summarise(lat)
	return res, nil
}

// maxInFlight bounds the open loop's outstanding requests; past it the
// target has fallen hopelessly behind, and further requests are counted as
// errors rather than piling up without limit.
const maxInFlight = 2048

// openLoop sends orders at a constant rate for warmup then duration,
// whether or not earlier requests have been answered. Latency runs from the
// time a request was scheduled, not sent, so a stalled target is charged for
// the requests it delayed (no coordinated omission). It returns ctx's error
// if ctx ends.
func openLoop(ctx context.Context, client *http.Client, target, baseURL string, rate int, warmup, duration time.Duration) (*loadRun, error) {
	return openLoopWith(ctx, client, target, rate, warmup, duration, func(ctx context.Context, c *http.Client, n int64) error {
		return placeOrder(ctx, c, baseURL, n)
	})
}

// openLoopWith is openLoop sending request n (1, 2, ...) with send, which
// returns an error unless the answer is the one expected.
func openLoopWith(ctx context.Context, client *http.Client, target string, rate int, warmup, duration time.Duration,
	send func(ctx context.Context, client *http.Client, n int64) error) (*loadRun, error) {
	res := &loadRun{Target: target, Rate: rate, Duration: duration}
	interval := time.Second / time.Duration(rate)
	total := int((warmup + duration) / interval)
	first := int(warmup / interval) // the first measured request
	lat := make([]time.Duration, total)
	lag := make([]time.Duration, total)
	failed := make([]bool, total)
	var (
		inflight atomic.Int64
		lastDone atomic.Int64 // unix nanoseconds of the last measured completion
		wg       sync.WaitGroup
	)
	start := time.Now()
	for i := range total {
		sched := start.Add(time.Duration(i) * interval)
		if d := time.Until(sched); d > 0 {
			time.Sleep(d)
		}
		if ctx.Err() != nil {
			break
		}
		if inflight.Load() >= maxInFlight {
			failed[i] = true
			res.Errors.add(fmt.Errorf("not sent: %d requests already in flight", maxInFlight))
			continue
		}
		inflight.Add(1)
		wg.Go(func() {
			defer inflight.Add(-1)
			lag[i] = time.Since(sched)
			err := send(ctx, client, int64(i+1))
			done := time.Now()
			if err != nil {
				failed[i] = true
				if ctx.Err() == nil {
					res.Errors.add(err)
				}
				return
			}
			lat[i] = done.Sub(sched)
			if i >= first {
				for {
					last := lastDone.Load()
					if done.UnixNano() <= last || lastDone.CompareAndSwap(last, done.UnixNano()) {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var measured, lags []time.Duration
	for i := first; i < total; i++ {
		if !failed[i] {
			measured = append(measured, lat[i])
			lags = append(lags, lag[i])
		}
	}
	res.OK = int64(len(measured))
	res.Latency = summarise(measured)
	res.SendLag = summarise(lags)
	if window := time.Unix(0, lastDone.Load()).Sub(start.Add(time.Duration(first) * interval)); res.OK > 0 && window > 0 {
		res.Achieved = float64(res.OK) / window.Seconds()
	}
	return res, nil
}
