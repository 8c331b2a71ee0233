package dashboard

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// tablePage is the landing page: one row per Rollout.
type tablePage struct {
	base
	Filter     filter
	Namespaces []string
	Phases     []string
	Columns    []column
	Rows       []row
	// Total counts the Rollouts before filtering.
	Total int
	// Events is the URL of this view's live updates.
	Events string
}

// filter is the table's query: namespace, phase and text filters, and the
// column it is sorted by.
type filter struct {
	Namespace, Phase, Text string
	Sort                   string
	Desc                   bool
}

func parseFilter(q url.Values) filter {
	f := filter{Namespace: q.Get("namespace"), Phase: q.Get("phase"), Text: strings.TrimSpace(q.Get("q")), Sort: q.Get("sort"), Desc: q.Get("desc") == "1"}
	if _, ok := columnByKey(f.Sort); !ok {
		f.Sort = defaultSort
	}
	return f
}

func (f filter) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"namespace": f.Namespace, "phase": f.Phase, "q": f.Text} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Sort != defaultSort {
		q.Set("sort", f.Sort)
	}
	if f.Desc {
		q.Set("desc", "1")
	}
	return q
}

// defaultSort is the column the table is sorted by when the query names
// none; rows sort by namespace and name within any column.
const defaultSort = "namespace"

// column is one column of the table, and how it sorts.
type column struct {
	Key, Title string
	cmp        func(a, b *row) int
	// Href sorts by it (descending when it already sorts ascending);
	// Sorted is "asc" or "desc" for the column sorted by.
	Href, Sorted string
}

var columns = []column{
	{Key: "namespace", Title: "Namespace", cmp: func(a, b *row) int { return cmp.Compare(a.Namespace, b.Namespace) }},
	{Key: "name", Title: "Name", cmp: func(a, b *row) int { return cmp.Compare(a.Name, b.Name) }},
	{Key: "strategy", Title: "Strategy", cmp: func(a, b *row) int { return cmp.Compare(a.Strategy, b.Strategy) }},
	{Key: "phase", Title: "Phase", cmp: func(a, b *row) int { return cmp.Compare(a.Phase, b.Phase) }},
	{Key: "step", Title: "Step", cmp: func(a, b *row) int { return cmp.Compare(a.stepIndex, b.stepIndex) }},
	{Key: "weight", Title: "Canary weight", cmp: func(a, b *row) int { return cmp.Compare(a.Weight, b.Weight) }},
	{Key: "stable", Title: "Stable", cmp: func(a, b *row) int { return cmp.Compare(a.Stable, b.Stable) }},
	{Key: "canary", Title: "Canary", cmp: func(a, b *row) int { return cmp.Compare(a.Canary, b.Canary) }},
	{Key: "analysis", Title: "Analysis", cmp: func(a, b *row) int { return cmp.Compare(a.Analysis, b.Analysis) }},
	{Key: "ack", Title: "Data plane", cmp: func(a, b *row) int { return cmp.Compare(a.Ack, b.Ack) }},
	{Key: "commit", Title: "Commit", cmp: func(a, b *row) int { return cmp.Compare(a.Commit, b.Commit) }},
	{Key: "age", Title: "Age", cmp: func(a, b *row) int { return b.Since.Compare(a.Since) }},
}

func columnByKey(k string) (column, bool) {
	i := slices.IndexFunc(columns, func(c column) bool { return c.Key == k })
	if i < 0 {
		return column{}, false
	}
	return columns[i], true
}

// row is one Rollout in the table.
type row struct {
	Namespace, Name, Href string
	Strategy, Phase       string
	Message               string
	Step                  string
	stepIndex             int
	Weight                int32
	Stable, Canary        string
	Analysis              string
	Ack                   string
	Commit                string
	// Since is when the commit in force was made; zero when unknown.
	Since time.Time
}

func newRow(r rolloutapi.Rollout) row {
	st := r.Status
	out := row{
		Namespace: r.Namespace, Name: r.Name, Href: rolloutPath(r.Namespace, r.Name),
		Strategy: r.Strategy, Phase: string(st.Phase), Message: st.Message,
		Step: "-", stepIndex: -1, Weight: st.Traffic.CanaryWeight,
		Stable: orDash(st.StableRevision), Canary: orDash(st.CanaryRevision),
		Analysis: analysisVerdict(st.Analysis), Ack: ackState(st.Traffic), Commit: "-",
	}
	if out.Phase == "" {
		out.Phase = "-"
	}
	if st.CanaryRevision != "" && st.CurrentStepIndex != nil {
		out.stepIndex = int(*st.CurrentStepIndex)
		out.Step = st.StepDisplay
	}
	if g := st.Git; g != nil {
		out.Commit = shortSHA(g.Commit)
		if g.CommitTime != nil {
			out.Since = g.CommitTime.Time
		}
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// analysisVerdict sums up the current rollout's analysis: Running while a
// run measures, else the verdict of the last run that ended.
func analysisVerdict(runs []v1alpha1.AnalysisRunStatus) string {
	verdict := "-"
	for _, r := range runs {
		switch {
		case !r.Terminated && !r.Phase.Completed():
			return string(v1alpha1.AnalysisRunning)
		case r.Phase.Completed():
			verdict = string(r.Phase)
		}
	}
	return verdict
}

// ackState says whether the data plane holds the plan in force.
func ackState(tr v1alpha1.TrafficStatus) string {
	switch {
	case tr.PlanVersion == "":
		return "-"
	case tr.RejectedVersion != "" && tr.RejectedVersion == tr.PlanVersion:
		return "Rejected"
	case tr.AcknowledgedVersion == tr.PlanVersion:
		return "Acknowledged"
	case tr.StaleNodes != nil && tr.StaleNodes.Count > 0:
		return "Stale"
	}
	return "Pending"
}

func (d *Dashboard) tableData(r *http.Request, s *session) (tablePage, error) {
	rs, err := s.viewer.Backend().List(r.Context())
	if err != nil {
		return tablePage{}, err
	}
	f := parseFilter(r.URL.Query())
	p := tablePage{base: d.base(r, s, "Rollouts"), Filter: f, Total: len(rs)}
	ns, phases := map[string]bool{}, map[string]bool{}
	text := strings.ToLower(f.Text)
	for _, ro := range rs {
		rw := newRow(ro)
		ns[rw.Namespace], phases[rw.Phase] = true, true
		if (f.Namespace != "" && rw.Namespace != f.Namespace) || (f.Phase != "" && rw.Phase != f.Phase) ||
			(text != "" && !strings.Contains(strings.ToLower(strings.Join([]string{rw.Namespace, rw.Name, rw.Strategy, rw.Stable, rw.Canary, rw.Commit, rw.Message}, " ")), text)) {
			continue
		}
		p.Rows = append(p.Rows, rw)
	}
	p.Namespaces, p.Phases = sortedKeys(ns), sortedKeys(phases)
	c, _ := columnByKey(f.Sort)
	slices.SortStableFunc(p.Rows, func(a, b row) int {
		n := cmp.Or(c.cmp(&a, &b), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
		if f.Desc {
			return -n
		}
		return n
	})
	for _, col := range columns {
		g := f
		g.Sort, g.Desc = col.Key, false
		if col.Key == f.Sort {
			col.Sorted = "asc"
			if f.Desc {
				col.Sorted = "desc"
			} else {
				g.Desc = true
			}
		}
		col.Href = "?" + g.query().Encode()
		p.Columns = append(p.Columns, col)
	}
	p.Events = "events"
	if q := f.query().Encode(); q != "" {
		p.Events += "?" + q
	}
	return p, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (d *Dashboard) table(w http.ResponseWriter, r *http.Request, s *session) {
	p, err := d.tableData(r, s)
	if err != nil {
		d.backendError(w, r, s, err)
		return
	}
	d.render(w, http.StatusOK, "table", p)
}

func (d *Dashboard) tableFragment(r *http.Request, s *session) ([]byte, error) {
	p, err := d.tableData(r, s)
	if err != nil {
		return nil, err
	}
	return d.fragment("table", "live", p)
}
