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
