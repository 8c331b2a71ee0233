package peerbench

import (
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// The first scrape after a moment whose counters (summed over series,
// new series counting from zero) are higher than the last scrape's
// before it.
func TestFirstIncrease(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_800_000_000, 0)
	ts := func(ms int) model.Time {
		return model.TimeFromUnixNano(t0.Add(time.Duration(ms) * time.Millisecond).UnixNano())
	}
	series := func(points ...model.SamplePair) *model.SampleStream {
		return &model.SampleStream{Metric: model.Metric{}, Values: points}
	}
	p := func(ms int, v float64) model.SamplePair {
		return model.SamplePair{Timestamp: ts(ms), Value: model.SampleValue(v)}
	}
	for _, tc := range []struct {
		name  string
		m     model.Matrix
		after int // ms
		want  int // ms; -1: an error
	}{
		{"an existing series grows", model.Matrix{series(p(0, 4), p(1000, 4), p(2000, 4), p(3000, 9))}, 1500, 3000},
		{"a new series appears", model.Matrix{series(p(0, 4), p(1000, 4), p(2000, 4), p(3000, 4)), series(p(2000, 0), p(3000, 2))}, 1500, 3000},
		{"a new series appears with a first count", model.Matrix{series(p(0, 4), p(1000, 4), p(2000, 4)), series(p(2000, 3))}, 1500, 2000},
		{"no scrape before", model.Matrix{series(p(2000, 1))}, 1500, 2000},
		{"an increase before after only", model.Matrix{series(p(0, 4), p(1000, 6), p(2000, 6))}, 1500, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := firstIncrease(tc.m, t0.Add(time.Duration(tc.after)*time.Millisecond))
			if tc.want < 0 {
				if err == nil {
					t.Errorf("firstIncrease = %v, want an error", got.Sub(t0))
				}
				return
			}
			if err != nil || !got.Equal(t0.Add(time.Duration(tc.want)*time.Millisecond)) {
				t.Errorf("firstIncrease = %v, %v; want %dms", got.Sub(t0), err, tc.want)
			}
		})
	}
}
