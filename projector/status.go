package projector

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ParkedStream is a stream a projection stopped applying.
type ParkedStream struct {
	StreamID string    `json:"stream_id"`
	Version  int64     `json:"version"`
	Error    string    `json:"error"`
	ParkedAt time.Time `json:"parked_at"`
}

// RebuildState is where an unfinished rebuild stands.
type RebuildState struct {
	Applied   int64     `json:"events_read"`
	Position  string    `json:"position"`
	StartedAt time.Time `json:"started_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Status is what `orderflow projections status` shows of a projection.
type Status struct {
	Projection string         `json:"projection"`
	BuiltAt    *time.Time     `json:"built_at"`
	Streams    int64          `json:"streams"`
	LagEvents  int64          `json:"lag_events"`
	LagSeconds float64        `json:"lag_seconds"`
	Parked     []ParkedStream `json:"parked"`
	Rebuild    *RebuildState  `json:"rebuild,omitempty"`
}

// Status reports p's position (streams followed), its lag behind the log in
// events and seconds (events of its streams not yet applied, and the age of
// the oldest), its parked streams and any unfinished rebuild.
func (en *Engine) Status(ctx context.Context, p Projection) (Status, error) {
	st := Status{Projection: p.Name(), Parked: []ParkedStream{}}
	var built time.Time
	switch err := en.pool.QueryRow(ctx, `select built_at from projection_builds where projection = $1`, p.Name()).Scan(&built); {
	case err == nil:
		st.BuiltAt = &built
	case !errors.Is(err, pgx.ErrNoRows):
		return st, fmt.Errorf("status of %s: %w", p.Name(), err)
	}
	// A stream without a checkpoint row stands at its last version at or
	// before the position the last rebuild replayed to.
	if err := en.pool.QueryRow(ctx, `
		with b as (select coalesce(max(replayed_tx_id), 0) tx_id, coalesce(max(replayed_seq), 0) seq
		           from projection_builds where projection = $1),
		e as (select e.stream_id, e.recorded_at,
		             case when c.stream_id is not null then e.version <= c.version
		                  else (e.tx_id, e.seq) <= (b.tx_id, b.seq) end as applied
		      from events e cross join b
		      left join `+checkpoints(p, Live)+` c on c.stream_id = e.stream_id
		      where e.stream_id like any($2::text[])
		        and not exists (select 1 from projection_parked k where k.projection = $1 and k.stream_id = e.stream_id))
		select count(distinct stream_id) filter (where applied), count(*) filter (where not applied),
		       coalesce(extract(epoch from now() - min(recorded_at) filter (where not applied)), 0)::float8
		from e`,
		p.Name(), LikePatterns(p)).Scan(&st.Streams, &st.LagEvents, &st.LagSeconds); err != nil {
		return st, fmt.Errorf("status of %s: %w", p.Name(), err)
	}
	rows, err := en.pool.Query(ctx, `select stream_id, version, error, parked_at from projection_parked where projection = $1 order by parked_at`, p.Name())
	if err != nil {
		return st, fmt.Errorf("status of %s: %w", p.Name(), err)
	}
	for rows.Next() {
		var k ParkedStream
		if err := rows.Scan(&k.StreamID, &k.Version, &k.Error, &k.ParkedAt); err != nil {
			rows.Close()
			return st, err
		}
		st.Parked = append(st.Parked, k)
	}
	rows.Close()
	var r RebuildState
	var tx, seq int64
	switch err := en.pool.QueryRow(ctx, `select tx_id, seq, applied, started_at, updated_at from projection_rebuilds where projection = $1`, p.Name()).
		Scan(&tx, &seq, &r.Applied, &r.StartedAt, &r.UpdatedAt); {
	case err == nil:
		r.Position = fmt.Sprintf("%d.%d", tx, seq)
		st.Rebuild = &r
	case !errors.Is(err, pgx.ErrNoRows):
		return st, fmt.Errorf("status of %s: %w", p.Name(), err)
	}
	return st, rows.Err()
}

// LikePatterns returns a LIKE pattern per prefix of p that matches the
// stream ids starting with it, taking its own '%', '_' and '\' literally.
func LikePatterns(p Projection) []string {
	prefixes := p.Prefixes()
	esc := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	out := make([]string, len(prefixes))
	for i, pre := range prefixes {
		out[i] = esc.Replace(pre) + "%"
	}
	return out
}
