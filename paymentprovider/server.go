// Package paymentprovider is the payment service the saga charges and
// refunds through: a simulated external HTTP provider (the
// "payment-provider" role) with configurable latency, decline rate and
// outage, and the Client the saga's payment participant calls it with.
//
// The server promises what a real provider would: a charge or refund is made
// at most once per idempotency key, and a retry with the same key gets the
// same answer. It keeps its charges in memory behind one mutex: it is a
// simulation for development, tests and load tests, not a ledger, and a
// restart forgets everything.
package paymentprovider

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/httpapi"
)

// Charge and refund statuses on the wire.
const (
	StatusCaptured = "captured"
	StatusDeclined = "declined"
	StatusRefunded = "refunded"
)

// SimulatedDeclineReason is the decline_reason of every simulated decline.
const SimulatedDeclineReason = "card_declined"

// VoidedDeclineReason is the decline_reason of a charge asked for under an
// idempotency key that was voided first (POST /v1/voids).
const VoidedDeclineReason = "voided"

// MaxLatency bounds the simulated latency.
const MaxLatency = 10 * time.Minute

// Config sets how the simulated provider behaves at start; the admin
// endpoints change it at run time.
type Config struct {
	// Latency is how long every /v1 request waits before it is handled.
	Latency time.Duration
	// FailureRate is the share of charges declined, in [0, 1]. Whether a
	// charge is declined depends only on its idempotency key, so a retry gets
	// the same answer; 0 declines none and 1 declines all.
	FailureRate float64
	// Outage starts the provider down: every /v1 request gets 503.
	Outage bool
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.Latency < 0 || c.Latency > MaxLatency {
		errs = append(errs, fmt.Errorf("paymentprovider: latency %s not in [0, %s]", c.Latency, MaxLatency))
	}
	if !(c.FailureRate >= 0 && c.FailureRate <= 1) { // also rejects NaN
		errs = append(errs, fmt.Errorf("paymentprovider: failure rate %v not in [0, 1]", c.FailureRate))
	}
	return errors.Join(errs...)
}

// State is what GET /admin/state reports: the current behaviour and what has
// been charged and refunded so far. Charges counts every distinct charge,
// declined ones included; Declines counts the declined ones.
type State struct {
	Down          bool    `json:"down"`
	LatencyMS     int64   `json:"latency_ms"`
	FailureRate   float64 `json:"failure_rate"`
	Charges       int64   `json:"charges"`
	Declines      int64   `json:"declines"`
	Refunds       int64   `json:"refunds"`
	CapturedCents int64   `json:"captured_cents"`
	RefundedCents int64   `json:"refunded_cents"`
}

// Wire types shared by the server and the Client.
type (
	chargeRequest struct {
		OrderID        *string `json:"order_id"`
		AmountCents    *int64  `json:"amount_cents"`
		IdempotencyKey *string `json:"idempotency_key"`
	}
	chargeResponse struct {
		ChargeID      string `json:"charge_id"`
		OrderID       string `json:"order_id"`
		AmountCents   int64  `json:"amount_cents"`
		Status        string `json:"status"`
		DeclineReason string `json:"decline_reason,omitempty"`
	}
	voidRequest struct {
		IdempotencyKey *string `json:"idempotency_key"`
	}
	refundRequest struct {
		ChargeID       *string `json:"charge_id"`
		AmountCents    *int64  `json:"amount_cents"`
		IdempotencyKey *string `json:"idempotency_key"`
	}
	refundResponse struct {
		RefundID    string `json:"refund_id"`
		ChargeID    string `json:"charge_id"`
		AmountCents int64  `json:"amount_cents"`
		Status      string `json:"status"`
	}
)

// Server is the simulated payment provider.
type Server struct {
	logger *slog.Logger

	mu      sync.Mutex
	cfg     Config
	state   State                   // counters; behaviour fields filled in by State()
	charges map[string]*chargeEntry // by charge id
	byKey   map[string]*chargeEntry // by idempotency key
	refunds map[string]refundEntry  // by idempotency key
}

// chargeEntry is one charge and what its idempotency key promised; a void
// entry is a key voided before any charge, which every charge under it
// gets as its answer.
type chargeEntry struct {
	orderID  string
	amount   int64
	resp     chargeResponse
	refunded int64
	void     bool
}

// refundEntry is one refund and the request its idempotency key was used for.
type refundEntry struct {
	chargeID string
	amount   int64
	resp     refundResponse
}

// NewServer returns a provider behaving as cfg says; it fails on an invalid
// cfg (every problem joined) or a nil logger.
func NewServer(cfg Config, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		return nil, errors.New("paymentprovider: NewServer: nil logger")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Server{
		logger:  logger,
		cfg:     cfg,
		charges: map[string]*chargeEntry{},
		byKey:   map[string]*chargeEntry{},
		refunds: map[string]refundEntry{},
	}, nil
}

// Handler returns the provider's routes (see Mount) plus GET /healthz on a
// router of its own.
func (s *Server) Handler() http.Handler {
	r := httpapi.NewRouter(s.logger, nil)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		httpapi.JSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.Mount(r)
	return r
}

// Mount adds POST /v1/charges, POST /v1/voids, POST /v1/refunds and the
// admin endpoints PUT /admin/outage, PUT /admin/config and GET /admin/state
// to r, for a process that serves its own health endpoints.
func (s *Server) Mount(r chi.Router) {
	v1 := r.With(s.simulate)
	v1.Post("/v1/charges", s.charge)
	v1.Post("/v1/voids", s.void)
	v1.Post("/v1/refunds", s.refund)
	r.Put("/admin/outage", s.putOutage)
	r.Put("/admin/config", s.putConfig)
	r.Get("/admin/state", s.getState)
}

// State returns the current behaviour and counters.
func (s *Server) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stateLocked()
}

func (s *Server) stateLocked() State {
	st := s.state
	st.Down, st.LatencyMS, st.FailureRate = s.cfg.Outage, s.cfg.Latency.Milliseconds(), s.cfg.FailureRate
	return st
}

var errOutage = &httpapi.RequestError{Status: http.StatusServiceUnavailable, Slug: "provider-outage",
	Title: "Payment provider unavailable", Detail: "The simulated payment provider is in an outage; retry later."}

// simulate is what makes the provider external-looking: during an outage it
// refuses at once, otherwise it waits the configured latency, giving up when
// the caller does, and refuses still if an outage began meanwhile.
func (s *Server) simulate(next http.Handler) http.Handler {
	down := func(w http.ResponseWriter, r *http.Request) bool {
		s.mu.Lock()
		down := s.cfg.Outage
		s.mu.Unlock()
		if down {
			w.Header().Set("Retry-After", "1")
			httpapi.Error(w, r, s.logger, errOutage)
		}
		return down
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		latency := s.cfg.Latency
		s.mu.Unlock()
		if down(w, r) {
			return
		}
		if latency > 0 {
			// net/http notices a caller that hung up only once the body has
			// been read to its end, so read it (up to one byte past the
			// limit the handler enforces) before waiting.
			buf, _ := io.ReadAll(io.LimitReader(r.Body, httpapi.MaxBodyBytes+1))
			r.Body = readCloser{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
			t := time.NewTimer(latency)
			defer t.Stop()
			select {
			case <-t.C:
			case <-r.Context().Done():
				httpapi.Error(w, r, s.logger, r.Context().Err())
				return
			}
			if down(w, r) {
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

type readCloser struct {
	io.Reader
	io.Closer
}

var idempotencyKeyPattern = regexp.MustCompile(`^[\x21-\x7E]{1,255}$`)

const maxIDLength = 255

func checkID(v *orderflow.ValidationError, field string, s *string) string {
	switch {
	case s == nil:
		v.Add(field, "is required")
	case *s == "" || len(*s) > maxIDLength:
		v.Add(field, fmt.Sprintf("must be 1 to %d characters", maxIDLength))
	default:
		return *s
	}
	return ""
}

func checkKey(v *orderflow.ValidationError, s *string) string {
	switch {
	case s == nil:
		v.Add("idempotency_key", "is required")
	case !idempotencyKeyPattern.MatchString(*s):
		v.Add("idempotency_key", "must be 1 to 255 visible ASCII characters")
	default:
		return *s
	}
	return ""
}

func checkAmount(v *orderflow.ValidationError, n *int64) int64 {
	switch {
	case n == nil:
		v.Add("amount_cents", "is required")
	case *n < 0:
		v.Add("amount_cents", "must be at least 0")
	default:
		return *n
	}
	return 0
}

var errKeyReused = &httpapi.RequestError{Status: http.StatusUnprocessableEntity, Slug: slugKeyReused,
	Title:  "Idempotency key reused",
	Detail: "This idempotency_key was already used for a different request; use a new key for a new request."}

// declined reports whether the charge with key is declined at rate: the
// key's FNV-1a hash mapped to [0, 1) falls below it. FNV-1a barely changes
// its high bits for keys that differ only at the end ("order-1",
// "order-2"), so the hash goes through murmur3's 64-bit finalizer before the
// mapping, or nearly every such key would get the same answer.
func declined(key string, rate float64) bool {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	k := h.Sum64()
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return float64(k>>11)/(1<<53) < rate
}

func (s *Server) charge(w http.ResponseWriter, r *http.Request) {
	var req chargeRequest
	if _, err := httpapi.DecodeJSON(w, r, &req, false); err != nil {
		httpapi.Error(w, r, s.logger, err)
		return
	}
	v := &orderflow.ValidationError{}
	orderID := checkID(v, "order_id", req.OrderID)
	amount := checkAmount(v, req.AmountCents)
	key := checkKey(v, req.IdempotencyKey)
	if err := v.Err(); err != nil {
		httpapi.Error(w, r, s.logger, err)
		return
	}

	resp, status, err := s.createCharge(orderID, amount, key)
	if err != nil {
		httpapi.Error(w, r, s.logger, err)
		return
	}
	httpapi.JSON(w, status, resp)
}

// createCharge charges amount for orderID once per key: a repeat of the same
// request returns the first answer with 200, another request under the same
// key is refused with 422.
func (s *Server) createCharge(orderID string, amount int64, key string) (chargeResponse, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.byKey[key]; ok {
		if c.void {
			return c.resp, http.StatusOK, nil
		}
		if c.orderID != orderID || c.amount != amount {
			return chargeResponse{}, 0, errKeyReused
		}
		return c.resp, http.StatusOK, nil
	}
	c := &chargeEntry{orderID: orderID, amount: amount, resp: chargeResponse{
		ChargeID: "ch_" + uuid.NewString(), OrderID: orderID, AmountCents: amount, Status: StatusCaptured,
	}}
	s.state.Charges++
	if declined(key, s.cfg.FailureRate) {
		c.resp.Status, c.resp.DeclineReason = StatusDeclined, SimulatedDeclineReason
		s.state.Declines++
	} else {
		s.state.CapturedCents += amount
	}
	s.charges[c.resp.ChargeID], s.byKey[key] = c, c
	return c.resp, http.StatusCreated, nil
}

// void settles a charge whose outcome the caller does not know (its answer
// was lost, or the order ended while the charge waited): the charge made
// under the key, if there is one, is returned as it is (200); otherwise the
// key is voided, so that no charge can ever be made under it, and a
// declined charge with reason VoidedDeclineReason is returned (201), which
// is also what any later charge under the key gets.
func (s *Server) void(w http.ResponseWriter, r *http.Request) {
	var req voidRequest
	if _, err := httpapi.DecodeJSON(w, r, &req, false); err != nil {
		httpapi.Error(w, r, s.logger, err)
		return
	}
	v := &orderflow.ValidationError{}
	key := checkKey(v, req.IdempotencyKey)
	if err := v.Err(); err != nil {
		httpapi.Error(w, r, s.logger, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.byKey[key]; ok {
		httpapi.JSON(w, http.StatusOK, c.resp)
		return
	}
	c := &chargeEntry{void: true, resp: chargeResponse{ChargeID: "ch_" + uuid.NewString(), Status: StatusDeclined, DeclineReason: VoidedDeclineReason}}
	s.byKey[key] = c
	httpapi.JSON(w, http.StatusCreated, c.resp)
}

func (s *Server) refund(w http.ResponseWriter, r *http.Request) {
	var req refundRequest
	if _, err := httpapi.DecodeJSON(w, r, &req, false); err != nil {
		httpapi.Error(w, r, s.logger, err)
		return
	}
	v := &orderflow.ValidationError{}
	chargeID := checkID(v, "charge_id", req.ChargeID)
	amount := checkAmount(v, req.AmountCents)
	key := checkKey(v, req.IdempotencyKey)
	if err := v.Err(); err != nil {
		httpapi.Error(w, r, s.logger, err)
		return
	}

	resp, status, err := s.createRefund(chargeID, amount, key)
	if err != nil {
		httpapi.Error(w, r, s.logger, err)
		return
	}
	httpapi.JSON(w, status, resp)
}

// createRefund gives back amount of a captured charge once per key, like
// createCharge; an unknown or declined charge is a 404, more than is left to
// refund a 409.
func (s *Server) createRefund(chargeID string, amount int64, key string) (refundResponse, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.refunds[key]; ok {
		if e.chargeID != chargeID || e.amount != amount {
			return refundResponse{}, 0, errKeyReused
		}
		return e.resp, http.StatusOK, nil
	}
	c, ok := s.charges[chargeID]
	if !ok || c.resp.Status != StatusCaptured {
		return refundResponse{}, 0, &httpapi.RequestError{Status: http.StatusNotFound, Slug: slugChargeNotFound,
			Title: "Not found", Detail: "No captured charge " + chargeID + "."}
	}
	if left := c.amount - c.refunded; amount > left {
		return refundResponse{}, 0, &httpapi.RequestError{Status: http.StatusConflict, Slug: slugOverRefund,
			Title:  "Refund exceeds the charge",
			Detail: fmt.Sprintf("Charge %s has %d cents left to refund; %d were asked.", chargeID, left, amount)}
	}
	c.refunded += amount
	e := refundEntry{chargeID: chargeID, amount: amount, resp: refundResponse{
		RefundID: "re_" + uuid.NewString(), ChargeID: chargeID, AmountCents: amount, Status: StatusRefunded,
	}}
	s.refunds[key] = e
	s.state.Refunds++
	s.state.RefundedCents += amount
	return e.resp, http.StatusCreated, nil
}

type outageRequest struct {
	Down *bool `json:"down"`
}

type outageResponse struct {
	Down bool `json:"down"`
}

func (s *Server) putOutage(w http.ResponseWriter, r *http.Request) {
	var req outageRequest
	if _, err := httpapi.DecodeJSON(w, r, &req, false); err != nil {
		httpapi.Error(w, r, s.logger, err)
		return
	}
	if req.Down == nil {
		httpapi.Error(w, r, s.logger, orderflow.Invalid("down", "is required"))
		return
	}
	s.mu.Lock()
	s.cfg.Outage = *req.Down
	s.mu.Unlock()
	s.logger.InfoContext(r.Context(), "payment provider outage set", "down", *req.Down)
	httpapi.JSON(w, http.StatusOK, outageResponse{Down: *req.Down})
}

type configRequest struct {
	LatencyMS   *int64   `json:"latency_ms"`
	FailureRate *float64 `json:"failure_rate"`
}

func (s *Server) putConfig(w http.ResponseWriter, r *http.Request) {
	var req configRequest
	if _, err := httpapi.DecodeJSON(w, r, &req, false); err != nil {
		httpapi.Error(w, r, s.logger, err)
		return
	}
	v := &orderflow.ValidationError{}
	if n := req.LatencyMS; n != nil && (*n < 0 || *n > MaxLatency.Milliseconds()) {
		v.Add("latency_ms", fmt.Sprintf("must be between 0 and %d", MaxLatency.Milliseconds()))
	}
	if f := req.FailureRate; f != nil && !(*f >= 0 && *f <= 1) {
		v.Add("failure_rate", "must be between 0 and 1")
	}
	if err := v.Err(); err != nil {
		httpapi.Error(w, r, s.logger, err)
		return
	}
	s.mu.Lock()
	if req.LatencyMS != nil {
		s.cfg.Latency = time.Duration(*req.LatencyMS) * time.Millisecond
	}
	if req.FailureRate != nil {
		s.cfg.FailureRate = *req.FailureRate
	}
	st := s.stateLocked()
	s.mu.Unlock()
	s.logger.InfoContext(r.Context(), "payment provider config set", "latency_ms", st.LatencyMS, "failure_rate", st.FailureRate)
	httpapi.JSON(w, http.StatusOK, st)
}

func (s *Server) getState(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	httpapi.JSON(w, http.StatusOK, s.State())
}
