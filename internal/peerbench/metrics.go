package peerbench

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape reads the Prometheus metrics at url.
func Scrape(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	// The text format: every exporter speaks it.
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// Histogram is a cumulative histogram summed over series: counts[i] is
// the number of observations ≤ bounds[i]; the last bound is +Inf.
type Histogram struct {
	Bounds []float64
	Counts []float64
	Sum    float64
}

// HistogramOf sums the histogram family name over the series whose
// labels include match (all series for a nil match).
func HistogramOf(families map[string]*dto.MetricFamily, name string, match map[string]string) Histogram {
	var h Histogram
	f := families[name]
	if f == nil {
		return h
	}
	index := map[float64]int{}
	for _, m := range f.GetMetric() {
		if !hasLabels(m, match) || m.GetHistogram() == nil {
			continue
		}
		mh := m.GetHistogram()
		h.Sum += mh.GetSampleSum()
		for _, b := range mh.GetBucket() {
			ub := b.GetUpperBound()
			i, ok := index[ub]
			if !ok {
				i = len(h.Bounds)
				index[ub] = i
				h.Bounds = append(h.Bounds, ub)
				h.Counts = append(h.Counts, 0)
			}
			h.Counts[i] += float64(b.GetCumulativeCount())
		}
		inf, ok := index[math.Inf(1)]
		if !ok {
			inf = len(h.Bounds)
			index[math.Inf(1)] = inf
			h.Bounds = append(h.Bounds, math.Inf(1))
			h.Counts = append(h.Counts, 0)
		}
		// The text format's +Inf bucket is the count; keep it once.
		if len(mh.GetBucket()) == 0 || !math.IsInf(mh.GetBucket()[len(mh.GetBucket())-1].GetUpperBound(), 1) {
			h.Counts[inf] += float64(mh.GetSampleCount())
		}
	}
	// Sort buckets by bound, keeping counts alongside.
	order := make([]int, len(h.Bounds))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		switch {
		case h.Bounds[a] < h.Bounds[b]:
			return -1
		case h.Bounds[a] > h.Bounds[b]:
			return 1
		}
		return 0
	})
	sorted := Histogram{Sum: h.Sum}
	for _, i := range order {
		sorted.Bounds = append(sorted.Bounds, h.Bounds[i])
		sorted.Counts = append(sorted.Counts, h.Counts[i])
	}
	return sorted
}

func hasLabels(m *dto.Metric, match map[string]string) bool {
	for k, v := range match {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == k && l.GetValue() == v {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Since is h less an earlier scrape of the same histogram: the
// observations made in between.
func (h Histogram) Since(earlier Histogram) Histogram {
	out := Histogram{Bounds: slices.Clone(h.Bounds), Counts: slices.Clone(h.Counts), Sum: h.Sum - earlier.Sum}
	for i, b := range earlier.Bounds {
		if j := slices.Index(out.Bounds, b); j >= 0 {
			out.Counts[j] -= earlier.Counts[i]
		}
	}
	return out
}

// Count is the number of observations.
func (h Histogram) Count() float64 {
	if len(h.Counts) == 0 {
		return 0
	}
	return h.Counts[len(h.Counts)-1]
}

// Quantile estimates the q-quantile as Prometheus' histogram_quantile
// does: linear interpolation inside the bucket that holds it, the lower
// bound of the first bucket taken as 0, and the highest finite bound when
// it falls in the +Inf bucket. So it is only as fine as the buckets.
func (h Histogram) Quantile(q float64) float64 {
	n := h.Count()
	if n == 0 {
		return math.NaN()
	}
	rank := q * n
	lower, below := 0.0, 0.0
	for i, ub := range h.Bounds {
		c := h.Counts[i]
		if c >= rank {
			if math.IsInf(ub, 1) {
				return lower
			}
			if c == below {
				return ub
			}
			return lower + (ub-lower)*(rank-below)/(c-below)
		}
		if !math.IsInf(ub, 1) {
			lower = ub
		}
		below = c
	}
	return lower
}

// Counter sums the counter (or gauge) family name over the series whose
// labels include match.
func Counter(families map[string]*dto.MetricFamily, name string, match map[string]string) float64 {
	f := families[name]
	if f == nil {
		return 0
	}
	var sum float64
	for _, m := range f.GetMetric() {
		if !hasLabels(m, match) {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		case m.GetUntyped() != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum
}

// Percentile of sorted values (nearest rank).
func Percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}
