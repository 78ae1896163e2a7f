package kafkapubsub

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
)

// Defaults applied to a zero field of RouterConfig.
const (
	// DefaultDeadLetterTopic receives the messages that exhausted their retries.
	DefaultDeadLetterTopic = "orderflow.deadletter"
	// DefaultMaxRetries is how many times a failed message is retried.
	DefaultMaxRetries = 3
	// DefaultRetryInitialInterval is the wait before the first retry.
	DefaultRetryInitialInterval = 100 * time.Millisecond
	// DefaultRetryMaxInterval caps the wait between retries.
	DefaultRetryMaxInterval = 5 * time.Second
	// DefaultRetryMultiplier is the growth of the wait from one retry to the next.
	DefaultRetryMultiplier = 2.0
)

// RouterConfig configures NewRouter; zero fields take the defaults above.
type RouterConfig struct {
	// DeadLetterTopic receives poisoned messages with their original payload
	// and metadata, plus the reason (middleware.ReasonForPoisonedKey) and the
	// topic, handler and subscriber they came from; default DefaultDeadLetterTopic.
	DeadLetterTopic string
	// MaxRetries is how many times a failed message is retried before it is
	// poisoned, so a handler sees it at most MaxRetries+1 times; default DefaultMaxRetries.
	MaxRetries int
	// InitialInterval is the wait before the first retry; default DefaultRetryInitialInterval.
	InitialInterval time.Duration
	// MaxInterval caps the wait between retries; default DefaultRetryMaxInterval.
	MaxInterval time.Duration
	// Multiplier is the growth of the wait per retry (at least 1); default DefaultRetryMultiplier.
	Multiplier float64
	// CloseTimeout is how long Router.Close waits for handlers; default watermill's (30s).
	CloseTimeout time.Duration
	// Poison, when set, decides which errors (after the retries) send a
	// message to the dead-letter topic; a message whose error it rejects is
	// nacked and delivered again instead. Use it to keep transient failures
	// (a database that is down) out of the dead-letter topic. Nil poisons
	// every error.
	Poison func(error) bool
}

// setDefaults fills the zero fields.
func (c *RouterConfig) setDefaults() {
	if c.DeadLetterTopic == "" {
		c.DeadLetterTopic = DefaultDeadLetterTopic
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.InitialInterval == 0 {
		c.InitialInterval = DefaultRetryInitialInterval
	}
	if c.MaxInterval == 0 {
		c.MaxInterval = DefaultRetryMaxInterval
	}
	if c.Multiplier == 0 {
		c.Multiplier = DefaultRetryMultiplier
	}
}

// Validate reports every problem of the config at once (errors.Join); a zero
// field is valid and means its default.
func (c RouterConfig) Validate() error {
	var errs []error
	if c.DeadLetterTopic != "" && strings.TrimSpace(c.DeadLetterTopic) != c.DeadLetterTopic {
		errs = append(errs, fmt.Errorf("DeadLetterTopic %q has surrounding spaces", c.DeadLetterTopic))
	}
	if c.MaxRetries < 0 {
		errs = append(errs, fmt.Errorf("MaxRetries %d is negative", c.MaxRetries))
	}
	if c.InitialInterval < 0 {
		errs = append(errs, fmt.Errorf("InitialInterval %s is negative", c.InitialInterval))
	}
	if c.MaxInterval < 0 {
		errs = append(errs, fmt.Errorf("MaxInterval %s is negative", c.MaxInterval))
	}
	if c.InitialInterval > 0 && c.MaxInterval > 0 && c.InitialInterval > c.MaxInterval {
		errs = append(errs, fmt.Errorf("InitialInterval %s exceeds MaxInterval %s", c.InitialInterval, c.MaxInterval))
	}
	if c.Multiplier != 0 && c.Multiplier < 1 {
		errs = append(errs, fmt.Errorf("Multiplier %g is below 1", c.Multiplier))
	}
	if c.CloseTimeout < 0 {
		errs = append(errs, fmt.Errorf("CloseTimeout %s is negative", c.CloseTimeout))
	}
	return errors.Join(errs...)
}

// NewRouter returns the watermill router every orderflow consumer runs in,
// with its middleware installed, or the config's validation errors, or an
// error for a nil publisher (which the dead-letter topic is written through).
//
// The middleware, outermost first:
//  1. correlation ID: messages a handler produces carry its input's correlation id;
//  2. poison queue: a message whose handling still fails after the retries
//     goes to the dead-letter topic and is acked, so one bad message does not
//     stop its partition;
//  3. retry with exponential backoff: MaxRetries more attempts;
//  4. recoverer: a panic becomes an error, which is retried like any other.
//
// The order matters: the poison queue wraps the retry, so only messages that
// exhausted their retries are poisoned, and the recoverer is innermost, so a
// panic is retried instead of escaping the retry.
func NewRouter(config RouterConfig, publisher message.Publisher, logger watermill.LoggerAdapter) (*message.Router, error) {
	if err := config.Validate(); err != nil {
		return nil, fmt.Errorf("kafkapubsub: invalid router config: %w", err)
	}
	config.setDefaults()
	if publisher == nil {
		return nil, errors.New("kafkapubsub: NewRouter: nil publisher")
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}

	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: config.CloseTimeout}, logger)
	if err != nil {
		return nil, fmt.Errorf("kafkapubsub: new router: %w", err)
	}
	poison := config.Poison
	if poison == nil {
		poison = func(error) bool { return true }
	}
	poisonQueue, err := middleware.PoisonQueueWithFilter(publisher, config.DeadLetterTopic, poison)
	if err != nil {
		return nil, fmt.Errorf("kafkapubsub: poison queue: %w", err)
	}
	router.AddMiddleware(
		middleware.CorrelationID,
		poisonQueue,
		middleware.Retry{
			MaxRetries:      config.MaxRetries,
			InitialInterval: config.InitialInterval,
			MaxInterval:     config.MaxInterval,
			Multiplier:      config.Multiplier,
			// No time cap: MaxRetries alone bounds the attempts, so a
			// message is poisoned after exactly MaxRetries+1 of them.
			MaxElapsedTime: 0,
			Logger:         logger,
		}.Middleware,
		middleware.Recoverer,
	)
	return router, nil
}
