package store

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

const key = "shop/reviews"

func TestCommit(t *testing.T) {
	t.Parallel()
	step1, step2 := testRecord(1, 10), testRecord(2, 20)
	// A pause step: new status, same traffic, so the same plan version.
	pause := testRecord(2, 20)
	pause.Status.Phase = v1alpha1.PhasePaused
	unsealed := *testPlan(30)
	unsealed.Version = ""

	cases := []struct {
		name      string
		prior     []Record
		key       string
		rec       Record
		wantErr   string
		wantSt    *v1alpha1.RolloutStatus
		wantPlan  *plan.Plan
		wantTime  time.Time
		wantEvent int // events in history after the Commit
	}{
		{name: "first write", rec: step1, wantSt: step1.Status, wantPlan: step1.Plan, wantTime: step1.Time, wantEvent: 1},
		{name: "next step replaces status and plan", prior: []Record{step1}, rec: step2,
			wantSt: step2.Status, wantPlan: step2.Plan, wantTime: step2.Time, wantEvent: 2},
		{name: "status alone with the same plan version", prior: []Record{step2}, rec: Record{Time: pause.Time, Status: pause.Status},
			wantSt: pause.Status, wantPlan: step2.Plan, wantTime: pause.Time, wantEvent: 1},
		{name: "plan alone on a new rollout", rec: Record{Plan: step1.Plan}, wantPlan: step1.Plan},
		{name: "empty record changes nothing but the sequence", prior: []Record{step1}, rec: Record{},
			wantSt: step1.Status, wantPlan: step1.Plan, wantTime: step1.Time, wantEvent: 1},
		{name: "namespace-less key", key: "reviews", rec: step1, wantSt: step1.Status, wantPlan: step1.Plan, wantTime: step1.Time, wantEvent: 1},

		{name: "status naming another plan", prior: []Record{step1}, rec: Record{Status: step2.Status},
			wantErr: `status names plan "` + step2.Plan.Version + `" but the plan is "` + step1.Plan.Version + `"`},
		{name: "plan the status does not name", prior: []Record{step1}, rec: Record{Plan: step2.Plan},
			wantErr: "status names plan"},
		{name: "status and plan that disagree", rec: Record{Status: step1.Status, Plan: step2.Plan}, wantErr: "status names plan"},
		{name: "unsealed plan", rec: Record{Plan: &unsealed}, wantErr: "plan is not sealed"},
		{name: "events without time", rec: Record{Status: step1.Status, Plan: step1.Plan, Events: step1.Events}, wantErr: "events without a time"},
		{name: "invalid run state", rec: Record{Runs: map[string]json.RawMessage{"r": json.RawMessage(`{`)}}, wantErr: `state of run "r" is not valid JSON`},
		{name: "run without name", rec: Record{Runs: map[string]json.RawMessage{"": json.RawMessage(`{}`)}}, wantErr: "run without a name"},
		{name: "bad key", key: "/reviews", rec: step1, wantErr: `rollout key "/reviews"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t, Options{})
			k := key
			if tc.key != "" {
				k = tc.key
			}
			for _, p := range tc.prior {
				mustCommit(t, s, k, p)
			}
			before := len(tc.prior)
			seq, err := s.Commit(k, tc.rec)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Commit error = %v, want ErrInvalid containing %q", err, tc.wantErr)
				}
				// Nothing of a refused record may land.
				if last, _ := s.Seq(); last != uint64(before) {
					t.Errorf("Seq() = %d after a refused Commit, want %d", last, before)
				}
				if before > 0 {
					r, err := s.Get(k)
					if err != nil {
						t.Fatal(err)
					}
					last := tc.prior[before-1]
					if mustJSON(t, r.Status) != mustJSON(t, last.Status) || mustJSON(t, r.Plan) != mustJSON(t, last.Plan) {
						t.Errorf("refused Commit changed the stored rollout")
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Commit: %v", err)
			}
			if seq != uint64(before+1) {
				t.Errorf("Commit sequence = %d, want %d", seq, before+1)
			}
			r, err := s.Get(k)
			if err != nil {
				t.Fatal(err)
			}
			ns, name, _ := SplitKey(k)
			if r.Key != k || r.Namespace != ns || r.Name != name || r.Seq != seq || !r.UpdatedAt.Equal(tc.wantTime) {
				t.Errorf("Get = key %q ns %q name %q seq %d updated %v; want %q %q %q %d %v",
					r.Key, r.Namespace, r.Name, r.Seq, r.UpdatedAt, k, ns, name, seq, tc.wantTime)
			}
			if got, want := mustJSON(t, r.Status), mustJSON(t, tc.wantSt); got != want {
				t.Errorf("status:\n got %s\nwant %s", got, want)
			}
			if got, want := mustJSON(t, r.Plan), mustJSON(t, tc.wantPlan); got != want {
				t.Errorf("plan:\n got %s\nwant %s", got, want)
			}
			if h, err := s.History(k, 0); err != nil || len(h) != tc.wantEvent {
				t.Errorf("History = %d events, %v; want %d", len(h), err, tc.wantEvent)
			}
		})
	}
}

func TestRuns(t *testing.T) {
	t.Parallel()
	blob := func(s string) json.RawMessage { return json.RawMessage(s) }
	withRuns := func(rec Record, runs map[string]json.RawMessage) Record { rec.Runs = runs; return rec }
	cases := []struct {
		name  string
		steps []Record
		want  map[string]string
	}{
		{name: "runs listed in status are kept",
			steps: []Record{withRuns(testRecord(1, 10, "a", "b"), map[string]json.RawMessage{"a": blob(`{"n":1}`), "b": blob(`[]`)})},
			want:  map[string]string{"a": `{"n":1}`, "b": `[]`}},
		{name: "a run not in status is discarded",
			steps: []Record{withRuns(testRecord(1, 10, "a"), map[string]json.RawMessage{"a": blob(`1`), "late": blob(`2`)})},
			want:  map[string]string{"a": `1`}},
		{name: "run state alone updates without a status",
			steps: []Record{
				withRuns(testRecord(1, 10, "a"), map[string]json.RawMessage{"a": blob(`1`)}),
				{Runs: map[string]json.RawMessage{"a": blob(`2`)}},
			},
			want: map[string]string{"a": `2`}},
		{name: "a nil state deletes",
			steps: []Record{
				withRuns(testRecord(1, 10, "a", "b"), map[string]json.RawMessage{"a": blob(`1`), "b": blob(`2`)}),
				{Runs: map[string]json.RawMessage{"a": nil}},
			},
			want: map[string]string{"b": `2`}},
		{name: "a status that drops a run prunes its state",
			steps: []Record{
				withRuns(testRecord(1, 10, "a", "b"), map[string]json.RawMessage{"a": blob(`1`), "b": blob(`2`)}),
				testRecord(2, 20, "b"),
			},
			want: map[string]string{"b": `2`}},
		{name: "runs without any status are discarded",
			steps: []Record{{Runs: map[string]json.RawMessage{"a": blob(`1`)}}},
			want:  map[string]string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t, Options{})
			for _, rec := range tc.steps {
				mustCommit(t, s, key, rec)
			}
			runs, err := s.Runs(key)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for k, v := range runs {
				got[k] = string(v)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Runs = %v, want %v", got, tc.want)
			}
			for name, want := range tc.want {
				if b, err := s.Run(key, name); err != nil || string(b) != want {
					t.Errorf("Run(%q) = %s, %v; want %s", name, b, err, want)
				}
			}
			if _, err := s.Run(key, "absent"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Run(absent) = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestRunsOfUnknownRollout(t *testing.T) {
	t.Parallel()
	s := open(t, Options{})
	if _, err := s.Run("nope", "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Run = %v, want ErrNotFound", err)
	}
	if runs, err := s.Runs("nope"); err != nil || len(runs) != 0 {
		t.Errorf("Runs = %v, %v; want empty", runs, err)
	}
	if _, err := s.Get("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get = %v, want ErrNotFound", err)
	}
	for name, call := range map[string]func() error{
		"Get":     func() error { _, err := s.Get("a/b/c"); return err },
		"Run":     func() error { _, err := s.Run("a/b/c", "r"); return err },
		"Runs":    func() error { _, err := s.Runs("a/b/c"); return err },
		"History": func() error { _, err := s.History("a/b/c", 0); return err },
	} {
		if err := call(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s with a bad key = %v, want ErrInvalid", name, err)
		}
	}
}

func TestHistory(t *testing.T) {
	t.Parallel()
	s := open(t, Options{HistoryLimit: 3})
	var seqs []uint64
	for i := range int32(4) {
		seqs = append(seqs, mustCommit(t, s, key, testRecord(i, 10*i)))
	}
	// One step with two events: both land, in order, under one sequence.
	abort := testRecord(4, 0)
	abort.Events = []engine.Event{
		{Type: engine.EventWarning, Reason: v1alpha1.ReasonAnalysisFailed, Message: "aborted"},
		{Type: engine.EventNormal, Reason: "AnalysisStarted", Message: "x"},
	}
	seqs = append(seqs, mustCommit(t, s, key, abort))
	step := func(i int32) *int32 { return &i }
	all := []Event{
		{Index: 4, Seq: seqs[3], Time: t0.Add(3 * time.Minute), Type: engine.EventNormal, Reason: v1alpha1.ReasonStepAdvanced, Message: "step 4/5", StepIndex: step(3), Step: "4/5", CanaryRevision: "v2"},
		{Index: 5, Seq: seqs[4], Time: t0.Add(4 * time.Minute), Type: engine.EventWarning, Reason: v1alpha1.ReasonAnalysisFailed, Message: "aborted", StepIndex: step(4), Step: "5/5", CanaryRevision: "v2"},
		{Index: 6, Seq: seqs[4], Time: t0.Add(4 * time.Minute), Type: engine.EventNormal, Reason: "AnalysisStarted", Message: "x", StepIndex: step(4), Step: "5/5", CanaryRevision: "v2"},
	}
	cases := []struct {
		name  string
		key   string
		limit int
		want  []Event
	}{
		{name: "all kept, trimmed to the limit", key: key, limit: 0, want: all},
		{name: "limit above what is kept", key: key, limit: 10, want: all},
		{name: "last two", key: key, limit: 2, want: all[1:]},
		{name: "last one", key: key, limit: 1, want: all[2:]},
		{name: "unknown rollout", key: "other", limit: 0, want: nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := s.History(tc.key, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if g, w := mustJSON(t, got), mustJSON(t, tc.want); g != w {
				t.Fatalf("History(%q, %d):\n got %s\nwant %s", tc.key, tc.limit, g, w)
			}
		})
	}
}

func TestDeleteAndPurge(t *testing.T) {
	t.Parallel()
	s := open(t, Options{})
	rec := testRecord(1, 10, "a")
	rec.Runs = map[string]json.RawMessage{"a": json.RawMessage(`1`)}
	mustCommit(t, s, key, rec)
	mustCommit(t, s, "other", testRecord(1, 10))

	steps := []struct {
		name    string
		do      func() error
		exists  bool // key still stored
		history int  // events of key kept
	}{
		{"delete removes status, plan and runs but keeps history", func() error { return s.Delete(key) }, false, 1},
		{"delete again is not an error", func() error { return s.Delete(key) }, false, 1},
		{"the name comes back and continues its history", func() error { _, err := s.Commit(key, testRecord(0, 0)); return err }, true, 2},
		{"purge removes the history only", func() error { return s.PurgeHistory(key) }, true, 0},
		{"purge again is not an error", func() error { return s.PurgeHistory(key) }, true, 0},
		{"bad key", func() error {
			if err := s.Delete("a/b/c"); !errors.Is(err, ErrInvalid) {
				return err
			}
			if err := s.PurgeHistory(""); !errors.Is(err, ErrInvalid) {
				return err
			}
			return nil
		}, true, 0},
	}
	for _, st := range steps { // in order: each step builds on the last
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		_, err := s.Get(key)
		if exists := err == nil; exists != st.exists || (err != nil && !errors.Is(err, ErrNotFound)) {
			t.Fatalf("%s: Get = %v, want exists=%v", st.name, err, st.exists)
		}
		plans, err := s.Plans()
		if _, ok := plans[key]; err != nil || ok != st.exists {
			t.Fatalf("%s: Plans has key = %v, %v; want %v", st.name, ok, err, st.exists)
		}
		if runs, err := s.Runs(key); err != nil || len(runs) != 0 {
			t.Fatalf("%s: Runs = %v, %v; want none (deleted, then no state written)", st.name, runs, err)
		}
		h, err := s.History(key, 0)
		if err != nil || len(h) != st.history {
			t.Fatalf("%s: History = %d events, %v; want %d", st.name, len(h), err, st.history)
		}
		if st.history == 2 && (h[0].Index != 1 || h[1].Index != 2) {
			t.Fatalf("%s: history indexes %d, %d; want 1, 2", st.name, h[0].Index, h[1].Index)
		}
		if _, err := s.Get("other"); err != nil {
			t.Fatalf("%s: the other rollout was touched: %v", st.name, err)
		}
	}
}

func TestListAndPlans(t *testing.T) {
	t.Parallel()
	s := open(t, Options{})
	b, ax := testRecord(1, 10), testRecord(2, 20)
	mustCommit(t, s, "b", b)
	mustCommit(t, s, "a/x", ax)
	mustCommit(t, s, "c", Record{Status: testRecord(3, 30).Status}) // no plan yet

	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Key, NS, Name string
		Seq           uint64
		HasSt, HasPl  bool
	}
	var got []row
	for _, r := range list {
		got = append(got, row{r.Key, r.Namespace, r.Name, r.Seq, r.Status != nil, r.Plan != nil})
	}
	want := []row{{"a/x", "a", "x", 2, true, true}, {"b", "", "b", 1, true, true}, {"c", "", "c", 3, true, false}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("List = %+v, want %+v", got, want)
	}
	plans, err := s.Plans()
	if err != nil {
		t.Fatal(err)
	}
	if g, w := mustJSON(t, plans), mustJSON(t, map[string]*plan.Plan{"a/x": ax.Plan, "b": b.Plan}); g != w {
		t.Fatalf("Plans:\n got %s\nwant %s", g, w)
	}

	empty := open(t, Options{})
	if l, err := empty.List(); err != nil || len(l) != 0 {
		t.Errorf("List of an empty store = %v, %v", l, err)
	}
	if p, err := empty.Plans(); err != nil || len(p) != 0 {
		t.Errorf("Plans of an empty store = %v, %v", p, err)
	}
}

func TestGit(t *testing.T) {
	t.Parallel()
	good := GitCommit{SHA: "aaa", Time: t0, At: t0.Add(time.Second)}
	bad := GitCommit{SHA: "bbb", Time: t0.Add(time.Minute), At: t0.Add(2 * time.Minute)}
	cases := []struct {
		name string
		set  []GitState
		want GitState
	}{
		{name: "never set", want: GitState{}},
		{name: "applied commit", set: []GitState{{Last: good, Good: good}}, want: GitState{Last: good, Good: good}},
		{name: "rejected commit keeps the good one", set: []GitState{{Last: good, Good: good}, {Last: bad, LastError: "invalid", Good: good}},
			want: GitState{Last: bad, LastError: "invalid", Good: good}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t, Options{})
			for _, g := range tc.set {
				if err := s.SetGit(g); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.Git()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Git() = %+v, want %+v", got, tc.want)
			}
		})
	}
}
