package command_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/orderflow/orderflow/command"
	"github.com/orderflow/orderflow/eventstore"
	"github.com/orderflow/orderflow/httpapi"
)

// FakeStore is an EventStore whose behaviour each test sets.
type FakeStore struct {
	AppendFn        func(ctx context.Context, a eventstore.Append) (eventstore.Result, error)
	ReadStreamFn    func(ctx context.Context, streamID string, from int64, limit int) ([]eventstore.Event, error)
	LookupCommandFn func(ctx context.Context, commandID string) (eventstore.CommandRecord, error)
}

var _ command.EventStore = (*FakeStore)(nil)

func (f *FakeStore) Append(ctx context.Context, a eventstore.Append) (eventstore.Result, error) {
	return f.AppendFn(ctx, a)
}

func (f *FakeStore) ReadStream(ctx context.Context, streamID string, from int64, limit int) ([]eventstore.Event, error) {
	return f.ReadStreamFn(ctx, streamID, from, limit)
}

func (f *FakeStore) LookupCommand(ctx context.Context, commandID string) (eventstore.CommandRecord, error) {
	return f.LookupCommandFn(ctx, commandID)
}

// fuzzAPI serves the command API over a fake store that counts appends and
// accepts every one of them.
func fuzzAPI(tb testing.TB) (http.Handler, *atomic.Int64) {
	var appends atomic.Int64
	store := &FakeStore{
		AppendFn: func(_ context.Context, a eventstore.Append) (eventstore.Result, error) {
			appends.Add(1)
			return eventstore.Result{Streams: []eventstore.StreamVersion{{StreamID: a.Streams[0].StreamID, Version: 1}}}, nil
		},
		ReadStreamFn: func(context.Context, string, int64, int) ([]eventstore.Event, error) {
			return nil, eventstore.ErrNotFound
		},
		LookupCommandFn: func(context.Context, string) (eventstore.CommandRecord, error) {
			return eventstore.CommandRecord{}, eventstore.ErrNotFound
		},
	}
	logger := slog.New(slog.DiscardHandler)
	a, err := command.NewAPI(store, command.Config{}, logger)
	if err != nil {
		tb.Fatal(err)
	}
	r := httpapi.NewRouter(logger, nil)
	a.Mount(r)
	return r, &appends
}

// The request decoders take any body without a 5xx, and a refused request
// never reaches the store.
func FuzzPlaceOrderRequest(f *testing.F) {
	for _, seed := range []string{
		validOrder, `{}`, `[]`, `null`, ``, `{"customer_id":"c","lines":[{"sku":"A","quantity":1,"unit_price_cents":0}]}`,
		`{"customer_id":"c","lines":[{"sku":"A","quantity":1e3,"unit_price_cents":1}]}`,
		`{"customer_id":"c","lines":[{"sku":"A","quantity":1,"unit_price_cents":1},{"sku":"A","quantity":1,"unit_price_cents":1}]}`,
		`{"customer_id":"\u0000","lines":[]}`, `{"customer_id":"c","lines":[{"sku":"A","quantity":-9223372036854775808,"unit_price_cents":1}]}`,
	} {
		f.Add(seed, "application/json")
	}
	f.Add(validOrder, "text/plain")
	h, appends := fuzzAPI(f)
	f.Fuzz(func(t *testing.T, body, contentType string) {
		before := appends.Load()
		req := httptest.NewRequest(http.MethodPost, "/v1/orders", strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		res := rec.Result()
		b, _ := io.ReadAll(res.Body)
		wrote := appends.Load() - before
		switch {
		case res.StatusCode == http.StatusCreated:
			if wrote != 1 {
				t.Fatalf("201 after %d appends", wrote)
			}
		case res.StatusCode == http.StatusBadRequest, res.StatusCode == http.StatusRequestEntityTooLarge, res.StatusCode == http.StatusUnsupportedMediaType:
			if wrote != 0 {
				t.Fatalf("%d refused the request but appended: %s", res.StatusCode, b)
			}
			if ct := res.Header.Get("Content-Type"); ct != httpapi.ProblemContentType {
				t.Fatalf("%d with Content-Type %q", res.StatusCode, ct)
			}
		default:
			t.Fatalf("status %d for body %q: %s", res.StatusCode, body, b)
		}
	})
}

// The same for the cancel and stock decoders, which take path parameters too.
func FuzzCommandRequests(f *testing.F) {
	f.Add("cancel", "0190f2a4-7c1e-7b6e-9d51-3f0c2a9b8e11", `{"reason":"x"}`)
	f.Add("cancel", "x", ``)
	f.Add("stock", "SKU-1", `{"quantity":5}`)
	f.Add("stock", "SKU-1", `{"quantity":5.5}`)
	f.Add("stock", "%00", `{"quantity":1}`)
	h, appends := fuzzAPI(f)
	f.Fuzz(func(t *testing.T, kind, param, body string) {
		path := "/v1/inventory/" + param + "/stock"
		if kind == "cancel" {
			path = "/v1/orders/" + param + "/cancel"
		}
		req, err := http.NewRequest(http.MethodPost, path, strings.NewReader(body))
		if err != nil {
			return // not a URL a client could send
		}
		req.Header.Set("Content-Type", "application/json")
		before := appends.Load()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		wrote := appends.Load() - before
		switch rec.Code {
		case http.StatusOK:
			if kind == "cancel" || wrote != 1 {
				t.Fatalf("200 for %s %q after %d appends", kind, param, wrote) // the fake has no orders to cancel
			}
		case http.StatusBadRequest, http.StatusNotFound, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusMethodNotAllowed:
			if wrote != 0 {
				t.Fatalf("%d refused the request but appended", rec.Code)
			}
		default:
			t.Fatalf("status %d for %s %q %q: %s", rec.Code, kind, param, body, rec.Body.Bytes())
		}
	})
}
