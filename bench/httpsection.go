package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
)

var (
	// httpClientCounts are the closed-loop concurrencies tried; the best
	// throughput of each target is its saturation figure.
	httpClientCounts = []int{16, 64, 128}
	// httpRates are the open-loop arrival rates, requests per second.
	httpRates = []int{500, 2000}
)

const (
	readyTimeout = 60 * time.Second // for orderflow to migrate and answer /readyz
	stopTimeout  = 30 * time.Second // for orderflow to drain after SIGTERM
)

// httpSection measures POST /v1/orders of the orderflow binary, started as a
// child process on a fresh database, against a trivial net/http handler
// driven by the same load generator: closed-loop saturation and open-loop
// latency at fixed arrival rates.
func httpSection(ctx context.Context, log *slog.Logger, cfg config, m machine) (body string, err error) {
	dir, bin, err := buildInTempDir(ctx)
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	db, err := createDatabase(ctx, cfg.databaseURL, true)
	if err != nil {
		return "", err
	}
	defer func() { err = errors.Join(err, db.drop(ctx)) }()

	// The command role alone: this section measures the command API and its
	// appends, not the relay, projections and saga running beside it.
	child, err := startOrderflow(ctx, log, bin, db.url, dir, "ORDERFLOW_ROLES=command")
	if err != nil {
		return "", err
	}
	stopped := false
	defer func() {
		if !stopped {
			err = errors.Join(err, child.stop())
		}
	}()
	baseline, err := startBaseline()
	if err != nil {
		return "", err
	}
	defer func() { err = errors.Join(err, baseline.stop()) }()

	targets := []struct{ name, url string }{
		{"orderflow", child.url},
		{"net/http baseline", baseline.url},
	}
	var (
		closed, open []*loadRun
		notes        []string
	)
	// measure runs one point on a fresh client after the machine settles.
	measure := func(name string, load func(*http.Client) (*loadRun, error)) (*loadRun, error) {
		quiet, err := settle(ctx, m.Cores, settleLimit)
		if err != nil {
			return nil, err
		}
		if !quiet {
			notes = append(notes, fmt.Sprintf("the machine was still busy before %s; measured anyway", name))
			log.Warn("machine still busy; measuring anyway", "point", name)
		}
		log.Info("http point", "point", name, "duration", cfg.duration)
		client := newLoadClient(512)
		defer client.CloseIdleConnections()
		r, err := load(client)
		if err != nil {
			return nil, err
		}
		log.Info("http point done", "point", name, "ok_per_s", int(r.Achieved),
			"p50", r.Latency.pct(0.5), "p99", r.Latency.pct(0.99), "errors", r.Errors.n)
		return r, nil
	}
	for _, n := range httpClientCounts {
		for _, t := range targets {
			r, err := measure(fmt.Sprintf("%s closed loop %d clients", t.name, n), func(c *http.Client) (*loadRun, error) {
				return closedLoop(ctx, c, t.name, t.url, n, cfg.warmup, cfg.duration)
			})
			if err != nil {
				return "", err
			}
			closed = append(closed, r)
		}
	}
	for _, rate := range httpRates {
		for _, t := range targets {
			r, err := measure(fmt.Sprintf("%s open loop %d/s", t.name, rate), func(c *http.Client) (*loadRun, error) {
				return openLoop(ctx, c, t.name, t.url, rate, cfg.warmup, cfg.duration)
			})
			if err != nil {
				return "", err
			}
			open = append(open, r)
		}
	}

	stopped = true
	if err := child.stop(); err != nil {
		notes = append(notes, err.Error())
		log.Warn("orderflow did not stop cleanly", "err", err)
	}
	return renderHTTP(cfg, m, closed, open, inheritedSettings(), notes), nil
}

// inheritedSettings lists the ORDERFLOW_* variables the child inherits from
// this process's environment: they change what is measured. Addresses are
// the bench's own and the JWT secret is never written out.
func inheritedSettings() []string {
	var out []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "ORDERFLOW_HTTP_ADDR", "ORDERFLOW_INTERNAL_ADDR", "ORDERFLOW_JWT_SECRET":
		default:
			if strings.HasPrefix(k, "ORDERFLOW_") {
				out = append(out, kv)
			}
		}
	}
	return out
}

// buildInTempDir builds orderflow into a new temporary directory, which the
// caller removes.
func buildInTempDir(ctx context.Context) (dir, bin string, err error) {
	if dir, err = os.MkdirTemp("", "orderflow-bench-"); err != nil {
		return "", "", err
	}
	if bin, err = buildOrderflow(ctx, dir); err != nil {
		return "", "", errors.Join(err, os.RemoveAll(dir))
	}
	return dir, bin, nil
}

// buildOrderflow builds ./cmd/orderflow of this module into dir.
func buildOrderflow(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("find the module root (run bench inside the orderflow module): %v", err)
	}
	bin := filepath.Join(dir, "orderflow")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/orderflow")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/orderflow: %w\n%s", err, out)
	}
	return bin, nil
}

// child is a running `orderflow serve` (or the bench's bare proxy).
type child struct {
	name string // what the messages call it
	cmd  *exec.Cmd
	// url is the API of the child's roles other than the gateway (or the
	// gateway's, when it runs alone): http://127.0.0.1:port.
	url string
	// gatewayURL is the gateway's, when the child runs it.
	gatewayURL string
	logPath    string
	exited     chan struct{} // closed when the process has been waited for
	waitErr    error         // valid once exited is closed
}

// startOrderflow starts `bin serve` on free local ports against databaseURL
// and returns once GET /readyz answers 200. Unless env sets one, the child
// gets a random ORDERFLOW_JWT_SECRET (see benchJWTSecret). Its log goes to
// a file of its own in dir.
func startOrderflow(ctx context.Context, log *slog.Logger, bin, databaseURL, dir string, env ...string) (*child, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	internal, err := freeAddr()
	if err != nil {
		return nil, err
	}
	// Not CommandContext: the child is stopped with SIGTERM, never killed
	// first, so its shutdown is part of what is checked.
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(append(os.Environ(), "DATABASE_URL="+databaseURL, "ORDERFLOW_HTTP_ADDR="+addr,
		"ORDERFLOW_INTERNAL_ADDR="+internal, "ORDERFLOW_JWT_SECRET="+benchJWTSecret), env...)
	c, err := launch("orderflow", cmd, dir, "http://"+addr)
	if err != nil {
		return nil, err
	}
	// ORDERFLOW_HTTP_ADDR serves the gateway when the child runs it; the
	// other roles then listen on ORDERFLOW_INTERNAL_ADDR.
	if gateway, others := runsGateway(cmd.Env); gateway {
		c.gatewayURL = c.url
		if others {
			c.url = "http://" + internal
		}
	}
	log.Info("orderflow started", "pid", cmd.Process.Pid, "url", c.url, "gateway", c.gatewayURL, "log", c.logPath)
	if err := c.waitReady(ctx); err != nil {
		return nil, errors.Join(err, c.stop())
	}
	return c, nil
}

// launch starts cmd, called name in messages, with its output in a log file
// of its own in dir, and returns it as a child serving url; the caller waits
// for it to be ready.
func launch(name string, cmd *exec.Cmd, dir, url string) (*child, error) {
	logFile, err := os.CreateTemp(dir, strings.ReplaceAll(name, " ", "-")+"-*.log")
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, url: url, logPath: logFile.Name(), exited: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// benchJWTSecret is the gateway secret of the children, random per run.
var benchJWTSecret = func() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// runsGateway reports whether an orderflow with environment env runs the
// gateway, and whether it runs other roles beside it.
func runsGateway(env []string) (gateway, others bool) {
	roles := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "ORDERFLOW_ROLES="); ok {
			roles = v // the last one wins, as in exec
		}
	}
	if roles == "" { // orderflow's default
		roles = "all"
	}
	for r := range strings.SplitSeq(roles, ",") {
		switch r = strings.TrimSpace(r); r {
		case "all":
			gateway, others = true, true
		case "gateway":
			gateway = true
		default:
			others = true
		}
	}
	return gateway, others
}

// waitReady polls GET /readyz until it answers 200, the child exits, ctx
// ends or readyTimeout passes.
func (c *child) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/readyz", nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-tick.C:
		case <-c.exited:
			return fmt.Errorf("%s exited before it was ready (%v):\n%s", c.name, c.waitErr, c.logTail())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready within %s: %w\n%s", c.name, readyTimeout, ctx.Err(), c.logTail())
		}
	}
}

// stop sends SIGTERM and waits stopTimeout for the child to exit; past that it
// kills it. It returns an error unless the child exited cleanly in time.
func (c *child) stop() error {
	select {
	case <-c.exited:
		return fmt.Errorf("%s had already exited: %v", c.name, c.waitErr)
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal %s: %w", c.name, err)
	}
	select {
	case <-c.exited:
		if c.waitErr != nil {
			return fmt.Errorf("%s exited with %v after SIGTERM:\n%s", c.name, c.waitErr, c.logTail())
		}
		return nil
	case <-time.After(stopTimeout):
		_ = c.cmd.Process.Kill()
		<-c.exited
		return fmt.Errorf("%s did not exit within %s of SIGTERM; killed:\n%s", c.name, stopTimeout, c.logTail())
	}
}

// logTail returns the end of the child's output for error messages.
func (c *child) logTail() string {
	b, _ := os.ReadFile(c.logPath)
	const limit = 2000
	if len(b) > limit {
		b = b[len(b)-limit:]
	}
	return string(b)
}

// freeAddr returns a local address no one listens on right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// baselineServer is the HTTP-stack limit: net/http answering POST /v1/orders
// with a 201 and a body shaped like orderflow's, doing no work at all.
type baselineServer struct {
	srv    *http.Server
	url    string
	served chan error
}

func startBaseline() (*baselineServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/orders", baselineOrder)
	s := &baselineServer{
		srv:    &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		url:    "http://" + ln.Addr().String(),
		served: make(chan error, 1),
	}
	go func() { s.served <- s.srv.Serve(ln) }()
	return s, nil
}

// stop shuts the server down and waits for Serve to return.
func (s *baselineServer) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// baselineOrder reads the request and answers what orderflow answers
// (OrderAccepted), without decoding, validating or storing anything.
func baselineOrder(w http.ResponseWriter, r *http.Request) {
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := uuid.Must(uuid.NewV7()).String()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/v1/orders/"+id)
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"order_id":%q,"stream_id":"order-%s","version":1}`+"\n", id, id)
}

// renderHTTP writes the section's markdown.
func renderHTTP(cfg config, m machine, closed, open []*loadRun, settings, notes []string) string {
	var b strings.Builder
	b.WriteString("## HTTP API: POST /v1/orders\n\n")
	b.WriteString(m.markdown())
	fmt.Fprintf(&b, "- Each point: %s warm-up, %s measured; orderflow on one fresh database for the section\n", cfg.warmup, cfg.duration)
	if len(settings) == 0 {
		b.WriteString("- orderflow settings: defaults (no ORDERFLOW_* in the environment)\n\n")
	} else {
		fmt.Fprintf(&b, "- orderflow settings from the environment: `%s`\n\n", strings.Join(settings, " "))
	}

	var problems strings.Builder
	best := make(map[string]*loadRun)
	b.WriteString("### Saturation (closed loop)\n\n")
	t := table{header: []string{"Target", "Clients", "Requests/s (201)", "p50", "p99", "Errors", "Check"}}
	for _, r := range closed {
		p := r.Errors.problems()
		t.add(r.Target, fmt.Sprint(r.Clients), perSecond(r.Achieved), ms(r.Latency.pct(0.5)),
			ms(r.Latency.pct(0.99)), fmt.Sprint(r.Errors.n), validity(p))
		problems.WriteString(problemList(fmt.Sprintf("%s, %d clients", r.Target, r.Clients), p))
		if len(p) == 0 && (best[r.Target] == nil || r.Achieved > best[r.Target].Achieved) {
			best[r.Target] = r
		}
	}
	b.WriteString(t.String())
	if of, bl := best["orderflow"], best["net/http baseline"]; of != nil && bl != nil {
		fmt.Fprintf(&b, "\nBest: orderflow %s req/s at %d clients, net/http baseline %s req/s at %d clients (%s).\n",
			perSecond(of.Achieved), of.Clients, perSecond(bl.Achieved), bl.Clients, ratio(of.Achieved, bl.Achieved))
	} else {
		b.WriteString("\nBest: no valid saturation figure for both targets.\n")
	}

	b.WriteString("\n### Latency at a constant arrival rate (open loop)\n\n")
	t = table{header: []string{"Target", "Offered/s", "Achieved/s", "p50", "p90", "p99", "max", "Send lag p99", "Errors", "Check"}}
	for _, r := range open {
		p := r.Errors.problems()
		t.add(r.Target, fmt.Sprint(r.Rate), perSecond(r.Achieved), ms(r.Latency.pct(0.5)), ms(r.Latency.pct(0.9)),
			ms(r.Latency.pct(0.99)), ms(r.Latency.max()), ms(r.SendLag.pct(0.99)), fmt.Sprint(r.Errors.n), validity(p))
		problems.WriteString(problemList(fmt.Sprintf("%s, %d/s", r.Target, r.Rate), p))
	}
	b.WriteString(t.String())
	if problems.Len() > 0 {
		b.WriteString("\n" + problems.String())
	}
	for _, n := range notes {
		fmt.Fprintf(&b, "\n- **Note:** %s\n", strings.ReplaceAll(strings.TrimSpace(n), "\n", " "))
	}
	b.WriteString(`
- Load: POST /v1/orders with {"customer_id":"c-<n>","lines":[{"sku":"SKU-1","quantity":1,"unit_price_cents":1999}]};
  only 201s count, anything else is an error and marks the figure INVALID.
- orderflow: ` + "`orderflow serve`" + ` with ORDERFLOW_ROLES=command, built from ./cmd/orderflow, run as a child process
  with DATABASE_URL on a fresh migrated database; stopped with SIGTERM.
- Baseline: a net/http handler in the load generator's process that reads the
  body and answers 201 with an OrderAccepted-shaped body: the HTTP stack's limit.
- Closed loop: N clients each send the next request when the last is answered.
- Open loop: requests are scheduled at fixed intervals whatever the answers;
  latency is measured from the scheduled time, so stalls are not hidden
  (no coordinated omission). Achieved/s: 201s over the window up to the last answer.
  Send lag p99: how late the generator itself sent requests; it is included
  in the latencies, so a figure near it is the generator's limit, not the target's.
- Before each point the machine must be quiet (under 15% busy for a second,
  waiting at most 10s), so orderflow's background work catching up after one
  point is not charged to the next.
- Load generator, orderflow and PostgreSQL share the machine's cores.
`)
	return b.String()
}
