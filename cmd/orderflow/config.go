package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/orderflow/orderflow/gateway"
	"github.com/orderflow/orderflow/httpapi"
)

// Roles this build can run; "all" runs every one of them in one process.
var knownRoles = []string{"command", "query", "relay", "projector", "saga", "payment-provider", "gateway"}

var topicPrefixPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,200}$`)

// Config is the whole configuration of `orderflow serve`, read from the
// environment and overridden by flags.
type Config struct {
	DatabaseURL     string
	HTTPAddr        string
	InternalAddr    string
	Roles           []string
	Server          httpapi.ServerConfig // timeouts of every HTTP server; Addr unused
	DBMaxConns      int
	AppendWorkers   int
	MigrateOnStart  bool
	ShutdownTimeout time.Duration
	// ShutdownDelay is how long a stopping process keeps serving after it
	// failed /readyz and left Consul, before it closes its listeners.
	ShutdownDelay time.Duration
	LogLevel      slog.Level

	MinVersionWait time.Duration

	PaymentProviderURL    string
	PaymentLatency        time.Duration
	PaymentFailureRate    float64
	PaymentBreakerFails   int
	PaymentBreakerTimeout time.Duration
	DeadlineInterval      time.Duration
	OrderDeadline         time.Duration

	KafkaBrokers        []string
	KafkaTopicPrefix    string
	KafkaPartitions     int
	KafkaReplication    int
	RelayBatchSize      int
	ConsumerInFlight    int
	ProjectorMaxBatches int
	KafkaBreakerFails   int
	KafkaBreakerTimeout time.Duration

	Gateway GatewayConfig
	Consul  ConsulConfig
}

// GatewayConfig is the gateway role's part of Config.
type GatewayConfig struct {
	gateway.Config
	// Upstreams are the static base URLs per service (gateway.ServiceCommand,
	// ServiceQuery, ServiceProjector), used when Consul is not configured; a
	// service without any is this process's own API when it runs that role.
	Upstreams map[string][]string
}

// ConsulConfig says where and how every role registers, and where the
// gateway finds instances. Addr empty means no Consul.
type ConsulConfig struct {
	Addr            string
	AdvertiseHost   string // empty: the listen host, or the hostname
	Tags            []string
	CheckInterval   time.Duration
	DeregisterAfter time.Duration
}

// env describes one setting: its variable, flag and default.
type setting struct {
	env, flag, def, usage string
}

var settings = []setting{
	{"DATABASE_URL", "database-url", "", "PostgreSQL connection URL (required)"},
	{"ORDERFLOW_HTTP_ADDR", "http-addr", ":8080", "address this process serves its callers on: the gateway when it runs the gateway role, else its roles' API"},
	{"ORDERFLOW_INTERNAL_ADDR", "internal-addr", "127.0.0.1:8081", "when the gateway runs beside other roles in one process: the address their API listens on, behind the gateway"},
	{"ORDERFLOW_ROLES", "roles", "all", "comma-separated roles to run: all, " + strings.Join(knownRoles, ", ")},
	{"ORDERFLOW_HTTP_READ_HEADER_TIMEOUT", "http-read-header-timeout", "5s", "every HTTP server: longest time to read a request's headers"},
	{"ORDERFLOW_HTTP_READ_TIMEOUT", "http-read-timeout", "15s", "every HTTP server: longest time to read a whole request"},
	{"ORDERFLOW_HTTP_WRITE_TIMEOUT", "http-write-timeout", "30s", "every HTTP server: longest time from the end of a request's headers to the end of its response"},
	{"ORDERFLOW_HTTP_IDLE_TIMEOUT", "http-idle-timeout", "2m", "every HTTP server: how long a keep-alive connection may wait for its next request"},
	{"ORDERFLOW_DB_MAX_CONNS", "db-max-conns", "20", "PostgreSQL pool size"},
	{"ORDERFLOW_APPEND_WORKERS", "append-workers", "2", "concurrent append transactions; concurrent appends beyond them share commits"},
	{"ORDERFLOW_MIGRATE_ON_START", "migrate", "true", "apply migrations at start-up"},
	{"ORDERFLOW_SHUTDOWN_TIMEOUT", "shutdown-timeout", "15s", "how long SIGTERM waits for requests in flight"},
	{"ORDERFLOW_SHUTDOWN_DELAY", "shutdown-delay", "0s", "after SIGTERM, how long to keep serving with /readyz failing and the Consul registration gone before closing the listeners, so gateways and load balancers stop sending here first (a few seconds behind any of them)"},
	{"ORDERFLOW_LOG_LEVEL", "log-level", "info", "debug, info, warn or error"},
	{"ORDERFLOW_ORDER_DEADLINE", "order-deadline", "30s", "how long an order may stay pending before the saga cancels it (reason timeout)"},
	{"ORDERFLOW_MIN_VERSION_WAIT", "min-version-wait", "2s", "longest a query with min_version waits for the view before answering 412"},
	{"ORDERFLOW_PAYMENT_PROVIDER_URL", "payment-provider-url", "", "base URL of the payment provider the saga charges (default: this process, when it runs the payment-provider role)"},
	{"ORDERFLOW_PAYMENT_LATENCY", "payment-latency", "20ms", "payment-provider role: simulated latency of each request"},
	{"ORDERFLOW_PAYMENT_FAILURE_RATE", "payment-failure-rate", "0", "payment-provider role: share of charges declined, 0 to 1"},
	{"ORDERFLOW_PAYMENT_BREAKER_FAILURES", "payment-breaker-failures", "5", "consecutive provider failures that open the payment breaker"},
	{"ORDERFLOW_PAYMENT_BREAKER_OPEN_TIMEOUT", "payment-breaker-open-timeout", "5s", "how long the payment breaker stays open before a probe"},
	{"ORDERFLOW_DEADLINE_INTERVAL", "deadline-interval", "500ms", "how often the saga looks for orders past their deadline"},
	{"KAFKA_BROKERS", "kafka-brokers", "", "comma-separated Kafka bootstrap addresses (required by the relay role)"},
	{"ORDERFLOW_KAFKA_TOPIC_PREFIX", "kafka-topic-prefix", "orderflow", "topics are <prefix>.order, <prefix>.inventory, <prefix>.payment, <prefix>.unrouted, and <prefix>.deadletter for dead letters"},
	{"ORDERFLOW_KAFKA_PARTITIONS", "kafka-partitions", "1", "partitions of each topic orderflow creates (existing topics keep theirs): how many processes of a consumer role can share a topic's work"},
	{"ORDERFLOW_KAFKA_REPLICATION", "kafka-replication", "1", "replication factor of each topic the relay creates"},
	{"ORDERFLOW_RELAY_BATCH_SIZE", "relay-batch-size", "1000", "most events the relay publishes per batch"},
	{"ORDERFLOW_PROJECTOR_MAX_BATCHES", "projector-max-batches", "0", "projector: most live view transactions of all projections at once (0: one per projection); lower makes bigger batches and costs less CPU under load, for less fresh views: 1 leaves the saga more of a machine they share"},
	{"ORDERFLOW_CONSUMER_IN_FLIGHT", "consumer-in-flight", "256", "projection and saga consumers: most messages each handler has out at once (a saga reaction: different keys concurrently, one key in order; a projection: any, applied together in one transaction)"},
	{"ORDERFLOW_KAFKA_BREAKER_FAILURES", "kafka-breaker-failures", "5", "consecutive publish failures that open the Kafka breaker"},
	{"ORDERFLOW_KAFKA_BREAKER_OPEN_TIMEOUT", "kafka-breaker-open-timeout", "5s", "how long the Kafka breaker stays open before a probe"},
	{"ORDERFLOW_JWT_SECRET", "jwt-secret", "", fmt.Sprintf("gateway: HS256 key bearer tokens are verified with, at least %d bytes (required by the gateway role; prefer the variable to the flag, which ps shows)", gateway.MinSecretBytes)},
	{"ORDERFLOW_JWT_ISSUER", "jwt-issuer", "orderflow", "gateway: the iss every token must carry"},
	{"ORDERFLOW_JWT_AUDIENCE", "jwt-audience", "orderflow-api", "gateway: the aud every token must carry"},
	{"ORDERFLOW_GATEWAY_COMMAND_URLS", "gateway-command-urls", "", "gateway without Consul: comma-separated base URLs of the command instances (default: this process, when it runs the command role)"},
	{"ORDERFLOW_GATEWAY_QUERY_URLS", "gateway-query-urls", "", "gateway without Consul: comma-separated base URLs of the query instances (default: this process, when it runs the query role)"},
	{"ORDERFLOW_GATEWAY_PROJECTOR_URLS", "gateway-projector-urls", "", "gateway without Consul: comma-separated base URLs of the projector instances, for /admin/projections (default: this process, when it runs the projector role; none: /admin answers 503)"},
	{"ORDERFLOW_GATEWAY_CLIENT_RATE", "gateway-client-rate", "50", "gateway: requests per second each client may make (by token subject, else by IP); inf for no limit"},
	{"ORDERFLOW_GATEWAY_CLIENT_BURST", "gateway-client-burst", "100", "gateway: requests a client may make at once above its rate"},
	{"ORDERFLOW_GATEWAY_GLOBAL_RATE", "gateway-global-rate", "2000", "gateway: requests per second of all clients together; inf for no limit"},
	{"ORDERFLOW_GATEWAY_GLOBAL_BURST", "gateway-global-burst", "4000", "gateway: requests all clients may make at once above the global rate"},
	{"ORDERFLOW_GATEWAY_MAX_BODY_BYTES", "gateway-max-body-bytes", "65536", "gateway: largest request body; larger ones get 413"},
	{"ORDERFLOW_GATEWAY_REQUEST_TIMEOUT", "gateway-request-timeout", "10s", "gateway: longest time a request may spend on upstream calls; past it 504"},
	{"ORDERFLOW_GATEWAY_BREAKER_FAILURES", "gateway-breaker-failures", "5", "gateway: consecutive failures that open an upstream instance's breaker"},
	{"ORDERFLOW_GATEWAY_BREAKER_OPEN_TIMEOUT", "gateway-breaker-open-timeout", "5s", "gateway: how long an open instance breaker skips its instance before a probe"},
	{"CONSUL_HTTP_ADDR", "consul-http-addr", "", "Consul agent (host:port or http(s)://host:port): every role registers there, and the gateway finds its upstreams there instead of the static URLs"},
	{"ORDERFLOW_ADVERTISE_HOST", "advertise-host", "", "with Consul: the host other processes and the agent reach this process on (default: the listen address's host, or the hostname when it listens on every interface)"},
	{"ORDERFLOW_CONSUL_TAGS", "consul-tags", "orderflow", "with Consul: comma-separated tags of every registered instance"},
	{"ORDERFLOW_CONSUL_CHECK_INTERVAL", "consul-check-interval", "5s", "with Consul: how often the agent checks each instance's /readyz"},
	{"ORDERFLOW_CONSUL_DEREGISTER_AFTER", "consul-deregister-after", "1m", "with Consul: how long an instance's check may stay critical before the agent removes it"},
}

// settingDefault returns the default of the setting read from env.
func settingDefault(env string) string {
	for _, s := range settings {
		if s.env == env {
			return s.def
		}
	}
	panic("no setting " + env)
}

// EnvVars lists every environment variable the configuration reads.
func EnvVars() []string {
	out := make([]string, len(settings))
	for i, s := range settings {
		out[i] = s.env
	}
	return out
}

// loadConfig reads the environment, then args as flags, and validates the
// result, reporting every problem at once.
func loadConfig(name string, args []string, getenv func(string) string) (Config, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	vals := make(map[string]*string, len(settings))
	for _, s := range settings {
		def := s.def
		// A secret's value never becomes a flag default, which -h prints.
		if v := getenv(s.env); v != "" && !secretSettings[s.env] {
			def = v
		}
		vals[s.env] = fs.String(s.flag, def, s.usage+" ($"+s.env+")")
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, s := range settings {
		if v := getenv(s.env); secretSettings[s.env] && !given[s.flag] && v != "" {
			*vals[s.env] = v
		}
	}

	var errs []error
	cfg := Config{DatabaseURL: *vals["DATABASE_URL"], HTTPAddr: *vals["ORDERFLOW_HTTP_ADDR"], InternalAddr: *vals["ORDERFLOW_INTERNAL_ADDR"]}
	if cfg.HTTPAddr == "" {
		errs = append(errs, errors.New("ORDERFLOW_HTTP_ADDR must not be empty"))
	}
	for _, r := range strings.Split(*vals["ORDERFLOW_ROLES"], ",") {
		r = strings.TrimSpace(r)
		switch {
		case r == "all":
			cfg.Roles = append(cfg.Roles, knownRoles...)
		case slices.Contains(knownRoles, r):
			cfg.Roles = append(cfg.Roles, r)
		default:
			errs = append(errs, fmt.Errorf("ORDERFLOW_ROLES: unknown role %q (known: all, %s)", r, strings.Join(knownRoles, ", ")))
		}
	}
	slices.Sort(cfg.Roles)
	cfg.Roles = slices.Compact(cfg.Roles)
	// Only the gateway runs without PostgreSQL.
	if cfg.DatabaseURL == "" && cfg.RunsAPI() {
		errs = append(errs, errors.New("DATABASE_URL is required"))
	}
	// Port 0 picks a free port for each listener, so those cannot clash.
	if cfg.RunsGateway() && cfg.RunsAPI() && cfg.InternalAddr == cfg.HTTPAddr && !strings.HasSuffix(cfg.HTTPAddr, ":0") {
		errs = append(errs, fmt.Errorf("ORDERFLOW_INTERNAL_ADDR (%s) must differ from ORDERFLOW_HTTP_ADDR: the gateway serves on one, the other roles on the other", cfg.InternalAddr))
	} else if cfg.RunsGateway() && cfg.RunsAPI() && cfg.InternalAddr == "" {
		errs = append(errs, errors.New("ORDERFLOW_INTERNAL_ADDR must not be empty when the gateway runs beside other roles"))
	}
	intIn := func(env string, lo, hi int) int {
		n, err := strconv.Atoi(*vals[env])
		if err != nil || n < lo || n > hi {
			errs = append(errs, fmt.Errorf("%s: want an integer in [%d, %d], got %q", env, lo, hi, *vals[env]))
		}
		return n
	}
	cfg.DBMaxConns = intIn("ORDERFLOW_DB_MAX_CONNS", 2, 1000)
	cfg.AppendWorkers = intIn("ORDERFLOW_APPEND_WORKERS", 1, 256)
	if cfg.AppendWorkers >= cfg.DBMaxConns {
		errs = append(errs, fmt.Errorf("ORDERFLOW_APPEND_WORKERS (%d) must be below ORDERFLOW_DB_MAX_CONNS (%d) so reads get connections too", cfg.AppendWorkers, cfg.DBMaxConns))
	}
	for _, b := range strings.Split(*vals["KAFKA_BROKERS"], ",") {
		if b = strings.TrimSpace(b); b != "" {
			cfg.KafkaBrokers = append(cfg.KafkaBrokers, b)
		}
	}
	for _, role := range []string{"relay", "projector", "saga"} {
		if slices.Contains(cfg.Roles, role) && len(cfg.KafkaBrokers) == 0 {
			errs = append(errs, fmt.Errorf("KAFKA_BROKERS is required by the %s role", role))
		}
	}
	cfg.KafkaTopicPrefix = *vals["ORDERFLOW_KAFKA_TOPIC_PREFIX"]
	if !topicPrefixPattern.MatchString(cfg.KafkaTopicPrefix) {
		errs = append(errs, fmt.Errorf("ORDERFLOW_KAFKA_TOPIC_PREFIX: want 1 to 200 of letters, digits, '.', '_' or '-', got %q", cfg.KafkaTopicPrefix))
	}
	cfg.KafkaPartitions = intIn("ORDERFLOW_KAFKA_PARTITIONS", 1, 1000)
	cfg.KafkaReplication = intIn("ORDERFLOW_KAFKA_REPLICATION", 1, 10)
	cfg.RelayBatchSize = intIn("ORDERFLOW_RELAY_BATCH_SIZE", 1, 100_000)
	cfg.KafkaBreakerFails = intIn("ORDERFLOW_KAFKA_BREAKER_FAILURES", 1, 1000)
	cfg.ConsumerInFlight = intIn("ORDERFLOW_CONSUMER_IN_FLIGHT", 1, 10_000)
	cfg.ProjectorMaxBatches = intIn("ORDERFLOW_PROJECTOR_MAX_BATCHES", 0, 1000)
	var err error
	if cfg.KafkaBreakerTimeout, err = time.ParseDuration(*vals["ORDERFLOW_KAFKA_BREAKER_OPEN_TIMEOUT"]); err != nil || cfg.KafkaBreakerTimeout <= 0 {
		errs = append(errs, fmt.Errorf("ORDERFLOW_KAFKA_BREAKER_OPEN_TIMEOUT: want a positive duration such as 5s, got %q", *vals["ORDERFLOW_KAFKA_BREAKER_OPEN_TIMEOUT"]))
	}
	if cfg.OrderDeadline, err = time.ParseDuration(*vals["ORDERFLOW_ORDER_DEADLINE"]); err != nil || cfg.OrderDeadline <= 0 {
		errs = append(errs, fmt.Errorf("ORDERFLOW_ORDER_DEADLINE: want a positive duration such as 30s, got %q", *vals["ORDERFLOW_ORDER_DEADLINE"]))
	}
	cfg.PaymentProviderURL = *vals["ORDERFLOW_PAYMENT_PROVIDER_URL"]
	if cfg.PaymentProviderURL != "" {
		if u, err := url.Parse(cfg.PaymentProviderURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("ORDERFLOW_PAYMENT_PROVIDER_URL: want an http(s) URL, got %q", cfg.PaymentProviderURL))
		}
	} else if slices.Contains(cfg.Roles, "saga") && !slices.Contains(cfg.Roles, "payment-provider") {
		errs = append(errs, errors.New("ORDERFLOW_PAYMENT_PROVIDER_URL is required by the saga role when this process does not run the payment-provider role"))
	}
	duration := func(env string, lo, hi time.Duration) time.Duration {
		d, err := time.ParseDuration(*vals[env])
		if err != nil || d < lo || d > hi {
			errs = append(errs, fmt.Errorf("%s: want a duration in [%s, %s], got %q", env, lo, hi, *vals[env]))
		}
		return d
	}
	cfg.PaymentLatency = duration("ORDERFLOW_PAYMENT_LATENCY", 0, 10*time.Minute)
	cfg.PaymentBreakerTimeout = duration("ORDERFLOW_PAYMENT_BREAKER_OPEN_TIMEOUT", time.Millisecond, time.Hour)
	cfg.DeadlineInterval = duration("ORDERFLOW_DEADLINE_INTERVAL", 10*time.Millisecond, time.Hour)
	cfg.ShutdownDelay = duration("ORDERFLOW_SHUTDOWN_DELAY", 0, time.Minute)
	cfg.PaymentBreakerFails = intIn("ORDERFLOW_PAYMENT_BREAKER_FAILURES", 1, 1000)
	if cfg.PaymentFailureRate, err = strconv.ParseFloat(*vals["ORDERFLOW_PAYMENT_FAILURE_RATE"], 64); err != nil || !(cfg.PaymentFailureRate >= 0 && cfg.PaymentFailureRate <= 1) { // NaN too
		errs = append(errs, fmt.Errorf("ORDERFLOW_PAYMENT_FAILURE_RATE: want a number in [0, 1], got %q", *vals["ORDERFLOW_PAYMENT_FAILURE_RATE"]))
	}
	if cfg.MinVersionWait, err = time.ParseDuration(*vals["ORDERFLOW_MIN_VERSION_WAIT"]); err != nil || cfg.MinVersionWait <= 0 || cfg.MinVersionWait > time.Minute {
		errs = append(errs, fmt.Errorf("ORDERFLOW_MIN_VERSION_WAIT: want a duration in (0, 1m], got %q", *vals["ORDERFLOW_MIN_VERSION_WAIT"]))
	}
	if cfg.MigrateOnStart, err = strconv.ParseBool(*vals["ORDERFLOW_MIGRATE_ON_START"]); err != nil {
		errs = append(errs, fmt.Errorf("ORDERFLOW_MIGRATE_ON_START: want true or false, got %q", *vals["ORDERFLOW_MIGRATE_ON_START"]))
	}
	if cfg.ShutdownTimeout, err = time.ParseDuration(*vals["ORDERFLOW_SHUTDOWN_TIMEOUT"]); err != nil || cfg.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("ORDERFLOW_SHUTDOWN_TIMEOUT: want a positive duration such as 15s, got %q", *vals["ORDERFLOW_SHUTDOWN_TIMEOUT"]))
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(*vals["ORDERFLOW_LOG_LEVEL"])); err != nil {
		errs = append(errs, fmt.Errorf("ORDERFLOW_LOG_LEVEL: want debug, info, warn or error, got %q", *vals["ORDERFLOW_LOG_LEVEL"]))
	}
	cfg.Server = httpapi.ServerConfig{
		ReadHeaderTimeout: duration("ORDERFLOW_HTTP_READ_HEADER_TIMEOUT", 100*time.Millisecond, time.Hour),
		ReadTimeout:       duration("ORDERFLOW_HTTP_READ_TIMEOUT", 100*time.Millisecond, time.Hour),
		WriteTimeout:      duration("ORDERFLOW_HTTP_WRITE_TIMEOUT", 100*time.Millisecond, time.Hour),
		IdleTimeout:       duration("ORDERFLOW_HTTP_IDLE_TIMEOUT", 100*time.Millisecond, time.Hour),
	}
	if cfg.Server.ReadHeaderTimeout > cfg.Server.ReadTimeout {
		errs = append(errs, fmt.Errorf("ORDERFLOW_HTTP_READ_HEADER_TIMEOUT (%s) must not exceed ORDERFLOW_HTTP_READ_TIMEOUT (%s), which includes the headers", cfg.Server.ReadHeaderTimeout, cfg.Server.ReadTimeout))
	}
	cfg.Gateway = loadGatewayConfig(cfg, vals, intIn, duration, &errs)
	cfg.Consul = loadConsulConfig(vals, duration, &errs)
	if cfg.RunsGateway() && cfg.Consul.Addr == "" {
		for _, s := range gatewayServices {
			if s.required && len(cfg.Gateway.Upstreams[s.name]) == 0 && !slices.Contains(cfg.Roles, s.name) {
				errs = append(errs, fmt.Errorf("%s is required by the gateway role without CONSUL_HTTP_ADDR when this process does not run the %s role", s.env, s.name))
			}
		}
	}
	if cfg.RunsGateway() && cfg.Consul.Addr != "" {
		for _, s := range gatewayServices {
			if len(cfg.Gateway.Upstreams[s.name]) > 0 {
				errs = append(errs, fmt.Errorf("%s is for running without Consul; with CONSUL_HTTP_ADDR the gateway finds instances in Consul: unset one of them", s.env))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, nil
}

// LogValue logs the configuration with the database password masked.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("database_url", maskURL(c.DatabaseURL)),
		slog.String("http_addr", c.HTTPAddr),
		slog.String("internal_addr", c.InternalAddr),
		slog.Any("roles", c.Roles),
		slog.Duration("http_read_header_timeout", c.Server.ReadHeaderTimeout),
		slog.Duration("http_read_timeout", c.Server.ReadTimeout),
		slog.Duration("http_write_timeout", c.Server.WriteTimeout),
		slog.Duration("http_idle_timeout", c.Server.IdleTimeout),
		slog.Int("db_max_conns", c.DBMaxConns),
		slog.Int("append_workers", c.AppendWorkers),
		slog.Bool("migrate_on_start", c.MigrateOnStart),
		slog.Duration("shutdown_timeout", c.ShutdownTimeout),
		slog.Duration("shutdown_delay", c.ShutdownDelay),
		slog.String("log_level", c.LogLevel.String()),
		slog.Duration("order_deadline", c.OrderDeadline),
		slog.Duration("min_version_wait", c.MinVersionWait),
		slog.String("payment_provider_url", c.PaymentProviderURL),
		slog.Duration("payment_latency", c.PaymentLatency),
		slog.Float64("payment_failure_rate", c.PaymentFailureRate),
		slog.Int("payment_breaker_failures", c.PaymentBreakerFails),
		slog.Duration("payment_breaker_open_timeout", c.PaymentBreakerTimeout),
		slog.Duration("deadline_interval", c.DeadlineInterval),
		slog.Any("kafka_brokers", c.KafkaBrokers),
		slog.String("kafka_topic_prefix", c.KafkaTopicPrefix),
		slog.Int("kafka_partitions", c.KafkaPartitions),
		slog.Int("kafka_replication", c.KafkaReplication),
		slog.Int("relay_batch_size", c.RelayBatchSize),
		slog.Int("consumer_in_flight", c.ConsumerInFlight),
		slog.Int("projector_max_batches", c.ProjectorMaxBatches),
		slog.Int("kafka_breaker_failures", c.KafkaBreakerFails),
		slog.Duration("kafka_breaker_open_timeout", c.KafkaBreakerTimeout),
		slog.String("jwt_secret", maskSecret(c.Gateway.JWTSecret)),
		slog.String("jwt_issuer", c.Gateway.Issuer),
		slog.String("jwt_audience", c.Gateway.Audience),
		slog.Any("gateway_upstreams", c.Gateway.Upstreams),
		slog.String("gateway_client_rate", rateText(c.Gateway.PerClientRate)),
		slog.Int("gateway_client_burst", c.Gateway.PerClientBurst),
		slog.String("gateway_global_rate", rateText(c.Gateway.GlobalRate)),
		slog.Int("gateway_global_burst", c.Gateway.GlobalBurst),
		slog.Int64("gateway_max_body_bytes", c.Gateway.MaxBodyBytes),
		slog.Duration("gateway_request_timeout", c.Gateway.RequestTimeout),
		slog.Int("gateway_breaker_failures", int(c.Gateway.BreakerFailures)),
		slog.Duration("gateway_breaker_open_timeout", c.Gateway.BreakerOpenTimeout),
		slog.String("consul_http_addr", c.Consul.Addr),
		slog.String("advertise_host", c.Consul.AdvertiseHost),
		slog.Any("consul_tags", c.Consul.Tags),
		slog.Duration("consul_check_interval", c.Consul.CheckInterval),
		slog.Duration("consul_deregister_after", c.Consul.DeregisterAfter),
	)
}

// maskSecret says whether a secret is set, and how long it is, never what
// it is.
func maskSecret(s []byte) string {
	if len(s) == 0 {
		return "(not set)"
	}
	return fmt.Sprintf("(set, %d bytes: hidden)", len(s))
}

// maskURL hides the password of a connection URL (and all of a string that
// is not a URL, which may be a keyword/value string holding one).
func maskURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return "(set, not a URL: hidden)"
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	// pgx also takes the password (and a key's) as query parameters.
	q := u.Query()
	for _, k := range []string{"password", "sslpassword"} {
		if q.Has(k) {
			q.Set(k, "xxxxx")
			u.RawQuery = q.Encode()
		}
	}
	return u.String()
}

// databaseURLFlag adds -database-url to fs and returns what to connect to:
// the flag, or $DATABASE_URL. The variable is read after parsing, not made
// the flag's default, because usage and flag errors print defaults and the
// URL may hold a password.
func databaseURLFlag(fs *flag.FlagSet, getenv func(string) string) func() string {
	v := fs.String("database-url", "", "PostgreSQL connection URL (default $DATABASE_URL)")
	return func() string {
		if *v != "" {
			return *v
		}
		return getenv("DATABASE_URL")
	}
}
