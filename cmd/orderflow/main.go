// Command orderflow runs the orderflow backend.
//
//	orderflow serve    run the roles chosen by --roles (default all) until SIGTERM
//	orderflow migrate  apply the database migrations and exit
//	orderflow projections status | rebuild NAME... | rebuild --all
//	orderflow token --sub ID [--role customer|admin]  (needs ORDERFLOW_JWT_SECRET)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/breaker"
	"github.com/orderflow/orderflow/command"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/httpapi"
	"github.com/orderflow/orderflow/kafkapubsub"
	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/paymentprovider"
	"github.com/orderflow/orderflow/projector"
	"github.com/orderflow/orderflow/query"
	"github.com/orderflow/orderflow/relay"
)

const usage = `usage: orderflow <command> [flags]

commands:
  serve     run the roles chosen by --roles (default: all) until SIGTERM
  migrate   apply the database migrations and exit
  projections status | rebuild NAME... | rebuild --all
            each projection's position, lag and parked streams, or a rebuild
            from the event store without downtime
  token     mint a development bearer token for the gateway (--sub, --role)

Run "orderflow <command> -h" for the flags of a command; each flag also reads
the environment variable named in its help.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "orderflow:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "serve":
		cfg, err := loadConfig("serve", args[1:], getenv)
		if err != nil {
			return err
		}
		return serve(ctx, cfg, newLogger(stdout, cfg.LogLevel))
	case "migrate":
		fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
		fs.SetOutput(stderr)
		dbURL := databaseURLFlag(fs, getenv)
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if dbURL() == "" || fs.NArg() > 0 {
			return errors.New("migrate: DATABASE_URL is required and no arguments are taken")
		}
		logger := newLogger(stdout, slog.LevelInfo)
		v, err := migrations.ApplyURL(ctx, dbURL())
		if err != nil {
			return err
		}
		logger.Info("migrations applied", "version", v)
		return nil
	case "projections":
		return projections(ctx, args[1:], getenv, stdout, stderr)
	case "token":
		return token(args[1:], getenv, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// newRelay builds the Kafka relay: topics created explicitly, a writer with
// acks from all in-sync replicas, behind a circuit breaker.
func newRelay(ctx context.Context, cfg Config, pool *pgxpool.Pool, store *eventstore.Store, reg prometheus.Registerer, logger *slog.Logger) (*relay.Relay, error) {
	topics := relay.Topics(cfg.KafkaTopicPrefix)
	specs := make([]kafkapubsub.TopicSpec, 0, len(topics))
	for _, t := range topics {
		specs = append(specs, kafkapubsub.TopicSpec{Name: t, Partitions: cfg.KafkaPartitions, ReplicationFactor: cfg.KafkaReplication})
	}
	if err := kafkapubsub.EnsureTopics(ctx, cfg.KafkaBrokers, specs); err != nil {
		// The relay still starts: its breaker holds events until Kafka is back.
		logger.Warn("could not create Kafka topics now; the relay will retry through its breaker", "err", err)
	}
	br, err := breaker.New(breaker.Config{Name: "kafka", Failures: uint32(cfg.KafkaBreakerFails), OpenTimeout: cfg.KafkaBreakerTimeout}, logger)
	if err != nil {
		return nil, err
	}
	rl, err := relay.New(relay.Config{BatchSize: cfg.RelayBatchSize, TopicPrefix: cfg.KafkaTopicPrefix}, pool, store, relay.NewProducer(cfg.KafkaBrokers), br, logger)
	if err != nil {
		return nil, err
	}
	if err := registerAll(reg, rl.Collectors()...); err != nil {
		return nil, err
	}
	return rl, nil
}

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

// serve runs the configured roles until ctx ends, then drains: /readyz turns
// unavailable, the instances leave Consul, the HTTP servers stop taking
// requests and finish those in flight (the gateway first, so what it
// forwards can still finish), the event store finishes its appends, and the
// pool closes.
//
// ORDERFLOW_HTTP_ADDR serves the process's callers: the gateway when the
// process runs it, else the API of its roles. A process that runs the
// gateway beside other roles serves their API on ORDERFLOW_INTERNAL_ADDR,
// and its gateway routes there unless told otherwise.
func serve(ctx context.Context, cfg Config, logger *slog.Logger) error {
	logger.Info("starting orderflow", "config", cfg)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), breaker.Collector())
	consul, err := newConsulClient(cfg.Consul)
	if err != nil {
		return err
	}

	public, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s (ORDERFLOW_HTTP_ADDR): %w", cfg.HTTPAddr, err)
	}
	defer public.Close() // if a role fails to start; Serve closes it otherwise
	apiLn, gatewayLn := public, net.Listener(nil)
	if cfg.RunsGateway() {
		apiLn, gatewayLn = nil, public
		if cfg.RunsAPI() {
			if apiLn, err = net.Listen("tcp", cfg.InternalAddr); err != nil {
				return fmt.Errorf("listen on %s (ORDERFLOW_INTERNAL_ADDR): %w", cfg.InternalAddr, err)
			}
			defer apiLn.Close()
		}
	}

	var endpoints []endpoint // shut down in this order
	if gatewayLn != nil {
		apiURL := ""
		if apiLn != nil {
			apiURL = dialURL(apiLn.Addr())
		}
		gw, stopGateway, err := newGateway(ctx, cfg, consul, reg, apiURL, logger)
		if err != nil {
			return err
		}
		defer stopGateway()
		endpoints = append(endpoints, endpoint{ln: gatewayLn, handler: gw.Handler(), drain: gw.Drain, roles: []string{"gateway"}})
	}
	if apiLn != nil {
		roles, err := startRoles(ctx, cfg, reg, dialURL(apiLn.Addr()), logger)
		if err != nil {
			return err
		}
		defer roles.close()
		endpoints = append(endpoints, endpoint{ln: apiLn, handler: roles.handler, drain: roles.health.Drain,
			roles: slices.DeleteFunc(slices.Clone(cfg.Roles), func(r string) bool { return r == "gateway" })})
	}
	return runServers(ctx, cfg, consul, endpoints, logger)
}

// rolesAPI is the HTTP API of the roles other than the gateway, and the
// background work they run.
type rolesAPI struct {
	handler http.Handler
	health  *httpapi.Health
	closers []func() // run in reverse by close
}

// close stops the background work and releases what the roles hold.
func (a *rolesAPI) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
}

// startRoles connects to PostgreSQL, builds every role of cfg but the
// gateway on one router and starts their background work (relay,
// projector, saga), which runs until close. selfURL is where the router
// will be served, for the saga's default payment provider.
func startRoles(ctx context.Context, cfg Config, reg *prometheus.Registry, selfURL string, logger *slog.Logger) (_ *rolesAPI, err error) {
	a := &rolesAPI{}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if cfg.MigrateOnStart {
		v, err := migrations.ApplyURL(ctx, cfg.DatabaseURL)
		if err != nil {
			return nil, err
		}
		logger.Info("migrations applied", "version", v)
	}
	poolCfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	poolCfg.MaxConns = int32(cfg.DBMaxConns)
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	a.closers = append(a.closers, pool.Close)

	store, err := eventstore.New(pool, eventstore.Config{AppendWorkers: cfg.AppendWorkers, Registerer: reg, Logger: logger})
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, store.Close)

	metrics, err := httpapi.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	a.health = httpapi.NewHealth()
	a.health.Add("postgres", func(ctx context.Context) error { return pool.Ping(ctx) })

	r := httpapi.NewRouter(logger, metrics)
	a.handler = r
	a.health.Mount(r, reg)
	r.Method("GET", "/openapi.json", api.Handler())

	// Background work (relay, projector, saga) runs until close; close
	// waits for it.
	var background sync.WaitGroup
	bgCtx, stopBackground := context.WithCancel(ctx)
	a.closers = append(a.closers, func() { stopBackground(); background.Wait() })
	for _, role := range cfg.Roles {
		switch role {
		case "command":
			cmdAPI, err := command.NewAPI(store, command.Config{OrderDeadline: cfg.OrderDeadline}, logger)
			if err != nil {
				return nil, err
			}
			cmdAPI.Mount(r)
		case "relay":
			rl, err := newRelay(ctx, cfg, pool, store, reg, logger)
			if err != nil {
				return nil, err
			}
			a.health.AddDegraded("kafka", rl.Degraded)
			background.Go(func() {
				if err := rl.Run(bgCtx); err != nil {
					logger.Error("relay stopped", "err", err)
				}
			})
		case "query":
			q, err := query.NewAPI(pool, query.Config{MinVersionWait: cfg.MinVersionWait}, logger)
			if err != nil {
				return nil, err
			}
			q.Mount(r)
		case "payment-provider":
			pp, err := paymentprovider.NewServer(paymentprovider.Config{Latency: cfg.PaymentLatency, FailureRate: cfg.PaymentFailureRate}, logger)
			if err != nil {
				return nil, err
			}
			pp.Mount(r)
		case "saga":
			participants, err := newSaga(cfg, pool, store, selfURL, logger)
			if err != nil {
				return nil, err
			}
			metrics, err := newSagaMetrics(reg)
			if err != nil {
				return nil, err
			}
			background.Go(func() {
				supervise(bgCtx, "saga", func(ctx context.Context) error { return sagaReactions(ctx, cfg, participants, metrics, logger) }, logger)
			})
			background.Go(func() { participants.RunDeadlines(bgCtx, cfg.DeadlineInterval) })
		case "projector":
			engine, err := projector.NewEngine(pool, store, projector.EngineConfig{MaxLiveBatches: cfg.ProjectorMaxBatches}, logger)
			if err != nil {
				return nil, err
			}
			lag := projectionLag{pool: pool, brokers: cfg.KafkaBrokers, prefix: cfg.KafkaTopicPrefix, logger: logger}
			if err := registerAll(reg, append(engine.Collectors(), lag)...); err != nil {
				return nil, err
			}
			background.Go(func() {
				supervise(bgCtx, "projector", func(ctx context.Context) error { return project(ctx, cfg, engine, store, logger) }, logger)
			})
			admin, err := projector.NewAdmin(engine, store, logger)
			if err != nil {
				return nil, err
			}
			a.closers = append(a.closers, admin.Close)
			admin.Mount(r)
		}
	}
	return a, nil
}
