package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/gateway"
	"github.com/orderflow/orderflow/internal/gctune"
)

// bareProxyCommand is the bench's own subcommand that runs the gateway
// section's baseline: `bench bare-proxy ADDR UPSTREAM`.
const bareProxyCommand = "bare-proxy"

// newBareProxy returns a plain httputil.ReverseProxy in front of upstream,
// with the gateway's transport and buffer pool and nothing else: no token,
// no limiter, no breaker, no header rewriting.
func newBareProxy(upstream string) (*httputil.ReverseProxy, error) {
	target, err := url.Parse(upstream)
	if err != nil || target.Scheme != "http" || target.Host == "" {
		return nil, fmt.Errorf("bare-proxy: upstream %q: want a URL such as http://127.0.0.1:8080", upstream)
	}
	return &httputil.ReverseProxy{
		Rewrite:    func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport:  gateway.NewTransport(),
		BufferPool: gateway.NewBufferPool(),
	}, nil
}

// runBareProxy serves newBareProxy(upstream) on addr, with the gateway's GC
// target. It is what one proxy hop costs on this machine, the floor under
// what the gateway adds. It returns after SIGTERM or SIGINT, once the server
// has shut down.
func runBareProxy(addr, upstream string) error {
	gctune.Apply()
	proxy, err := newBareProxy(upstream)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("bare-proxy: %w", err)
	}
	srv := &http.Server{Handler: proxy, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("bare-proxy: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("bare-proxy: shut down: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("bare-proxy: %w", err)
	}
	return nil
}

// startBareProxy runs this bench binary's bare-proxy subcommand in front of
// upstream, as a process of its own like the gateway's, and returns once a
// GET /readyz through it answers 200.
func startBareProxy(ctx context.Context, log *slog.Logger, dir, upstream string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bare-proxy: find the bench binary: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	c, err := launch("bare proxy", exec.Command(self, bareProxyCommand, addr, upstream), dir, "http://"+addr)
	if err != nil {
		return nil, err
	}
	log.Info("bare proxy started", "pid", c.cmd.Process.Pid, "url", c.url, "upstream", upstream)
	if err := c.waitReady(ctx); err != nil {
		return nil, errors.Join(err, c.stop())
	}
	return c, nil
}
