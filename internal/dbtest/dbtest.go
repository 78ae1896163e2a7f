// Package dbtest gives each integration test a fresh PostgreSQL database built
// from migrations/ and dropped afterwards. It needs DATABASE_URL (make test
// sets it); without one a test fails rather than skips, so no integration
// test can silently not run.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/migrations"
)

// MustURL returns the URL of a fresh migrated database, dropped when tb ends.
func MustURL(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv("DATABASE_URL")
	if base == "" {
		tb.Fatal("DATABASE_URL is not set: run the tests with `make test`, which starts PostgreSQL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("connect to DATABASE_URL: %v", err)
	}
	defer admin.Close(ctx)

	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "orderflow_test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "create database "+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		admin, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Errorf("drop test database %s: %v", name, err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "drop database if exists "+pgx.Identifier{name}.Sanitize()+" with (force)"); err != nil {
			tb.Errorf("drop test database %s: %v", name, err)
		}
	})

	url := WithDatabase(base, name)
	if _, err := migrations.ApplyURL(ctx, url); err != nil {
		tb.Fatalf("migrate test database: %v", err)
	}
	return url
}

// MustPool returns a pool on a fresh migrated database, closed when tb ends.
func MustPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	url := MustURL(tb)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		tb.Fatalf("parse test database url: %v", err)
	}
	cfg.MaxConns = 40
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("open test database: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// WithDatabase returns the connection string base pointed at database name;
// base is a postgres:// URL or a keyword/value string.
func WithDatabase(base, name string) string {
	if u, err := url.Parse(base); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String()
	}
	return strings.TrimSpace(base) + " dbname=" + name
}
