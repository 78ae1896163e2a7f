package paymentprovider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/orderflow/orderflow/breaker"
	"github.com/orderflow/orderflow/httpapi"
)

// Errors of the Client. A call that fails wraps exactly one of ErrRejected,
// ErrUnavailable or breaker.ErrOpen, unless the caller's context ended first,
// in which case it wraps ctx.Err().
var (
	// ErrRejected: the provider refused the request for good (a 4xx such as
	// an unknown charge, an over-refund or a reused idempotency key);
	// retrying the same request cannot succeed. It does not count against
	// the breaker: the provider answered.
	ErrRejected = errors.New("paymentprovider: request rejected")
	// ErrUnavailable: the provider could not be reached or did not answer
	// usefully in time (transport error, per-call timeout, 5xx, 408, 429, a
	// malformed response); a retry may succeed. It counts against the
	// breaker.
	ErrUnavailable = errors.New("paymentprovider: provider unavailable")
)

// The provider's refusals for good: the slugs of their problem types.
const (
	slugChargeNotFound = "charge-not-found" // a refund of a charge it does not hold
	slugOverRefund     = "over-refund"
	slugKeyReused      = "idempotency-key-reused"
)

// Refused reports whether err is the provider's own answer that the request
// can never succeed: a refund of a charge it does not hold, an over-refund,
// or an idempotency key reused for another request. Another 4xx (a proxy's,
// or a wrong URL's 404) is not: it wraps ErrRejected, but may be mended.
func Refused(err error) bool {
	var se *StatusError
	if !errors.As(err, &se) {
		return false
	}
	for _, slug := range []string{slugChargeNotFound, slugOverRefund, slugKeyReused} {
		if se.Type == httpapi.ProblemType(slug) {
			return true
		}
	}
	return false
}

// StatusError is a non-2xx answer of the provider, with its problem details.
// It wraps ErrRejected or ErrUnavailable, whichever fits its status.
type StatusError struct {
	StatusCode int
	Type       string // problem type URI, if the body was a problem
	Title      string
	Detail     string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("payment provider answered %d", e.StatusCode)
	if e.Title != "" {
		msg += " " + e.Title
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Unwrap returns ErrRejected for a 4xx other than 408 and 429 (which say
// "not now", not "never"), else ErrUnavailable.
func (e *StatusError) Unwrap() error {
	if e.StatusCode >= 400 && e.StatusCode < 500 &&
		e.StatusCode != http.StatusRequestTimeout && e.StatusCode != http.StatusTooManyRequests {
		return ErrRejected
	}
	return ErrUnavailable
}

// Charge is the provider's answer to a charge: Status is StatusCaptured or
// StatusDeclined, and a declined charge says why in DeclineReason.
type Charge struct {
	ID            string
	Status        string
	DeclineReason string
}

// Refund is a refund the provider made: Status is StatusRefunded.
type Refund struct {
	ID          string
	ChargeID    string
	AmountCents int64
	Status      string
}

// DefaultTimeout bounds each call of a Client made without WithTimeout.
const DefaultTimeout = 5 * time.Second

// maxResponseBytes bounds what the client reads of an answer.
const maxResponseBytes = 1 << 20

// Option configures a Client.
type Option func(*Client)

// WithTimeout bounds each call, on top of the caller's context; it must be
// positive.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// Client calls the payment provider through a circuit breaker. It is safe
// for concurrent use.
type Client struct {
	base    *url.URL
	http    *http.Client
	br      *breaker.Breaker
	timeout time.Duration
}

// NewClient returns a client of the provider at baseURL (an absolute http or
// https URL) that sends through httpClient and br; it fails on a bad URL, a
// nil dependency or a non-positive timeout.
func NewClient(baseURL string, httpClient *http.Client, br *breaker.Breaker, opts ...Option) (*Client, error) {
	if httpClient == nil || br == nil {
		return nil, errors.New("paymentprovider: NewClient: nil dependency")
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("paymentprovider: NewClient: base URL %q is not an absolute http(s) URL", baseURL)
	}
	c := &Client{base: u, http: httpClient, br: br, timeout: DefaultTimeout}
	for _, o := range opts {
		o(c)
	}
	if c.timeout <= 0 {
		return nil, fmt.Errorf("paymentprovider: NewClient: timeout %s is not positive", c.timeout)
	}
	return c, nil
}

// Charge charges amountCents for orderID, once per idempotencyKey: a retry
// with the same key returns the first answer. A decline is a result, not an
// error. Errors wrap ErrRejected, ErrUnavailable, breaker.ErrOpen (nothing
// was sent) or ctx.Err(); see StatusError for the provider's answer.
func (c *Client) Charge(ctx context.Context, orderID string, amountCents int64, idempotencyKey string) (Charge, error) {
	id, amount, key := orderID, amountCents, idempotencyKey
	resp, err := call(ctx, c, "charges", chargeRequest{OrderID: &id, AmountCents: &amount, IdempotencyKey: &key}, checkCharge)
	if err != nil {
		return Charge{}, fmt.Errorf("charge order %s: %w", orderID, err)
	}
	return Charge{ID: resp.ChargeID, Status: resp.Status, DeclineReason: resp.DeclineReason}, nil
}

// Void settles the charge of idempotencyKey when its outcome is unknown: it
// returns the charge made under the key if there is one (captured or
// declined), and otherwise makes sure none ever will be, returning a
// decline with reason VoidedDeclineReason. Errors are as for Charge.
func (c *Client) Void(ctx context.Context, idempotencyKey string) (Charge, error) {
	key := idempotencyKey
	resp, err := call(ctx, c, "voids", voidRequest{IdempotencyKey: &key}, checkCharge)
	if err != nil {
		return Charge{}, fmt.Errorf("void charge %s: %w", idempotencyKey, err)
	}
	return Charge{ID: resp.ChargeID, Status: resp.Status, DeclineReason: resp.DeclineReason}, nil
}

// checkCharge refuses a charge answer that is not one.
func checkCharge(r chargeResponse) error {
	if r.ChargeID == "" || (r.Status != StatusCaptured && r.Status != StatusDeclined) {
		return fmt.Errorf("%w: malformed charge response (id %q, status %q)", ErrUnavailable, r.ChargeID, r.Status)
	}
	return nil
}

// Refund gives back amountCents of the captured charge chargeID, once per
// idempotencyKey. An unknown or declined charge, or more than is left to
// refund, is an error wrapping ErrRejected (a *StatusError with 404 or 409);
// other errors are as for Charge.
func (c *Client) Refund(ctx context.Context, chargeID string, amountCents int64, idempotencyKey string) (Refund, error) {
	id, amount, key := chargeID, amountCents, idempotencyKey
	resp, err := call(ctx, c, "refunds", refundRequest{ChargeID: &id, AmountCents: &amount, IdempotencyKey: &key},
		func(r refundResponse) error {
			if r.RefundID == "" || r.Status != StatusRefunded {
				return fmt.Errorf("%w: malformed refund response (id %q, status %q)", ErrUnavailable, r.RefundID, r.Status)
			}
			return nil
		})
	if err != nil {
		return Refund{}, fmt.Errorf("refund charge %s: %w", chargeID, err)
	}
	return Refund{ID: resp.RefundID, ChargeID: resp.ChargeID, AmountCents: resp.AmountCents, Status: resp.Status}, nil
}

// call posts in to /v1/<path> through the breaker. A rejection leaves the
// breaker's callback with nil, because the provider did answer; it is
// returned after the breaker has counted the call as a success.
func call[T any](ctx context.Context, c *Client, path string, in any, check func(T) error) (T, error) {
	var (
		out      T
		rejected error
	)
	err := c.br.Do(func() error {
		var err error
		out, err = roundTrip[T](ctx, c, path, in)
		if err == nil {
			err = check(out)
		}
		if errors.Is(err, ErrRejected) {
			rejected = err
			return nil
		}
		return err
	})
	if err == nil {
		err = rejected
	}
	if err != nil {
		var zero T
		return zero, err
	}
	return out, nil
}

func roundTrip[T any](ctx context.Context, c *Client, path string, in any) (T, error) {
	var out T
	body, err := json.Marshal(in)
	if err != nil {
		return out, err
	}
	callCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(callCtx, http.MethodPost, c.base.JoinPath("v1", path).String(), bytes.NewReader(body))
	if err != nil {
		return out, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, "+httpapi.ProblemContentType)
	if id := httpapi.RequestID(ctx); id != "" {
		req.Header.Set(httpapi.RequestIDHeader, id)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return out, unavailable(ctx, err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes))
		_ = resp.Body.Close()
	}()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return out, unavailable(ctx, fmt.Errorf("read response: %w", err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		se := &StatusError{StatusCode: resp.StatusCode}
		var p httpapi.Problem
		if json.Unmarshal(data, &p) == nil {
			se.Type, se.Title, se.Detail = p.Type, p.Title, p.Detail
		}
		return out, se
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return out, fmt.Errorf("%w: decode response: %w", ErrUnavailable, err)
	}
	return out, nil
}

// unavailable wraps a failed exchange: in ErrUnavailable, unless the caller's
// own context ended (cancelled or past its deadline), which is the caller's
// doing, not the provider's, and does not count against the breaker.
func unavailable(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return breaker.Excluded(fmt.Errorf("%w (%w)", ctx.Err(), err))
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
