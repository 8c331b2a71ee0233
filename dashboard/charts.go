package dashboard

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// chart is a metric's measurements over time against its thresholds, laid
// out in a fixed SVG coordinate space that the page scales.
type chart struct {
	ID            string
	Width, Height int
	// Plot area.
	Left, Right, Top, Bottom float64
	Points                   []chartPoint
	// Line joins the points that have a value.
	Line       string
	Thresholds []threshold
	YTicks     []tick
	XFirst     string
	XLast      string
	// Summary says in words what the chart shows; Rows are its data.
	Summary string
	Rows    []chartRow
}

type chartPoint struct {
	X, Y float64
	// NoData marks a measurement without a value, drawn on the axis.
	NoData bool
	Class  string
	Title  string
}

type threshold struct {
	Y     float64
	Class string
	Label string
}

type tick struct {
	Y     float64
	Label string
}

type chartRow struct {
	At time.Time
	// N counts the metric's measurements from 1.
	N       int32
	Value   string
	Phase   string
	Message string
}

const (
	chartW, chartH = 640, 220
	padLeft        = 56.0
	padRight       = 16.0
	padTop         = 14.0
	padBottom      = 28.0
)

// metricChart draws a metric's measurements; nil when it has none.
func metricChart(run string, m rolloutapi.MetricDetail) *chart {
	if len(m.Measurements) == 0 {
		return nil
	}
	c := &chart{ID: "chart-" + sanitizeID(run+"-"+m.Name), Width: chartW, Height: chartH,
		Left: padLeft, Right: chartW - padRight, Top: padTop, Bottom: chartH - padBottom}
	type pt struct {
		at    time.Time
		v     float64
		ok    bool
		phase v1alpha1.AnalysisPhase
		meas  v1alpha1.Measurement
	}
	var pts []pt
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, ms := range m.Measurements {
		v, ok := firstValue(ms.Value)
		pts = append(pts, pt{at: ms.At.Time, v: v, ok: ok, phase: ms.Phase, meas: ms})
		if ok {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
		c.Rows = append(c.Rows, chartRow{At: ms.At.Time, N: ms.Index + 1, Value: orDash(text(ms.Value)), Phase: string(ms.Phase), Message: text(ms.Message)})
	}
	var ths []threshold
	for _, cond := range []struct{ expr, class, what string }{{m.SuccessCondition, "t-success", "success"}, {m.FailureCondition, "t-failure", "failure"}} {
		op, v, ok := parseThreshold(cond.expr)
		if !ok {
			continue
		}
		ths = append(ths, threshold{Y: v, Class: cond.class, Label: fmt.Sprintf("%s: %s %s", cond.what, op, formatNumber(v))})
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if math.IsInf(lo, 1) {
		lo, hi = 0, 1
	}
	if hi-lo < 1e-9 {
		pad := math.Max(math.Abs(hi)*0.1, 0.5)
		lo, hi = lo-pad, hi+pad
	} else {
		pad := (hi - lo) * 0.1
		lo, hi = lo-pad, hi+pad
	}
	y := func(v float64) float64 { return c.Bottom - (v-lo)/(hi-lo)*(c.Bottom-c.Top) }
	t0, t1 := pts[0].at, pts[len(pts)-1].at
	x := func(t time.Time) float64 {
		if !t1.After(t0) {
			return (c.Left + c.Right) / 2
		}
		return c.Left + float64(t.Sub(t0))/float64(t1.Sub(t0))*(c.Right-c.Left)
	}
	var line []string
	for _, p := range pts {
		cp := chartPoint{X: round1(x(p.at)), Class: "p-" + strings.ToLower(string(p.phase)),
			Title: fmt.Sprintf("#%d at %s: %s (%s)", p.meas.Index+1, p.at.UTC().Format("15:04:05"), orDash(text(p.meas.Value)), p.phase)}
		if p.ok {
			cp.Y = round1(y(p.v))
			line = append(line, fmt.Sprintf("%g,%g", cp.X, cp.Y))
		} else {
			cp.Y, cp.NoData = c.Bottom, true
		}
		c.Points = append(c.Points, cp)
	}
	c.Line = strings.Join(line, " ")
	for _, t := range ths {
		t.Y = round1(y(t.Y))
		c.Thresholds = append(c.Thresholds, t)
	}
	for i := range 5 {
		v := lo + (hi-lo)*float64(i)/4
		c.YTicks = append(c.YTicks, tick{Y: round1(y(v)), Label: formatNumber(v)})
	}
	c.XFirst, c.XLast = t0.UTC().Format("15:04:05"), t1.UTC().Format("15:04:05")
	var thText []string
	for _, t := range ths {
		thText = append(thText, t.Label)
	}
	if len(thText) == 0 {
		thText = append(thText, "no threshold drawn (the conditions are shown as written)")
	}
	c.Summary = fmt.Sprintf("%s of run %s: %d measurements from %s to %s, last %s (%s); %s.",
		text(m.Name), run, len(pts), c.XFirst, c.XLast, orDash(text(pts[len(pts)-1].meas.Value)), pts[len(pts)-1].phase, strings.Join(thText, ", "))
	return c
}

// firstValue reads a measurement's value: a number, or the first of a
// list ("[0.99, 0.98]"); false for no data.
func firstValue(s string) (float64, bool) {
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	first, _, _ := strings.Cut(s, ",")
	v, err := strconv.ParseFloat(strings.TrimSpace(first), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}

var (
	// thresholdRE reads "result[0] >= 0.99" and "result < 5", either
	// way round.
	thresholdRE = regexp.MustCompile(`^\s*(?:(result(?:\[0\])?|[a-z]\w*)\s*(<=|>=|<|>)\s*(-?[0-9.]+(?:[eE][-+]?\d+)?)|(-?[0-9.]+(?:[eE][-+]?\d+)?)\s*(<=|>=|<|>)\s*(result(?:\[0\])?|[a-z]\w*))\s*$`)
	// allRE reads "all(result, x, x < 0.05)".
	allRE   = regexp.MustCompile(`^\s*all\(\s*result\s*,\s*([a-z]\w*)\s*,(.*)\)\s*$`)
	flipped = map[string]string{"<": ">", ">": "<", "<=": ">=", ">=": "<="}
)

// parseThreshold finds the number a simple condition compares the result
// with, to draw it; conditions of any other shape are not drawn.
func parseThreshold(cond string) (op string, v float64, ok bool) {
	variable := "result"
	if m := allRE.FindStringSubmatch(cond); m != nil {
		variable, cond = m[1], m[2]
	}
	m := thresholdRE.FindStringSubmatch(cond)
	if m == nil {
		return "", 0, false
	}
	lhs, op, num := m[1], m[2], m[3]
	if lhs == "" {
		lhs, op, num = m[6], flipped[m[5]], m[4]
	}
	if lhs != variable && !(variable == "result" && lhs == "result[0]") {
		return "", 0, false
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return "", 0, false
	}
	return op, v, true
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

func formatNumber(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

var idUnsafe = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

func sanitizeID(s string) string { return idUnsafe.ReplaceAllString(s, "-") }
