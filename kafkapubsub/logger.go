package kafkapubsub

import (
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/segmentio/kafka-go"
)

// NewSlogLogger returns the watermill logger for l (slog.Default() when nil),
// using watermill's own slog adapter.
func NewSlogLogger(l *slog.Logger) watermill.LoggerAdapter {
	if l == nil {
		l = slog.Default()
	}
	return watermill.NewSlogLogger(l)
}

// errorLogger routes kafka-go's error log to logger at info level: most of
// its lines are routine (a group rebalancing, a retried fetch), and the
// failures that matter also come back from FetchMessage, CommitMessages or
// WriteMessages, which the Publisher and Subscriber log as errors.
func errorLogger(logger watermill.LoggerAdapter) kafka.Logger {
	return kafka.LoggerFunc(func(format string, args ...any) {
		logger.Info("kafka-go: "+fmt.Sprintf(format, args...), nil)
	})
}
