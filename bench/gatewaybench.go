package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/orderflow/orderflow/gateway"
)

const (
	// gatewayRate is the open-loop arrival rate of the gateway section.
	gatewayRate = 2000
	// gatewayTarget is the most the gateway may add at p99 at gatewayRate.
	gatewayTarget = time.Millisecond
	// gatewayOrders are seeded and read round-robin.
	gatewayOrders = 500
	// gatewayCustomer owns every seeded order.
	gatewayCustomer = "c-bench"
	gatewayIssuer   = "orderflow-bench"
	gatewayAudience = "orderflow-bench-api"
)

// gatewayRound is how long each path runs in one round.
const gatewayRound = 2 * time.Second

// gatewayMeasured is each path's measured time, in rounds of gatewayRound:
// three times -duration, since the machine's p99 moves by more than the
// 1 ms target from one round to the next.
func gatewayMeasured(cfg config) time.Duration { return 3 * cfg.duration }

// gatewayPoint is one path of the gateway section: its runs, one a round,
// and their merged figures.
type gatewayPoint struct {
	name, note  string
	base, token string
	runs        []*loadRun
	run         *loadRun
	rounds      int
}

// mergeRuns pools open-loop runs at the same rate: every latency of each,
// every error, and the throughput over their windows together.
func mergeRuns(runs []*loadRun) *loadRun {
	out := &loadRun{Target: runs[0].Target, Rate: runs[0].Rate}
	var lat, lag []time.Duration
	var window float64 // seconds
	for _, r := range runs {
		out.Duration += r.Duration
		out.OK += r.OK
		if r.Achieved > 0 {
			window += float64(r.OK) / r.Achieved
		}
		lat = append(lat, r.Latency...)
		lag = append(lag, r.SendLag...)
		out.Errors.n += r.Errors.n
		out.Errors.sample = append(out.Errors.sample, r.Errors.sample...)
	}
	if window > 0 {
		out.Achieved = float64(out.OK) / window
	}
	out.Latency, out.SendLag = summarise(lat), summarise(lag)
	out.Errors.sample = out.Errors.sample[:min(3, len(out.Errors.sample))]
	return out
}

// gatewaySection measures what the gateway adds to GET /v1/orders/{id}: the
// same open-loop load straight to the query API of an orderflow child,
// through a bare reverse proxy in front of it (the floor: one more hop), and
// through a second child that runs only the gateway in front of it (static
// upstreams), in the same run on the same seeded orders.
func gatewaySection(ctx context.Context, log *slog.Logger, cfg config, m machine) (body string, err error) {
	dir, bin, err := buildInTempDir(ctx)
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	db, err := createDatabase(ctx, cfg.databaseURL, false)
	if err != nil {
		return "", err
	}
	defer func() { err = errors.Join(err, db.drop(ctx)) }()

	// The read side and what fills it; the seeded orders reach the view
	// through the relay and the projector, which are idle while measuring.
	backend, err := startOrderflow(ctx, log, bin, db.url, dir,
		append(db.kafkaEnv(cfg.kafkaBrokers), "ORDERFLOW_ROLES=command,query,relay,projector", "ORDERFLOW_LOG_LEVEL=warn")...)
	if err != nil {
		return "", err
	}
	var notes []string
	defer func() {
		if stopErr := backend.stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
	}()
	client := newLoadClient(512)
	defer client.CloseIdleConnections()
	ids, err := seedGatewayOrders(ctx, client, backend.url, gatewayOrders)
	if err != nil {
		return "", err
	}
	log.Info("gateway: orders seeded and readable", "orders", len(ids))

	// Limits far above the load, so every request runs the limiter and
	// none is refused.
	gw, err := startOrderflow(ctx, log, bin, db.url, dir, "ORDERFLOW_ROLES=gateway", "ORDERFLOW_LOG_LEVEL=warn",
		"ORDERFLOW_JWT_ISSUER="+gatewayIssuer, "ORDERFLOW_JWT_AUDIENCE="+gatewayAudience,
		"ORDERFLOW_GATEWAY_COMMAND_URLS="+backend.url, "ORDERFLOW_GATEWAY_QUERY_URLS="+backend.url,
		"ORDERFLOW_GATEWAY_PROJECTOR_URLS="+backend.url,
		"ORDERFLOW_GATEWAY_CLIENT_RATE=1e6", "ORDERFLOW_GATEWAY_CLIENT_BURST=1000000",
		"ORDERFLOW_GATEWAY_GLOBAL_RATE=1e6", "ORDERFLOW_GATEWAY_GLOBAL_BURST=1000000")
	if err != nil {
		return "", err
	}
	defer func() {
		if stopErr := gw.stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
	}()
	token := func(subject, role string) (string, error) {
		return gateway.MintToken([]byte(benchJWTSecret), gatewayIssuer, gatewayAudience, subject, role, time.Hour)
	}
	admin, err := token("bench-admin", gateway.RoleAdmin)
	if err != nil {
		return "", err
	}
	customer, err := token(gatewayCustomer, gateway.RoleCustomer)
	if err != nil {
		return "", err
	}

	// The floor: one hop through the standard library's reverse proxy, in a
	// process of its own like the gateway.
	bare, err := startBareProxy(ctx, log, dir, backend.url)
	if err != nil {
		return "", err
	}
	defer func() {
		if stopErr := bare.stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
	}()

	points := []gatewayPoint{
		{name: "direct to the query API", note: "no token", base: backend.url},
		{name: "through a bare reverse proxy", note: "baseline: httputil.ReverseProxy, nothing else", base: bare.url},
		{name: "through the gateway, admin token", note: "one upstream call", base: gw.gatewayURL, token: admin},
		{name: "through the gateway, customer token", note: "owner check, owner remembered: one upstream call", base: gw.gatewayURL, token: customer},
	}
	// Short rounds of each path in turn rather than one long run each, so a
	// change in the machine's background load reaches every path alike.
	rounds := max(1, int(gatewayMeasured(cfg)/gatewayRound))
	for round := range rounds {
		quiet, err := settle(ctx, m.Cores, settleLimit)
		if err != nil {
			return "", err
		}
		if !quiet {
			notes = append(notes, fmt.Sprintf("the machine was still busy before round %d; measured anyway", round+1))
		}
		for i := range points {
			p := &points[i]
			run, err := openLoopWith(ctx, client, p.name, gatewayRate, cfg.warmup, gatewayMeasured(cfg)/time.Duration(rounds),
				func(ctx context.Context, c *http.Client, n int64) error {
					return getOrder(ctx, c, p.base+"/v1/orders/"+ids[int(n)%len(ids)], p.token)
				})
			if err != nil {
				return "", err
			}
			p.runs = append(p.runs, run)
			log.Info("gateway point", "point", p.name, "round", round+1, "ok_per_s", int(run.Achieved),
				"p50", run.Latency.pct(0.5), "p99", run.Latency.pct(0.99), "errors", run.Errors.n)
		}
	}
	for i := range points {
		points[i].run = mergeRuns(points[i].runs)
	}
	points[0].rounds = rounds
	return renderGateway(cfg, m, points, notes), nil
}

// seedGatewayOrders places n orders of gatewayCustomer through the command
// API at baseURL and returns their ids once the last one is readable from
// the query API (the projector applies them in order per stream, all of
// them by then or within the read's wait).
func seedGatewayOrders(ctx context.Context, client *http.Client, baseURL string, n int) ([]string, error) {
	ids := make([]string, 0, n)
	body := `{"customer_id":"` + gatewayCustomer + `","lines":[{"sku":"SKU-1","quantity":1,"unit_price_cents":1999}]}`
	for range n {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/v1/orders", strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("seed an order: %w", err)
		}
		var accepted struct {
			OrderID string `json:"order_id"`
		}
		err = json.NewDecoder(resp.Body).Decode(&accepted)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusCreated {
			return nil, fmt.Errorf("seed an order: status %d, %v", resp.StatusCode, err)
		}
		ids = append(ids, accepted.OrderID)
	}
	// Every order must read 200: a 404 during the measurement would count
	// as an error. min_version waits (bounded) for the view.
	deadline := time.Now().Add(time.Minute)
	for _, id := range ids {
		for {
			err := getOrder(ctx, client, baseURL+"/v1/orders/"+id+"?min_version=1", "")
			if err == nil {
				break
			}
			if ctx.Err() != nil || time.Now().After(deadline) {
				return nil, fmt.Errorf("seeded order %s not readable within a minute: %w", id, err)
			}
		}
	}
	return ids, nil
}

// getOrder GETs url, with token as bearer when not empty, and returns an
// error unless the answer is 200.
func getOrder(ctx context.Context, client *http.Client, url, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return expectStatus(client, req, http.StatusOK)
}

// renderGateway writes the section's markdown.
func renderGateway(cfg config, m machine, points []gatewayPoint, notes []string) string {
	var b strings.Builder
	b.WriteString("## Gateway overhead: GET /v1/orders/{id}\n\n")
	b.WriteString(m.markdown())
	fmt.Fprintf(&b, "- Each path: %s measured at %d requests/s open loop, in %d rounds of %s (each after %s of warm-up), the %d paths taking turns; %d seeded orders read round-robin\n",
		gatewayMeasured(cfg), gatewayRate, points[0].rounds, gatewayMeasured(cfg)/time.Duration(points[0].rounds), cfg.warmup, len(points), gatewayOrders)
	if settings := inheritedSettings(); len(settings) > 0 {
		fmt.Fprintf(&b, "- orderflow settings from the environment: `%s`\n", strings.Join(settings, " "))
	}
	b.WriteString("\n")

	t := table{header: []string{"Path", "Offered/s", "Achieved/s", "p50", "p90", "p99", "max", "Send lag p99", "Errors", "Check"}}
	var problems strings.Builder
	for _, p := range points {
		r := p.run
		probs := r.Errors.problems()
		if r.Achieved < 0.95*float64(r.Rate) {
			probs = append(probs, fmt.Sprintf("achieved %s of %d requests/s offered: the target fell behind", perSecond(r.Achieved), r.Rate))
		}
		t.add(p.name+" ("+p.note+")", fmt.Sprint(r.Rate), perSecond(r.Achieved), ms(r.Latency.pct(0.5)), ms(r.Latency.pct(0.9)),
			ms(r.Latency.pct(0.99)), ms(r.Latency.max()), ms(r.SendLag.pct(0.99)), fmt.Sprint(r.Errors.n), validity(probs))
		problems.WriteString(problemList(p.name, probs))
	}
	b.WriteString(t.String())
	if problems.Len() > 0 {
		b.WriteString("\n" + problems.String())
	}

	direct, hop := points[0], points[1]
	invalid := func(ps ...gatewayPoint) bool {
		for _, p := range ps {
			if len(p.run.Errors.problems()) > 0 {
				return true
			}
		}
		return false
	}
	// added says what p adds over base at p50 and p99 (pooled), and the
	// median over the rounds of the two's p99 difference in the same round:
	// a stall of the machine in one round moves the pooled p99 of whichever
	// path it hit, but only one of the paired differences.
	added := func(p, base gatewayPoint) (string, time.Duration) {
		if invalid(p, base) {
			return "not judged (invalid figures)", 0
		}
		d99 := p.run.Latency.pct(0.99) - base.run.Latency.pct(0.99)
		paired := make([]time.Duration, len(p.runs))
		for r := range p.runs {
			paired[r] = p.runs[r].Latency.pct(0.99) - base.runs[r].Latency.pct(0.99)
		}
		med := summarise(paired).pct(0.5)
		return fmt.Sprintf("p50 %s, p99 %s (median of the %d rounds' paired p99 differences: %s)",
			signedMs(p.run.Latency.pct(0.5)-base.run.Latency.pct(0.5)), signedMs(d99), len(paired), signedMs(med)), d99
	}
	hopAdded, _ := added(hop, direct)
	fmt.Fprintf(&b, "\nOne bare proxy hop adds %s: the floor under any proxy running as a process of its own, on this machine at this load.\n", hopAdded)
	b.WriteString("\nAdded by the gateway (target: at most " + ms(gatewayTarget) + " at p99 at 2,000 requests/s, judged on the pooled p99), and its share beyond the bare hop:\n\n")
	for _, p := range points[2:] {
		figures, d99 := added(p, direct)
		verdict := "**met**"
		if d99 > gatewayTarget {
			verdict = "**not met**"
		}
		if invalid(p, direct) {
			verdict = "not judged"
		}
		beyond, _ := added(p, hop)
		fmt.Fprintf(&b, "- %s: %s: %s; beyond the bare hop: %s\n", p.name, figures, verdict, beyond)
	}
	for _, n := range notes {
		fmt.Fprintf(&b, "\n- **Note:** %s\n", strings.ReplaceAll(strings.TrimSpace(n), "\n", " "))
	}
	b.WriteString(`
- Upstream: one ` + "`orderflow serve`" + ` child with ORDERFLOW_ROLES=command,query,relay,projector on a fresh
  database; the orders were placed and projected before measuring, so the relay and projector are idle.
- Bare reverse proxy (the baseline): the bench binary's own ` + "`bare-proxy`" + ` subcommand in a process of
  its own, a ` + "`net/http/httputil.ReverseProxy`" + ` with the gateway's transport, buffer pool and GC target and
  nothing else: no token check, limiter, breaker or header rewriting. What it adds over the direct path
  is the cost of one more process and TCP hop on this machine; the gateway cannot add less.
- Gateway: a second orderflow child with ORDERFLOW_ROLES=gateway and static upstreams pointing at the first;
  its rate limits are set far above the load (1e6/s), so every request passes the limiters without being refused.
- An admin token reads any order in one upstream call. For a customer token (the orders' owner) the
  gateway checks the order's owner: the first request for an order looks it up upstream (a second call),
  later ones use the owner the gateway remembers (an order's customer never changes). All 500 orders are
  read in the warm-up, so the measured figure is that steady state. Verified tokens are remembered too,
  until they expire.
- Only 200s count; anything else is an error and marks the figure INVALID. Latency runs from each
  request's scheduled time (no coordinated omission); see the HTTP API section for the load generator.
- Load generator, gateway (or bare proxy), query API and PostgreSQL share the machine's cores.
`)
	return b.String()
}

// signedMs formats a latency difference with its sign.
func signedMs(d time.Duration) string {
	if d < 0 {
		return "−" + ms(-d)
	}
	return "+" + ms(d)
}
