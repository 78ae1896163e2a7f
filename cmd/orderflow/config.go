package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Roles this build can run; "all" runs every one of them in one process.
var knownRoles = []string{"command"}

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
	{"ORDERFLOW_APPEND_WORKERS", "append-workers", "4", "concurrent append transactions; concurrent appends beyond them share commits"},
	{"ORDERFLOW_MIGRATE_ON_START", "migrate", "true", "apply migrations at start-up"},
	{"ORDERFLOW_SHUTDOWN_TIMEOUT", "shutdown-timeout", "15s", "how long SIGTERM waits for requests in flight"},
	{"ORDERFLOW_LOG_LEVEL", "log-level", "info", "debug, info, warn or error"},
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
	var err error
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
