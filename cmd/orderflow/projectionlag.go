package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/kafkapubsub"
	"github.com/orderflow/orderflow/projector"
	"github.com/orderflow/orderflow/relay"
)

// projectionLag exports, on each scrape, how far every projection is behind
// the log: the events of its streams the relay has not published yet, plus
// the messages its consumer groups have not committed in Kafka (those
// count every message of the topic, the ones of streams it does not fold too,
// until they are acknowledged). Both are read where they are
// (an index range as long as the relay's backlog; the broker's offsets), so
// a scrape costs the same however long the log. A projection whose figures
// cannot be read (the broker away) is left out of that scrape, and the rest
// of /metrics still answers.
type projectionLag struct {
	pool    *pgxpool.Pool
	brokers []string
	prefix  string
	logger  *slog.Logger
}

var (
	projectionLagEventsDesc = prometheus.NewDesc("orderflow_projection_lag_events",
		"Events a projection has not applied yet: those of its streams the relay has not published, plus the messages past its consumer groups' committed offsets.",
		[]string{"projection"}, nil)
	projectionLagSecondsDesc = prometheus.NewDesc("orderflow_projection_lag_seconds",
		"Age of the oldest event a projection has not applied yet (by the lag_events count); 0 when caught up.",
		[]string{"projection"}, nil)
)

func (c projectionLag) Describe(ch chan<- *prometheus.Desc) {
	ch <- projectionLagEventsDesc
	ch <- projectionLagSecondsDesc
}

func (c projectionLag) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	now := time.Now()
	var streams [][]string
	for _, p := range projector.All() {
		streams = append(streams, projector.LikePatterns(p))
	}
	backlogs, backlogErr := relay.Backlogs(ctx, c.pool, relay.DefaultName, streams) // one read of the backlog for all
	for i, p := range projector.All() {
		var (
			events int64
			age    float64
			err    = backlogErr
		)
		if err == nil {
			events, age = backlogs[i].Events, backlogs[i].Seconds
		}
		for _, s := range projector.Subscriptions(p, c.prefix) {
			lag, lagErr := kafkapubsub.ConsumerLag(ctx, c.brokers, s.ConsumerGroup, s.Topic)
			err = errors.Join(err, lagErr)
			events += lag.Messages
			if lag.Messages > 0 {
				age = max(age, now.Sub(lag.Oldest).Seconds())
			}
		}
		if err != nil {
			c.logger.Warn("projection lag not exported in this scrape", "projection", p.Name(), "err", err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(projectionLagEventsDesc, prometheus.GaugeValue, float64(events), p.Name())
		ch <- prometheus.MustNewConstMetric(projectionLagSecondsDesc, prometheus.GaugeValue, age, p.Name())
	}
}
