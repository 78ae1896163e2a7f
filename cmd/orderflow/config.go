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
)

// Roles this build can run; "all" runs every one of them in one process.
var knownRoles = []string{"command", "query", "relay", "projector", "saga", "payment-provider"}

var topicPrefixPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,200}$`)

// Config is the whole configuration of `orderflow serve`, read from the
// environment and overridden by flags.
type Config struct {
	DatabaseURL     string
	HTTPAddr        string
	Roles           []string
	DBMaxConns      int
	AppendWorkers   int
	MigrateOnStart  bool
	ShutdownTimeout time.Duration
	LogLevel        slog.Level

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
	KafkaBreakerFails   int
	KafkaBreakerTimeout time.Duration
}

// env describes one setting: its variable, flag and default.
type setting struct {
	env, flag, def, usage string
}

var settings = []setting{
	{"DATABASE_URL", "database-url", "", "PostgreSQL connection URL (required)"},
	{"ORDERFLOW_HTTP_ADDR", "http-addr", ":8080", "address the HTTP API listens on"},
	{"ORDERFLOW_ROLES", "roles", "all", "comma-separated roles to run: all, " + strings.Join(knownRoles, ", ")},
	{"ORDERFLOW_DB_MAX_CONNS", "db-max-conns", "20", "PostgreSQL pool size"},
	{"ORDERFLOW_APPEND_WORKERS", "append-workers", "2", "concurrent append transactions; concurrent appends beyond them share commits"},
	{"ORDERFLOW_MIGRATE_ON_START", "migrate", "true", "apply migrations at start-up"},
	{"ORDERFLOW_SHUTDOWN_TIMEOUT", "shutdown-timeout", "15s", "how long SIGTERM waits for requests in flight"},
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
	{"ORDERFLOW_KAFKA_TOPIC_PREFIX", "kafka-topic-prefix", "orderflow", "topics are <prefix>.order, <prefix>.inventory, <prefix>.payment, <prefix>.unrouted"},
	{"ORDERFLOW_KAFKA_PARTITIONS", "kafka-partitions", "6", "partitions of each topic the relay creates"},
	{"ORDERFLOW_KAFKA_REPLICATION", "kafka-replication", "1", "replication factor of each topic the relay creates"},
	{"ORDERFLOW_RELAY_BATCH_SIZE", "relay-batch-size", "1000", "most events the relay publishes per batch"},
	{"ORDERFLOW_CONSUMER_IN_FLIGHT", "consumer-in-flight", "256", "projection and saga consumers: most messages each handler has out at once (different keys concurrently, one key in order); a projection applies what gathers in one transaction"},
	{"ORDERFLOW_KAFKA_BREAKER_FAILURES", "kafka-breaker-failures", "5", "consecutive publish failures that open the Kafka breaker"},
	{"ORDERFLOW_KAFKA_BREAKER_OPEN_TIMEOUT", "kafka-breaker-open-timeout", "5s", "how long the Kafka breaker stays open before a probe"},
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
		if v := getenv(s.env); v != "" {
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

	var errs []error
	cfg := Config{DatabaseURL: *vals["DATABASE_URL"], HTTPAddr: *vals["ORDERFLOW_HTTP_ADDR"]}
	if cfg.DatabaseURL == "" {
		errs = append(errs, errors.New("DATABASE_URL is required"))
	}
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
	cfg.PaymentBreakerFails = intIn("ORDERFLOW_PAYMENT_BREAKER_FAILURES", 1, 1000)
	if cfg.PaymentFailureRate, err = strconv.ParseFloat(*vals["ORDERFLOW_PAYMENT_FAILURE_RATE"], 64); err != nil || cfg.PaymentFailureRate < 0 || cfg.PaymentFailureRate > 1 {
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
		slog.Any("roles", c.Roles),
		slog.Int("db_max_conns", c.DBMaxConns),
		slog.Int("append_workers", c.AppendWorkers),
		slog.Bool("migrate_on_start", c.MigrateOnStart),
		slog.Duration("shutdown_timeout", c.ShutdownTimeout),
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
		slog.Int("kafka_breaker_failures", c.KafkaBreakerFails),
		slog.Duration("kafka_breaker_open_timeout", c.KafkaBreakerTimeout),
	)
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
	return u.String()
}
