package orderflow

import (
	"errors"
	"strings"
)

// Domain errors that callers branch on with errors.Is.
var (
	// ErrNotFound: the addressed order or stream does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the command is not allowed in the current state (for
	// example cancelling a cancelled order).
	ErrConflict = errors.New("conflict with current state")
)

// FieldError is one problem with one field of a request.
type FieldError struct {
	Field  string // JSON path of the field, e.g. "lines[2].quantity"
	Detail string
}

// ValidationError lists every problem found in a command; nothing was done.
type ValidationError struct {
	Fields []FieldError
}

// Invalid returns a *ValidationError with a single field problem.
func Invalid(field, detail string) *ValidationError {
	return &ValidationError{Fields: []FieldError{{Field: field, Detail: detail}}}
}

// Add records one more problem.
func (e *ValidationError) Add(field, detail string) {
	e.Fields = append(e.Fields, FieldError{Field: field, Detail: detail})
}

// Merge records the problems of err if it is a *ValidationError and reports
// whether it was one (nil counts as one with no problems).
func (e *ValidationError) Merge(err error) bool {
	if err == nil {
		return true
	}
	var v *ValidationError
	if !errors.As(err, &v) {
		return false
	}
	e.Fields = append(e.Fields, v.Fields...)
	return true
}

// Err returns e if it holds any problem, else nil.
func (e *ValidationError) Err() error {
	if len(e.Fields) == 0 {
		return nil
	}
	return e
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Detail
	}
	return "invalid command: " + strings.Join(parts, "; ")
}
