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
// want, re-reading it for up to MinVersionWait, and returns the last row
// loaded (nil when there is none). With want 0 it loads once. behind
// reports that the bound passed first. The projector tells the query side
// nothing when it applies an event, so polling one row by its primary key
// is the simplest wait that needs no cooperation from it.
//
// The re-reads start every PollInterval and space out, doubling up to
// maxPollInterval, so many waiting reads do not crowd the connection pool
// the projector they wait for needs too; and each read after the first must
// finish within the bound (plus boundGrace), so a busy pool cannot stretch
// the wait past it.
func awaitVersion[T any](ctx context.Context, a *API, want int64, load func(context.Context) (*T, error), version func(*T) int64) (row *T, behind bool, err error) {
	row, err = load(ctx)
	if err != nil || want == 0 || (row != nil && version(row) >= want) {
		return row, false, err
	}
	// Timers start after the first read, so a view that is already current
	// costs one query and no timers.
	deadline := time.Now().Add(a.cfg.MinVersionWait)
	waitCtx, cancel := context.WithDeadline(ctx, deadline.Add(boundGrace))
	defer cancel()
	interval := a.cfg.PollInterval
	for {
		pause := min(interval, time.Until(deadline))
		interval = min(2*interval, max(maxPollInterval, a.cfg.PollInterval))
		t := time.NewTimer(max(pause, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, false, fmt.Errorf("wait for version %d: %w", want, ctx.Err())
		case <-t.C:
		}
		last := row
		row, err = load(waitCtx)
		switch {
		case err != nil && ctx.Err() == nil && waitCtx.Err() != nil:
			return last, true, nil // the read itself ran past the bound
		case err != nil:
			return nil, false, err
		case row != nil && version(row) >= want:
			return row, false, nil
		case !time.Now().Before(deadline):
			return row, true, nil // read once more at the bound, then give up
		}
	}
}

// maxPollInterval caps the spacing of a waiting read's re-reads.
const maxPollInterval = 100 * time.Millisecond

// boundGrace is how far past MinVersionWait the last re-read may run.
const boundGrace = 250 * time.Millisecond

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
