package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/golang-jwt/jwt/v5"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/httpapi"
)

// idempotencyKeyHeader is the header that makes a command idempotent; the
// command API accepts one value of 1 to 255 visible ASCII characters.
const idempotencyKeyHeader = "Idempotency-Key"

const maxIdempotencyKey = 255

var (
	idempotencyKeyPattern = regexp.MustCompile(`^[\x21-\x7E]{1,255}$`)
	traceParentPattern    = regexp.MustCompile(`^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)
)

// serviceKey carries the service a request is forwarded to, from forward to
// rewrite.
type serviceKey struct{}

// guard decides whether who may make request r, whose buffered body is body.
// It returns the request to forward (possibly rewritten), or writes the
// refusal and returns false.
type guard func(w http.ResponseWriter, r *http.Request, who identity, body []byte) (*http.Request, bool)

// authenticateAndLimit resolves the caller, charges it (by client id, or by
// remote IP when it has no valid token) against the rate limits, and only
// then refuses a missing or invalid token: a client guessing tokens is
// limited like any other.
func (g *Gateway) authenticateAndLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, authErr := g.authenticate(r)
		key := "ip " + remoteIP(r)
		if authErr == nil {
			key = "client " + who.client
		}
		if wait, limit := g.admit(key); wait > 0 {
			g.metrics.limited.WithLabelValues(limit).Inc()
			w.Header().Set("Retry-After", retryAfter(wait))
			g.problem(w, r, http.StatusTooManyRequests, "rate-limited", "Too many requests",
				"The "+limit+" rate limit is exhausted; retry after the number of seconds in Retry-After.")
			return
		}
		if authErr != nil {
			g.logger.DebugContext(r.Context(), "request not authenticated", "path", r.URL.Path,
				"request_id", httpapi.RequestID(r.Context()), "err", authErr)
			detail := "Send a valid bearer token: Authorization: Bearer <JWT>."
			if errors.Is(authErr, errNoToken) {
				detail = "This endpoint needs a bearer token: Authorization: Bearer <JWT>."
			} else if errors.Is(authErr, jwt.ErrTokenExpired) {
				detail = "The bearer token has expired; get a new one."
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="orderflow", error="invalid_token"`)
			g.problem(w, r, http.StatusUnauthorized, "unauthorized", "Unauthorized", detail)
			return
		}
		next.ServeHTTP(w, r.WithContext(withIdentity(r.Context(), who)))
	})
}

// forward returns the handler of a proxied route: it bounds the request's
// time and body, lets check refuse or rewrite it, sets the upstream headers
// and sends it to an instance of service.
func (g *Gateway) forward(service string, check guard) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who := identityFrom(r.Context())
		ctx, cancel := context.WithTimeout(r.Context(), g.cfg.RequestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		r, body, ok := g.readBody(w, r)
		if !ok {
			return
		}
		if r, ok = check(w, r, who, body); !ok {
			return
		}
		h, err := upstreamHeader(r, who)
		if err != nil {
			httpapi.Error(w, r, g.logger, err)
			return
		}
		r.Header = h
		g.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), serviceKey{}, service)))
	}
}

// readBody buffers r's body, at most MaxBodyBytes of it (413 beyond). A
// buffered body can be inspected by a guard, replayed on a retry, and a slow
// client uploads it to the gateway rather than holding an upstream
// connection.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) (*http.Request, []byte, bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return r, nil, true
	}
	if r.ContentLength > g.cfg.MaxBodyBytes {
		g.tooLarge(w, r)
		return nil, nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		g.tooLarge(w, r)
		return nil, nil, false
	case err != nil:
		g.problem(w, r, http.StatusBadRequest, "unreadable-body", "Request body could not be read", err.Error())
		return nil, nil, false
	}
	out := r.WithContext(r.Context())
	out.ContentLength = int64(len(body))
	out.TransferEncoding = nil
	out.Body = http.NoBody
	out.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
	if len(body) > 0 {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	return out, body, true
}

func (g *Gateway) tooLarge(w http.ResponseWriter, r *http.Request) {
	g.problem(w, r, http.StatusRequestEntityTooLarge, "body-too-large", "Request body too large",
		fmt.Sprintf("The body must be at most %d bytes.", g.cfg.MaxBodyBytes))
}

// upstreamHeader makes r's header what an upstream gets, in place (the
// reverse proxy copies it): the caller's identity in ClientHeader and
// RoleHeader (any X-Orderflow-* the client sent is dropped), no
// Authorization and no Connection, the request id, a valid traceparent (a
// new trace when the client sent none or a malformed one) and the
// Idempotency-Key scoped to the client. An Idempotency-Key the command API would refuse is refused here
// with the same 400, since a scoped copy of it could otherwise pass.
func upstreamHeader(r *http.Request, who identity) (http.Header, error) {
	if r.Header == nil {
		r.Header = http.Header{}
	}
	h := r.Header
	for k := range h {
		if len(k) >= len("X-Orderflow-") && strings.EqualFold(k[:len("X-Orderflow-")], "X-Orderflow-") {
			delete(h, k)
		}
	}
	h.Del("Authorization")
	// The reverse proxy drops every header the client names in Connection
	// (hop-by-hop), the ones set here included: a client could strip its
	// identity, request id, trace and scoped key. The client's connection
	// options mean nothing on the gateway's own connection upstream.
	h.Del("Connection")
	h.Set(ClientHeader, who.client)
	h.Set(RoleHeader, who.role)
	h.Set(httpapi.RequestIDHeader, httpapi.RequestID(r.Context()))
	if tp := h.Values("Traceparent"); len(tp) != 1 || !validTraceParent(tp[0]) {
		h.Set("Traceparent", newTraceParent())
		h.Del("Tracestate")
	}
	if keys, ok := h[idempotencyKeyHeader]; ok {
		if len(keys) != 1 || !idempotencyKeyPattern.MatchString(keys[0]) {
			return nil, &httpapi.RequestError{Status: http.StatusBadRequest, Slug: "validation", Title: "The request is invalid",
				Detail: "Idempotency-Key must be one header of 1 to 255 visible ASCII characters.",
				Fields: []httpapi.FieldError{{Field: idempotencyKeyHeader, Detail: "must be 1 to 255 visible ASCII characters"}}}
		}
		h.Set(idempotencyKeyHeader, scopedKey(who.client, keys[0]))
	}
	return h, nil
}

// scopedKey is key in client's own key space. Client ids hold no '/', so the
// first '/' separates the two and no two (client, key) pairs meet.
func scopedKey(client, key string) string {
	if k := client + "/" + key; len(k) <= maxIdempotencyKey {
		return k
	}
	sum := sha256.Sum256([]byte(key))
	return client + "/sha256:" + hex.EncodeToString(sum[:])
}

// validTraceParent checks a W3C traceparent: the shape, and neither the
// forbidden version ff nor an all-zero trace or parent id.
func validTraceParent(tp string) bool {
	if !traceParentPattern.MatchString(tp) || tp[:2] == "ff" {
		return false
	}
	return strings.Trim(tp[3:35], "0") != "" && strings.Trim(tp[36:52], "0") != ""
}

// newTraceParent starts a sampled trace with random trace and parent ids.
func newTraceParent() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "00-" + hex.EncodeToString(b[:16]) + "-" + hex.EncodeToString(b[16:]) + "-01"
}

// rewrite addresses the outbound request to its service; the balancer picks
// the instance. Rewrite (unlike Director) has already dropped hop-by-hop and
// client-sent X-Forwarded-* headers; the gateway sets its own.
func rewrite(pr *httputil.ProxyRequest) {
	service, _ := pr.In.Context().Value(serviceKey{}).(string)
	pr.SetURL(&url.URL{Scheme: "http", Host: service})
	pr.SetXForwarded()
}

// stripUpstreamHeaders drops the upstream's X-Request-Id: the gateway
// already set the same id on the response.
func stripUpstreamHeaders(resp *http.Response) error {
	resp.Header.Del(httpapi.RequestIDHeader)
	return nil
}

// upstreamFailed answers a request no upstream answered: 503 with
// Retry-After when no instance could take it, 504 when the request's time
// ran out, 502 otherwise.
func (g *Gateway) upstreamFailed(w http.ResponseWriter, r *http.Request, err error) {
	ctxErr := r.Context().Err()
	switch {
	case errors.Is(err, errUnavailable):
		w.Header().Set("Retry-After", retryAfter(g.cfg.BreakerOpenTimeout))
		g.problem(w, r, http.StatusServiceUnavailable, "upstream-unavailable", "Service unavailable",
			"No instance of the service can take the request now; retry after the number of seconds in Retry-After.")
	case errors.Is(ctxErr, context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		g.logger.WarnContext(r.Context(), "upstream timed out", "path", r.URL.Path,
			"request_id", httpapi.RequestID(r.Context()), "timeout", g.cfg.RequestTimeout)
		g.problem(w, r, http.StatusGatewayTimeout, "upstream-timeout", "Upstream timed out",
			fmt.Sprintf("The service did not answer within %s.", g.cfg.RequestTimeout))
	case errors.Is(ctxErr, context.Canceled):
		// The client left; nobody reads this answer.
		httpapi.Error(w, r, g.logger, ctxErr)
	default:
		g.logger.WarnContext(r.Context(), "upstream failed", "path", r.URL.Path,
			"request_id", httpapi.RequestID(r.Context()), "err", err)
		g.problem(w, r, http.StatusBadGateway, "bad-gateway", "Bad gateway",
			"The service could not be reached or failed; it is logged under request_id.")
	}
}

// problem writes a problem+json response the gateway itself decided on.
func (g *Gateway) problem(w http.ResponseWriter, r *http.Request, status int, slug, title, detail string) {
	httpapi.Error(w, r, g.logger, &httpapi.RequestError{Status: status, Slug: slug, Title: title, Detail: detail})
}

func (g *Gateway) forbidden(w http.ResponseWriter, r *http.Request, detail string) {
	g.problem(w, r, http.StatusForbidden, "forbidden", "Forbidden", detail)
}

// anyone lets every authenticated caller through.
func anyone(_ http.ResponseWriter, r *http.Request, _ identity, _ []byte) (*http.Request, bool) {
	return r, true
}

// adminOnly guards what only operators may do: adding stock, and reads that
// span every customer (the raw audit trail of any stream, all sagas, sales).
func (g *Gateway) adminOnly(w http.ResponseWriter, r *http.Request, who identity, _ []byte) (*http.Request, bool) {
	if !who.admin() {
		g.forbidden(w, r, "Only an admin may do this.")
		return nil, false
	}
	return r, true
}

// adminArea guards /admin: admins only, and of it only the projection API
// exists upstream.
func (g *Gateway) adminArea(w http.ResponseWriter, r *http.Request, who identity, body []byte) (*http.Request, bool) {
	if _, ok := g.adminOnly(w, r, who, body); !ok {
		return nil, false
	}
	if p := r.URL.Path; p != "/admin/projections" && !strings.HasPrefix(p, "/admin/projections/") {
		g.problem(w, r, http.StatusNotFound, "not-found", "Not found", "No such endpoint; see /openapi.json.")
		return nil, false
	}
	return r, true
}

// ownListing lets a customer list only its own orders: customer_id, when
// given, must be its own, and is set to it when absent. The query string is
// re-encoded from what was checked, so the upstream cannot read it another
// way.
func (g *Gateway) ownListing(w http.ResponseWriter, r *http.Request, who identity, _ []byte) (*http.Request, bool) {
	if who.admin() {
		return r, true
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		g.problem(w, r, http.StatusBadRequest, "validation", "The request is invalid", "The query string is malformed.")
		return nil, false
	}
	if ids, ok := q["customer_id"]; ok && (len(ids) != 1 || ids[0] != who.client) {
		g.forbidden(w, r, "A customer may list only its own orders: customer_id must be "+who.client+" or absent.")
		return nil, false
	}
	q.Set("customer_id", who.client)
	out := r.WithContext(r.Context())
	u := *r.URL
	u.RawQuery = q.Encode()
	out.URL = &u
	return out, true
}

// ownPlacement lets a customer place orders only for itself. The body is
// decoded as the command API decodes it (encoding/json: last duplicate key
// wins, keys match case-insensitively), so both read the same customer_id.
func (g *Gateway) ownPlacement(w http.ResponseWriter, r *http.Request, who identity, body []byte) (*http.Request, bool) {
	if who.admin() {
		return r, true
	}
	var order struct {
		CustomerID *string `json:"customer_id"`
	}
	if err := json.Unmarshal(body, &order); err != nil {
		g.problem(w, r, http.StatusBadRequest, "malformed-json", "Malformed JSON",
			"The body must be a JSON object with a string customer_id: "+err.Error())
		return nil, false
	}
	if order.CustomerID == nil || *order.CustomerID != who.client {
		g.forbidden(w, r, "A customer may place orders only for itself: customer_id must be "+who.client+".")
		return nil, false
	}
	return r, true
}

// Outcomes of an ownership lookup other than the owner.
var (
	errNoOrder    = errors.New("gateway: order not found")
	errViewBehind = errors.New("gateway: order view behind min_version")
)

// upstreamReply is an answer of the query service to an ownership lookup
// that says nothing about ownership (a bad parameter, a failure); it is
// relayed as it came.
type upstreamReply struct {
	status int
	header http.Header
	body   []byte
}

func (e *upstreamReply) Error() string {
	return fmt.Sprintf("gateway: order lookup answered %d", e.status)
}

// ownOrder lets a customer reach only its own order: it asks the query
// service whose order {id} is, and answers an order of another customer
// exactly as a missing one (404, or the 412 of a read that asked for a
// min_version), so a customer cannot learn that it exists. An order's
// customer never changes, so the answer is remembered (see ownerCache) and
// a later request for the same order goes upstream once, not twice.
//
// A read passes its min_version on to the lookup, so reading one's own write
// waits for the view as the read itself would. A cancel looks up with
// min_version=1: the lookup then waits (bounded by the query service) for an
// order placed a moment ago to reach the view, instead of answering 404.
func (g *Gateway) ownOrder(cancel bool) guard {
	return func(w http.ResponseWriter, r *http.Request, who identity, _ []byte) (*http.Request, bool) {
		if who.admin() {
			return r, true
		}
		id, err := orderflow.ParseOrderID("id", chi.URLParam(r, "id"))
		if err != nil {
			httpapi.Error(w, r, g.logger, err)
			return nil, false
		}
		minVersion := r.URL.Query()["min_version"]
		if cancel {
			minVersion = []string{"1"}
		}
		owner, known := g.owners.get(id)
		if !known {
			owner, err = g.orderOwner(r, who, id, minVersion)
		}
		var reply *upstreamReply
		switch {
		case err == nil && owner == who.client:
			return r, true
		case err == nil, errors.Is(err, errNoOrder), errors.Is(err, errViewBehind):
			if cancel || len(minVersion) == 0 {
				g.problem(w, r, http.StatusNotFound, "not-found", "Not found", "order "+id.String()+" not found")
				return nil, false
			}
			w.Header().Set("Retry-After", "1")
			g.problem(w, r, http.StatusPreconditionFailed, "view-behind", "The read view has not caught up",
				"The view has not reached min_version for order "+id.String()+". Retry later.")
		case errors.As(err, &reply):
			for _, k := range []string{"Content-Type", "Retry-After", "Cache-Control"} {
				if v := reply.header.Get(k); v != "" {
					w.Header().Set(k, v)
				}
			}
			w.WriteHeader(reply.status)
			_, _ = w.Write(reply.body)
		default:
			g.upstreamFailed(w, r, err)
		}
		return nil, false
	}
}

// maxLookupBody bounds the order the gateway reads to learn its owner.
const maxLookupBody = 1 << 20

// orderOwner asks the query service for order id as who and returns its
// customer id, errNoOrder, errViewBehind, an *upstreamReply for any other
// answer, or the balancer's error.
func (g *Gateway) orderOwner(r *http.Request, who identity, id orderflow.OrderID, minVersion []string) (string, error) {
	u := &url.URL{Scheme: "http", Host: ServiceQuery, Path: "/v1/orders/" + id.String()}
	if len(minVersion) > 0 {
		u.RawQuery = url.Values{"min_version": minVersion}.Encode()
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("gateway: order lookup: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set(ClientHeader, who.client)
	req.Header.Set(RoleHeader, who.role)
	req.Header.Set(httpapi.RequestIDHeader, httpapi.RequestID(r.Context()))
	if tp := r.Header.Get("Traceparent"); validTraceParent(tp) {
		req.Header.Set("Traceparent", tp)
		if ts := r.Header.Get("Tracestate"); ts != "" {
			req.Header.Set("Tracestate", ts)
		}
	}
	resp, err := g.balancer.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxLookupBody))
	if err != nil {
		return "", fmt.Errorf("gateway: read order lookup: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var order struct {
			CustomerID string `json:"customer_id"`
		}
		if err := json.Unmarshal(body, &order); err != nil || order.CustomerID == "" {
			return "", fmt.Errorf("gateway: order lookup answered an order without customer_id")
		}
		g.owners.put(id, order.CustomerID)
		return order.CustomerID, nil
	case http.StatusNotFound:
		return "", errNoOrder
	case http.StatusPreconditionFailed:
		return "", errViewBehind
	}
	return "", &upstreamReply{status: resp.StatusCode, header: resp.Header, body: body}
}

// maxCachedOwners bounds the ownerCache: about 100 bytes an entry.
const maxCachedOwners = 100_000

// ownerCache remembers the customer of each order the gateway has looked
// up. An order's customer is set when it is placed and never changes, so an
// entry never goes stale; only orders that exist are remembered, so an
// order placed after a 404 is found. When full, an arbitrary entry makes
// room.
type ownerCache = boundedCache[orderflow.OrderID, string]

func newOwnerCache() *ownerCache { return newBoundedCache[orderflow.OrderID, string](maxCachedOwners) }
