package query

import (
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/projector"
)

// MaxSalesDays bounds the days GET /v1/stats/sales covers, both ends counted:
// a leap year fits.
const MaxSalesDays = 366

const dayLayout = time.DateOnly

// SalesCounters are the sales of one day or of a range of days, in minor
// units. NetCents is PlacedCents minus CancelledCents.
type SalesCounters struct {
	OrdersPlaced    int64 `json:"orders_placed"`
	PlacedCents     int64 `json:"placed_cents"`
	OrdersCancelled int64 `json:"orders_cancelled"`
	CancelledCents  int64 `json:"cancelled_cents"`
	NetCents        int64 `json:"net_cents"`
}

func (c SalesCounters) add(o SalesCounters) SalesCounters {
	c.OrdersPlaced += o.OrdersPlaced
	c.PlacedCents += o.PlacedCents
	c.OrdersCancelled += o.OrdersCancelled
	c.CancelledCents += o.CancelledCents
	c.NetCents += o.NetCents
	return c
}

// DaySales is one day of a SalesReport; Day is YYYY-MM-DD (UTC).
type DaySales struct {
	Day string `json:"day"`
	SalesCounters
}

// SalesReport is the body of GET /v1/stats/sales: the days of [From, To]
// that had sales, oldest first, and their totals.
type SalesReport struct {
	From   string        `json:"from"`
	To     string        `json:"to"`
	Days   []DaySales    `json:"days"`
	Totals SalesCounters `json:"totals"`
}

// queryDay reads a required YYYY-MM-DD query parameter, recording a bad or
// missing one in v.
func queryDay(r *http.Request, name string, v *orderflow.ValidationError) (time.Time, bool) {
	s, ok := single(r, name, v)
	if !ok {
		if _, present := r.URL.Query()[name]; !present {
			v.Add(name, "is required")
		}
		return time.Time{}, false
	}
	d, err := time.Parse(dayLayout, s)
	if err != nil || d.Year() < 1 {
		v.Add(name, "must be a date as YYYY-MM-DD")
		return time.Time{}, false
	}
	return d, true
}

func (a *API) salesStats(w http.ResponseWriter, r *http.Request) {
	v := &orderflow.ValidationError{}
	from, okFrom := queryDay(r, "from", v)
	to, okTo := queryDay(r, "to", v)
	if okFrom && okTo {
		switch {
		case to.Before(from):
			v.Add("to", "must not be before from")
		case to.Sub(from) >= MaxSalesDays*24*time.Hour:
			v.Add("to", fmt.Sprintf("must be at most %d days after from, both counted", MaxSalesDays))
		}
	}
	if err := v.Err(); err != nil {
		a.fail(w, r, err)
		return
	}
	rows, err := a.pool.Query(r.Context(), `select day, orders_placed, placed_cents, orders_cancelled, cancelled_cents
		from `+projector.Live.Name("daily_sales")+` where day between $1::date and $2::date order by day`,
		from.Format(dayLayout), to.Format(dayLayout))
	if err != nil {
		a.fail(w, r, fmt.Errorf("sales from %s to %s: %w", from.Format(dayLayout), to.Format(dayLayout), err))
		return
	}
	days, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (DaySales, error) {
		var (
			d   DaySales
			day time.Time
		)
		err := row.Scan(&day, &d.OrdersPlaced, &d.PlacedCents, &d.OrdersCancelled, &d.CancelledCents)
		d.Day, d.NetCents = day.Format(dayLayout), d.PlacedCents-d.CancelledCents
		return d, err
	})
	if err != nil {
		a.fail(w, r, fmt.Errorf("sales from %s to %s: %w", from.Format(dayLayout), to.Format(dayLayout), err))
		return
	}
	report := SalesReport{From: from.Format(dayLayout), To: to.Format(dayLayout), Days: days}
	if report.Days == nil {
		report.Days = []DaySales{}
	}
	for _, d := range days {
		report.Totals = report.Totals.add(d.SalesCounters)
	}
	a.respond(w, r, "", report)
}
