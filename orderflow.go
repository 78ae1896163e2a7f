// Package orderflow is the domain vocabulary of the order backend: identifiers,
// event payloads and domain errors. It imports nothing else of the project;
// every other package imports it.
package orderflow

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/google/uuid"
)

// Stream id prefixes, one per kind of stream in the event log.
const (
	OrderStreamPrefix       = "order-"
	SKUStreamPrefix         = "sku-"
	ReservationStreamPrefix = "reservation-"
	PaymentStreamPrefix     = "payment-"
)

// Limits on what a command may carry.
const (
	MaxOrderLines      = 50
	MaxLineQuantity    = 10_000
	MaxUnitPriceCents  = 100_000_000 // one million in major units
	MaxStockAddition   = 1_000_000
	MaxReasonLength    = 500
	maxIdentifierChars = 64
)

// OrderID identifies an order; it is a UUID.
type OrderID uuid.UUID

// NewOrderID returns a fresh, time-ordered order id.
func NewOrderID() OrderID { return OrderID(uuid.Must(uuid.NewV7())) }

// ParseOrderID parses the canonical text form of an order id, or returns a
// *ValidationError naming field.
func ParseOrderID(field, s string) (OrderID, error) {
	// uuid.Parse accepts several spellings (urn:, braces); ids have one.
	if len(s) != 36 {
		return OrderID{}, Invalid(field, "must be a UUID such as 0190f2a4-7c1e-7b6e-9d51-3f0c2a9b8e11")
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return OrderID{}, Invalid(field, "must be a UUID such as 0190f2a4-7c1e-7b6e-9d51-3f0c2a9b8e11")
	}
	return OrderID(id), nil
}

// String returns the canonical lower-case text form.
func (id OrderID) String() string { return uuid.UUID(id).String() }

// Stream returns the id of the order's event stream.
func (id OrderID) Stream() string { return OrderStreamPrefix + id.String() }

// SKU is a stock keeping unit code: 1 to 64 characters of A–Z, a–z, 0–9, '-', '_' or '.'.
type SKU string

var skuPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ParseSKU validates a SKU code, or returns a *ValidationError naming field.
func ParseSKU(field, s string) (SKU, error) {
	if !skuPattern.MatchString(s) {
		return "", Invalid(field, "must be 1 to 64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	return SKU(s), nil
}

// Stream returns the id of the SKU's stock stream.
func (s SKU) Stream() string { return SKUStreamPrefix + string(s) }

// CustomerID identifies a customer: 1 to 64 characters without spaces or control characters.
type CustomerID string

var customerPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$`)

// ParseCustomerID validates a customer id, or returns a *ValidationError naming field.
func ParseCustomerID(field, s string) (CustomerID, error) {
	if !customerPattern.MatchString(s) {
		return "", Invalid(field, fmt.Sprintf("must be 1 to %d characters of letters, digits, '.', '_', ':', '@' or '-'", maxIdentifierChars))
	}
	return CustomerID(s), nil
}

// StreamCategory returns the category of a stream id: the text before its
// first '-' ("order", "sku", "reservation", "payment"), or "" if it has none.
func StreamCategory(streamID string) string {
	if i := strings.IndexByte(streamID, '-'); i > 0 {
		return streamID[:i]
	}
	return ""
}

// ReservationStream returns the id of the order's reservation stream.
func (id OrderID) ReservationStream() string { return ReservationStreamPrefix + id.String() }

// PaymentStream returns the id of the order's payment stream.
func (id OrderID) PaymentStream() string { return PaymentStreamPrefix + id.String() }
