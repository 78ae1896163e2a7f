package query

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/httpapi"
)

// maxVersion bounds min_version; stream versions never come near it.
const maxVersion = 1 << 62

// retryAfter is the Retry-After of a view-behind answer, in seconds.
const retryAfter = "1"

// minVersion reads the optional min_version parameter (0 when absent),
// recording a bad one in v.
func minVersion(r *http.Request, v *orderflow.ValidationError) int64 {
	return httpapi.QueryInt(r, "min_version", 0, 1, maxVersion, v)
}

// awaitVersion loads a view row until it exists with a version of at least
// want, re-reading it every PollInterval for up to MinVersionWait, and
// returns the last row loaded (nil when there is none). With want 0 it loads
// once. behind reports that the bound passed first. The projector tells the
// query side nothing when it applies an event, so polling one row by its
// primary key is the simplest wait that needs no cooperation from it.
func awaitVersion[T any](ctx context.Context, a *API, want int64, load func(context.Context) (*T, error), version func(*T) int64) (row *T, behind bool, err error) {
	var (
		bound   <-chan time.Time
		expired bool
		tick    *time.Ticker
	)
	for {
		row, err = load(ctx)
		if err != nil {
			return nil, false, err
		}
		if want == 0 || (row != nil && version(row) >= want) {
			return row, false, nil
		}
		if expired {
			return row, true, nil
		}
		if tick == nil {
			// Timers start after the first read, so a view that is already
			// current costs one query and no timers.
			t := time.NewTimer(a.cfg.MinVersionWait)
			defer t.Stop()
			bound = t.C
			tick = time.NewTicker(a.cfg.PollInterval)
			defer tick.Stop()
		}
		select {
		case <-ctx.Done():
			return nil, false, fmt.Errorf("wait for version %d: %w", want, ctx.Err())
		case <-tick.C:
		case <-bound:
			expired = true // read once more at the bound, then give up
		}
	}
}

// viewBehind writes the 412 of a read whose view did not reach want within
// the bound; have is the version the view holds, 0 when it has no row.
func (a *API) viewBehind(w http.ResponseWriter, r *http.Request, what string, want, have int64) {
	detail := fmt.Sprintf("The view has no %s yet", what)
	if have > 0 {
		detail = fmt.Sprintf("The view holds version %d of %s", have, what)
	}
	detail += fmt.Sprintf("; min_version %d was not reached within %s. Retry later.", want, a.cfg.MinVersionWait)
	w.Header().Set("Retry-After", retryAfter)
	a.fail(w, r, &httpapi.RequestError{Status: http.StatusPreconditionFailed, Slug: "view-behind",
		Title: "The read view has not caught up", Detail: detail})
}

// readView loads a view row, waiting for version want of its stream as
// awaitVersion does, and answers every outcome but success itself: an
// error, a 412 when the view stayed behind, a 404 when there is no row. It
// returns the row and true only when the caller should answer with it.
func readView[T any](w http.ResponseWriter, r *http.Request, a *API, what string, want int64,
	load func(context.Context) (*T, error), version func(*T) int64) (*T, bool) {
	row, behind, err := awaitVersion(r.Context(), a, want, load, version)
	switch {
	case err != nil:
		a.fail(w, r, err)
	case behind:
		var have int64
		if row != nil {
			have = version(row)
		}
		a.viewBehind(w, r, what, want, have)
	case row == nil:
		a.fail(w, r, notFound(what))
	default:
		return row, true
	}
	return nil, false
}
