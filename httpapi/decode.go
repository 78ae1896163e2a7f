package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 64 << 10

// DecodeJSON reads r's body into dst strictly: Content-Type must be JSON
// (415), the body at most MaxBodyBytes (413), well-formed (400), one value
// with no unknown fields and the right types (400). With optional set, an
// empty body is accepted and leaves dst as it was. It returns the body read,
// for fingerprinting.
func DecodeJSON(w http.ResponseWriter, r *http.Request, dst any, optional bool) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, &RequestError{Status: http.StatusRequestEntityTooLarge, Slug: "body-too-large",
			Title: "Request body too large", Detail: fmt.Sprintf("The body must be at most %d bytes.", MaxBodyBytes)}
	}
	if err != nil {
		return nil, &RequestError{Status: http.StatusBadRequest, Slug: "unreadable-body",
			Title: "Request body could not be read", Detail: err.Error()}
	}
	if optional && len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	if err := checkJSONContentType(r.Header.Get("Content-Type")); err != nil {
		return nil, err
	}
	return body, Unmarshal(body, dst)
}

func checkJSONContentType(ct string) error {
	mt, params, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		if cs, ok := params["charset"]; !ok || strings.EqualFold(cs, "utf-8") {
			return nil
		}
	}
	return &RequestError{Status: http.StatusUnsupportedMediaType, Slug: "unsupported-media-type",
		Title: "Unsupported content type", Detail: "Send the body as application/json (UTF-8)."}
}

// Unmarshal decodes one JSON value from body into dst, rejecting unknown
// fields, wrong types and trailing data with a 400 *RequestError.
func Unmarshal(body []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			return malformed("The body must hold exactly one JSON value.", nil)
		}
		return nil
	}
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.Is(err, io.EOF):
		return malformed("The body is empty; send a JSON object.", nil)
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
		return malformed("The body is not well-formed JSON: "+err.Error(), nil)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(body)"
		}
		return &RequestError{Status: http.StatusBadRequest, Slug: "validation", Title: "The request is invalid",
			Detail: "A field has the wrong type.",
			Fields: []FieldError{{Field: field, Detail: fmt.Sprintf("must be %s, got %s", jsonKind(typ.Type.Kind().String()), typ.Value)}}}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no typed error for this; the field name is all it gives.
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &RequestError{Status: http.StatusBadRequest, Slug: "validation", Title: "The request is invalid",
			Detail: "The body has a field this API does not know.",
			Fields: []FieldError{{Field: name, Detail: "unknown field"}}}
	}
	return malformed("The body could not be decoded: "+err.Error(), nil)
}

func malformed(detail string, fields []FieldError) error {
	return &RequestError{Status: http.StatusBadRequest, Slug: "malformed-json", Title: "Malformed JSON", Detail: detail, Fields: fields}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	}
	return "of another type"
}
