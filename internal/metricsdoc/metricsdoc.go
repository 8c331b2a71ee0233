// Package metricsdoc reads the metric tables of docs/metrics.md, so that
// tests can hold each mode's /metrics to what the page promises: every
// metric documented for a mode is served by it, with the documented
// labels.
package metricsdoc

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Mode is a column value of the page's modes column.
type Mode string

const (
	Both       Mode = "both"
	Controller Mode = "controller"
	Run        Mode = "run"
)

// Metric is one documented metric.
type Metric struct {
	Name string
	Type string
	// Labels are the label names, without the values the page lists in
	// parentheses.
	Labels []string
	Mode   Mode
	// Appears says when the series exist, in the page's words ("at
	// start", "with a Rollout", ...).
	Appears string
	// Line is where the row is, for messages.
	Line int
}

// ServedBy reports whether mode m serves the metric.
func (d Metric) ServedBy(m Mode) bool { return d.Mode == Both || d.Mode == m }

// row is a table row of a Sluice metric: | `name` | type | unit | labels
// | modes | appears | meaning |.
var row = regexp.MustCompile("^\\| `(sluice_[a-z_]+)` \\| ([a-z]+) \\|[^|]*\\|([^|]*)\\| (both|controller|run) \\|([^|]*)\\|[^|]*\\|$")

var parens = regexp.MustCompile(`\([^)]*\)`)

// Read parses the page at path. A row that names a sluice_ metric but does
// not have the table's shape is an error naming its line, so the tables
// cannot drift out of what the tests read.
func Read(path string) ([]Metric, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read metrics page: %w", err)
	}
	var out []Metric
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if !strings.HasPrefix(line, "| `sluice_") {
			continue
		}
		m := row.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("%s:%d: a metric row without the columns metric | type | unit | labels | modes | appears | meaning", path, n)
		}
		if prev, dup := seen[m[1]]; dup {
			return nil, fmt.Errorf("%s:%d: %s is documented twice (also line %d)", path, n, m[1], prev)
		}
		seen[m[1]] = n
		var labels []string
		for _, l := range strings.Split(parens.ReplaceAllString(m[3], ""), ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels = append(labels, l)
			}
		}
		out = append(out, Metric{Name: m[1], Type: m[2], Labels: labels, Mode: Mode(m[4]), Appears: strings.TrimSpace(m[5]), Line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics page: %w", err)
	}
	return out, nil
}
