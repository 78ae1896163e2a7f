package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/orderflow/orderflow"
)

// The roles a token may carry.
const (
	// RoleCustomer may place orders for itself and read and cancel only its
	// own orders.
	RoleCustomer = "customer"
	// RoleAdmin may do everything, including the projection admin API.
	RoleAdmin = "admin"
)

// MinSecretBytes is the shortest HS256 secret the gateway accepts: HMAC-SHA256
// is only as strong as its key, and RFC 7518 asks for at least the hash size.
const MinSecretBytes = 32

// MaxTokenBytes bounds a bearer token; a longer one is rejected before it is
// decoded, so a huge header costs a length check and nothing more.
const MaxTokenBytes = 4 << 10

// The errors of authentication. They stay inside the gateway: a client only
// learns that its token was missing, expired or invalid.
var (
	errNoToken      = errors.New("no bearer token")
	errBadScheme    = errors.New("authorization is not one Bearer token")
	errTokenTooLong = fmt.Errorf("bearer token longer than %d bytes", MaxTokenBytes)
	errBadSubject   = errors.New("token subject is not a valid client id")
	errBadRole      = errors.New("token role is neither customer nor admin")
)

// claims are the claims of an orderflow token: the registered ones (sub is
// the client, which for a customer is its customer id) plus a role.
type claims struct {
	Role string `json:"role"`
	jwt.RegisteredClaims
}

// identity is the authenticated caller of a request.
type identity struct {
	client string
	role   string
}

func (i identity) admin() bool { return i.role == RoleAdmin }

type identityKey struct{}

func withIdentity(ctx context.Context, who identity) context.Context {
	return context.WithValue(ctx, identityKey{}, who)
}

func identityFrom(ctx context.Context) identity {
	who, _ := ctx.Value(identityKey{}).(identity)
	return who
}

// newParser pins everything a token is checked against: HS256 only (so
// "none" and RS256/HS256 key confusion are refused before any key is used),
// exp required, iss and aud exact, iat not in the future, strict base64.
func newParser(issuer, audience string) *jwt.Parser {
	return jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(),
	)
}

// authenticate returns the caller named by r's bearer token, or why there is
// none.
func (g *Gateway) authenticate(r *http.Request) (identity, error) {
	values := r.Header.Values("Authorization")
	switch len(values) {
	case 0:
		return identity{}, errNoToken
	case 1:
	default:
		return identity{}, errBadScheme
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return identity{}, errBadScheme
	}
	token = strings.TrimLeft(token, " ")
	if len(token) > MaxTokenBytes {
		return identity{}, errTokenTooLong
	}
	if token == "" {
		return identity{}, errNoToken
	}
	key := sha256.Sum256([]byte(token))
	if who, ok := g.tokens.identity(key, time.Now()); ok {
		return who, nil
	}
	var c claims
	if _, err := g.parser.ParseWithClaims(token, &c, g.key); err != nil {
		return identity{}, err
	}
	if _, err := orderflow.ParseCustomerID("sub", c.Subject); err != nil {
		return identity{}, errBadSubject
	}
	if c.Role != RoleCustomer && c.Role != RoleAdmin {
		return identity{}, errBadRole
	}
	who := identity{client: c.Subject, role: c.Role}
	g.tokens.put(key, verified{who: who, expires: c.ExpiresAt.Time})
	return who, nil
}

// maxCachedTokens bounds the tokenCache: about 100 bytes an entry.
const maxCachedTokens = 10_000

// tokenCache remembers the identity of tokens the gateway has verified,
// keyed by their SHA-256, until they expire: a client's next request costs
// a hash and a map lookup instead of a JSON decode and an HMAC. Only valid
// tokens are remembered; when full, an arbitrary entry makes room.
type tokenCache struct {
	*boundedCache[[sha256.Size]byte, verified]
}

type verified struct {
	who     identity
	expires time.Time
}

func newTokenCache() tokenCache {
	return tokenCache{newBoundedCache[[sha256.Size]byte, verified](maxCachedTokens)}
}

// identity returns the identity of a token verified before that has not
// expired at now.
func (c tokenCache) identity(key [sha256.Size]byte, now time.Time) (identity, bool) {
	v, ok := c.get(key)
	if !ok || !now.Before(v.expires) {
		return identity{}, false
	}
	return v.who, true
}

// key hands the parser the HMAC secret, and only for an HS256 token: the
// parser already refuses other algorithms, this makes the refusal not depend
// on a parser option alone.
func (g *Gateway) key(t *jwt.Token) (any, error) {
	if t.Method != jwt.SigningMethodHS256 {
		return nil, fmt.Errorf("unexpected signing method %v", t.Header["alg"])
	}
	return g.cfg.JWTSecret, nil
}

// MintToken signs an HS256 token for subject with role, valid for ttl, that
// a gateway configured with the same secret, issuer and audience accepts.
// It is for development (`orderflow token`); production tokens come from an
// identity provider. It returns every problem with its arguments joined.
func MintToken(secret []byte, issuer, audience, subject, role string, ttl time.Duration) (string, error) {
	var errs []error
	if len(secret) < MinSecretBytes {
		errs = append(errs, fmt.Errorf("gateway: token secret must be at least %d bytes, got %d", MinSecretBytes, len(secret)))
	}
	if issuer == "" {
		errs = append(errs, errors.New("gateway: token issuer is empty"))
	}
	if audience == "" {
		errs = append(errs, errors.New("gateway: token audience is empty"))
	}
	if _, err := orderflow.ParseCustomerID("sub", subject); err != nil {
		errs = append(errs, fmt.Errorf("gateway: token subject: %w", err))
	}
	if role != RoleCustomer && role != RoleAdmin {
		errs = append(errs, fmt.Errorf("gateway: token role %q is neither %q nor %q", role, RoleCustomer, RoleAdmin))
	}
	if ttl <= 0 {
		errs = append(errs, fmt.Errorf("gateway: token ttl must be positive, got %s", ttl))
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	now := time.Now()
	c := claims{Role: role, RegisteredClaims: jwt.RegisteredClaims{
		Issuer:    issuer,
		Subject:   subject,
		Audience:  jwt.ClaimStrings{audience},
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		ID:        hex.EncodeToString(jti[:]),
	}}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("gateway: sign token: %w", err)
	}
	return s, nil
}
