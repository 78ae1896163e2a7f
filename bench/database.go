package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/dbtest"
	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/migrations"
)

// database is a fresh database on the server under measurement, made for one
// measurement so no figure inherits another's table sizes or bloat.
type database struct {
	base    string // the server's admin URL
	name    string
	url     string
	brokers []string // set by kafkaEnv: drop deletes the topics too
}

// kafkaEnv returns the environment of an orderflow process that publishes
// to brokers under a topic prefix of this database's own, whose topics drop
// deletes, so that bench runs leave no topics behind on the broker.
func (d *database) kafkaEnv(brokers []string) []string {
	d.brokers = brokers
	return []string{"KAFKA_BROKERS=" + strings.Join(brokers, ","), "ORDERFLOW_KAFKA_TOPIC_PREFIX=" + d.topicPrefix()}
}

func (d *database) topicPrefix() string { return strings.TrimPrefix(d.name, "orderflow_") }

// createDatabase creates orderflow_bench_<random> and, when migrate is set,
// applies migrations/ to it. The caller must drop it.
func createDatabase(ctx context.Context, base string, migrate bool) (*database, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	d := &database{base: base, name: "orderflow_bench_" + hex.EncodeToString(b[:])}
	d.url = dbtest.WithDatabase(base, d.name)

	if err := exec1(ctx, d.base, "create database "+pgx.Identifier{d.name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("create database %s: %w", d.name, err)
	}
	if migrate {
		if _, err := migrations.ApplyURL(ctx, d.url); err != nil {
			return nil, fmt.Errorf("migrate %s: %w; %w", d.name, err, d.drop(ctx))
		}
	}
	return d, nil
}

// drop removes the database, even when ctx has already ended.
func (d *database) drop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := exec1(ctx, d.base, "drop database if exists "+pgx.Identifier{d.name}.Sanitize()+" with (force)"); err != nil {
		return fmt.Errorf("drop database %s: %w", d.name, err)
	}
	if len(d.brokers) > 0 {
		if err := kafkatest.DeleteTopics(ctx, d.brokers, d.topicPrefix()+"."); err != nil {
			return fmt.Errorf("delete topics %s.*: %w", d.topicPrefix(), err)
		}
	}
	return nil
}

// exec1 runs one statement on its own connection to url.
func exec1(ctx context.Context, url, sql string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// queryRow runs one query on its own connection to url and scans its row.
func queryRow(ctx context.Context, url, sql string, dest ...any) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.QueryRow(ctx, sql).Scan(dest...)
}

// redact hides the password of a postgres:// URL for messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}
