package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as orderflow: with ORDERFLOW_TEST_RUN_MAIN=1 it
// runs main, so tests can start real processes and SIGKILL them.
func TestMain(m *testing.M) {
	if os.Getenv("ORDERFLOW_TEST_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// process is an orderflow child process.
type process struct {
	cmd     *exec.Cmd
	base    string // http://addr of the roles' API (or of the gateway, when it runs alone)
	gateway string // http://addr of the gateway, when the process runs it
	done    chan error
}

// servingLine is the "serving HTTP" line of orderflow's JSON log.
type servingLine struct {
	Msg         string `json:"msg"`
	Addr        string `json:"addr"`
	RolesAddr   string `json:"roles_addr"`
	GatewayAddr string `json:"gateway_addr"`
}

// scanServing reads a JSON log until it ends, sending its "serving HTTP"
// lines to out.
func scanServing(r io.Reader, out chan<- servingLine, log *logTail) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		log.add(sc.Text())
		var line servingLine
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving HTTP" {
			out <- line
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// logTail keeps the last lines of a child's log, to show when a test fails.
type logTail struct {
	mu    sync.Mutex
	lines []string
}

const logTailLines = 300

func (l *logTail) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == logTailLines {
		l.lines = slices.Delete(l.lines, 0, 1)
	}
	l.lines = append(l.lines, line)
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// MustStart starts `orderflow serve` with env and waits until it serves
// HTTP. Unless env says otherwise, it listens on free loopback ports
// (ORDERFLOW_HTTP_ADDR and ORDERFLOW_INTERNAL_ADDR), verifies tokens with
// testJWTSecret, and registers nowhere (CONSUL_HTTP_ADDR empty). The
// process is killed when the test ends.
func MustStart(t *testing.T, env map[string]string) *process {
	t.Helper()
	args := []string{"serve"}
	if env["ORDERFLOW_HTTP_ADDR"] == "" {
		args = append(args, "--http-addr", "127.0.0.1:0")
	}
	if env["ORDERFLOW_INTERNAL_ADDR"] == "" {
		args = append(args, "--internal-addr", "127.0.0.1:0")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "ORDERFLOW_TEST_RUN_MAIN=1", "CONSUL_HTTP_ADDR=", "ORDERFLOW_JWT_SECRET="+testJWTSecret)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, done: make(chan error, 1)}
	serving := make(chan servingLine, 1)
	log := &logTail{}
	go scanServing(out, serving, log)
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("the last %d lines of orderflow's log (pid %d):\n%s", logTailLines, cmd.Process.Pid, log)
		}
	})
	select {
	case line := <-serving:
		p.base = "http://" + cmp.Or(line.RolesAddr, line.Addr)
		if line.GatewayAddr != "" {
			p.gateway = "http://" + line.GatewayAddr
		}
	case err := <-p.done:
		t.Fatalf("orderflow exited before serving: %v", err)
	case <-time.After(90 * time.Second):
		t.Fatal("orderflow did not start serving within 90s")
	}
	return p
}

// Stop sends SIGTERM and waits for the process to exit, failing the test
// unless it exits cleanly within 30s.
func (p *process) Stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	p.awaitCleanExit(t)
}

// awaitCleanExit waits for the process, signalled, to exit, failing the
// test unless it exits cleanly within 30s.
func (p *process) awaitCleanExit(t *testing.T) {
	t.Helper()
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("orderflow exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("orderflow did not exit within 30s of SIGTERM")
	}
}

// Kill sends SIGKILL and waits for the process to end.
func (p *process) Kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
	}
}

// Metric returns the value of an unlabelled metric from /metrics, or -1.
func (p *process) Metric(t *testing.T, name string) float64 {
	t.Helper()
	res, err := http.Get(p.base + "/metrics")
	if err != nil {
		return -1
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return -1
}

// freePort returns a loopback port nobody listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitUntil polls cond until it holds, failing the test after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %s", what, timeout)
		case <-tick.C:
		}
	}
}
