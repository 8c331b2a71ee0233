package peerbench

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// WhenOver polls query on the Prometheus at url every 25 ms and returns
// the start of the first query whose first sample was over threshold:
// from that moment any analysis running the query could see the breach.
// It splits an SLO breach's time into what Prometheus needs to scrape the
// failures (the same for every product) and what the product needs from
// there to route the traffic away.
func WhenOver(ctx context.Context, url, query string, threshold float64, timeout time.Duration) (time.Time, error) {
	c, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		return time.Time{}, fmt.Errorf("prometheus client for %s: %w", url, err)
	}
	a := promv1.NewAPI(c)
	deadline := time.Now().Add(timeout)
	last := "no answer"
	for {
		start := time.Now()
		v, _, err := a.Query(ctx, query, start)
		if err != nil {
			last = err.Error()
		} else if vec, ok := v.(model.Vector); ok && len(vec) > 0 {
			last = vec[0].Value.String()
			if float64(vec[0].Value) > threshold {
				return start, nil
			}
		}
		if start.After(deadline) {
			return time.Time{}, fmt.Errorf("query %s: not over %g after %s (last: %s)", query, threshold, timeout, last)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// FirstScrapeOver returns the timestamp of the first scrape after after
// in which the sum of selector's counters (a series selector such as
// `demo_rpcs_total{version="v2",code!="OK"}`) is higher than in the last
// scrape before after: when Prometheus first held the change, as
// opposed to when a query over a rate window first crosses a threshold
// (WhenOver). Series first seen after after count from zero. Asked once
// the change is known to be scraped; the lookback is a minute.
func FirstScrapeOver(ctx context.Context, url, selector string, after time.Time) (time.Time, error) {
	c, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		return time.Time{}, fmt.Errorf("prometheus client for %s: %w", url, err)
	}
	v, _, err := promv1.NewAPI(c).Query(ctx, selector+"[1m]", time.Now())
	if err != nil {
		return time.Time{}, fmt.Errorf("query %s[1m]: %w", selector, err)
	}
	m, ok := v.(model.Matrix)
	if !ok {
		return time.Time{}, fmt.Errorf("query %s[1m]: a %s, want a matrix", selector, v.Type())
	}
	return firstIncrease(m, after)
}

// firstIncrease is FirstScrapeOver's reading of the samples: the series
// of one target share each scrape's timestamp, so their sum is taken per
// timestamp.
func firstIncrease(m model.Matrix, after time.Time) (time.Time, error) {
	sums := map[model.Time]float64{}
	for _, s := range m {
		for _, p := range s.Values {
			sums[p.Timestamp] += float64(p.Value)
		}
	}
	cut := model.TimeFromUnixNano(after.UnixNano())
	var before model.Time
	for ts := range sums {
		if !ts.After(cut) && ts.After(before) {
			before = ts
		}
	}
	base := sums[before] // zero if no scrape before after
	var first model.Time
	for ts, v := range sums {
		if ts.After(cut) && v > base && (first == 0 || ts.Before(first)) {
			first = ts
		}
	}
	if first == 0 {
		return time.Time{}, fmt.Errorf("no scrape after %s shows an increase over %g", after.Format(time.StampMilli), base)
	}
	return first.Time(), nil
}
