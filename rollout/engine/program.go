package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// The three strategies compile to one linear program of steps, so a single
// loop executes canary, blue/green and dark release alike. After the last
// step comes promotion: 100% to the new revision, then it becomes stable.

type stepKind uint8

const (
	stepWeight stepKind = iota + 1
	stepPause
	stepAnalysis
	stepRoute // add, replace or remove a named match route to the canary
	stepMirror
	stepPreview
	stepRevision // start, change or stop an extra revision
)

type step struct {
	kind   stepKind
	weight int32
	// pause is the duration of a pause, or the least time of an analysis
	// step; nil on a pause step means "until promote".
	pause    *time.Duration
	analysis *v1alpha1.AnalysisStep
	aKind    v1alpha1.AnalysisKind
	route    string
	match    []v1alpha1.RouteMatch
	mirror   int32
	preview  *v1alpha1.PreviewSpec
	revision *v1alpha1.RevisionStep
	// canaryIndex maps back to spec.strategy.canary.steps (or the dark
	// release's steps) for background analysis startingStep; -1 otherwise.
	canaryIndex int
}

// changesTraffic reports whether the step changes the plan, so it completes
// on acknowledgement.
func (s step) changesTraffic() bool {
	switch s.kind {
	case stepWeight, stepRoute, stepMirror, stepPreview, stepRevision:
		return true
	}
	return false
}

func (s step) String() string {
	switch s.kind {
	case stepWeight:
		return fmt.Sprintf("setWeight %d", s.weight)
	case stepPause:
		if s.pause == nil {
			return "pause until promote"
		}
		return "pause " + s.pause.String()
	case stepAnalysis:
		names := ""
		for i, t := range s.analysis.Templates {
			if i > 0 {
				names += ","
			}
			names += t.Name
		}
		return fmt.Sprintf("%s analysis %s", lowerKind(s.aKind), names)
	case stepRoute:
		if len(s.match) == 0 {
			return "remove route " + s.route
		}
		return "route " + s.route + " to canary"
	case stepMirror:
		return "mirror " + strconv.Itoa(int(s.mirror)) + "%"
	case stepPreview:
		return "preview"
	case stepRevision:
		r := s.revision
		if !startsRevision(r) {
			return "stop revision " + r.Name
		}
		out := "revision " + r.Name
		if r.Weight > 0 {
			out += " " + strconv.Itoa(int(r.Weight)) + "%"
		}
		if len(r.Match) > 0 {
			out += " +match"
		}
		return out
	}
	return "unknown"
}

func lowerKind(k v1alpha1.AnalysisKind) string {
	switch k {
	case v1alpha1.AnalysisPrePromotion:
		return "pre-promotion"
	case v1alpha1.AnalysisPostPromotion:
		return "post-promotion"
	case v1alpha1.AnalysisDark:
		return "dark"
	case v1alpha1.AnalysisBackgroundKind:
		return "background"
	}
	return "step"
}

// darkRoute is the name of the dark release's match route.
const darkRoute = "dark"

// previewRoute is the name of the blue/green preview match route.
const previewRoute = "preview"

// compile turns a strategy into its program.
func compile(st v1alpha1.Strategy) ([]step, error) {
	switch {
	case st.Canary != nil:
		return canarySteps(st.Canary.Steps, 0)
	case st.BlueGreen != nil:
		return blueGreenSteps(st.BlueGreen), nil
	case st.DarkRelease != nil:
		return darkSteps(st.DarkRelease)
	}
	return nil, fmt.Errorf("spec.strategy: exactly one of canary, blueGreen or darkRelease must be set")
}

func canarySteps(in []v1alpha1.CanaryStep, offset int) ([]step, error) {
	out := make([]step, 0, len(in))
	for i, cs := range in {
		s := step{canaryIndex: offset + i}
		switch {
		case cs.SetWeight != nil:
			s.kind, s.weight = stepWeight, *cs.SetWeight
		case cs.Pause != nil:
			s.kind = stepPause
			if cs.Pause.Duration != nil {
				d := cs.Pause.Duration.Duration
				s.pause = &d
			}
		case cs.Analysis != nil:
			s.kind, s.analysis, s.aKind = stepAnalysis, cs.Analysis, v1alpha1.AnalysisStepKind
		case cs.SetHeaderRoute != nil:
			s.kind, s.route, s.match = stepRoute, "header-"+cs.SetHeaderRoute.Name, cs.SetHeaderRoute.Match
		case cs.SetMirror != nil:
			s.kind, s.mirror = stepMirror, cs.SetMirror.Percent
		case cs.SetRevision != nil:
			s.kind, s.revision = stepRevision, cs.SetRevision
		default:
			return nil, fmt.Errorf("spec.strategy.canary.steps[%d]: a step must set exactly one action", i)
		}
		out = append(out, s)
	}
	return out, nil
}

func blueGreenSteps(bg *v1alpha1.BlueGreenStrategy) []step {
	out := []step{{kind: stepPreview, preview: &bg.Preview, canaryIndex: -1}}
	if bg.PrePromotionAnalysis != nil {
		out = append(out, step{kind: stepAnalysis, analysis: bg.PrePromotionAnalysis, aKind: v1alpha1.AnalysisPrePromotion, canaryIndex: -1})
	}
	gate := step{kind: stepPause, canaryIndex: -1}
	if bg.AutoPromotionSeconds != nil {
		d := time.Duration(*bg.AutoPromotionSeconds) * time.Second
		gate.pause = &d
	}
	out = append(out, gate, step{kind: stepWeight, weight: 100, canaryIndex: -1})
	if bg.PostPromotionAnalysis != nil {
		out = append(out, step{kind: stepAnalysis, analysis: bg.PostPromotionAnalysis, aKind: v1alpha1.AnalysisPostPromotion, canaryIndex: -1})
	}
	return out
}

func darkSteps(dr *v1alpha1.DarkReleaseStrategy) ([]step, error) {
	out := []step{{kind: stepRoute, route: darkRoute, match: dr.Match, canaryIndex: -1}}
	var least *time.Duration
	if dr.Duration != nil {
		d := dr.Duration.Duration
		least = &d
	}
	if dr.Analysis != nil {
		out = append(out, step{kind: stepAnalysis, analysis: dr.Analysis, aKind: v1alpha1.AnalysisDark, pause: least, canaryIndex: -1})
	} else {
		out = append(out, step{kind: stepPause, pause: least, canaryIndex: -1})
	}
	rest, err := canarySteps(dr.Steps, 0)
	if err != nil {
		return nil, fmt.Errorf("darkRelease: %w", err)
	}
	return append(out, rest...), nil
}

// hashStrategy identifies a strategy's steps. The strategy holds only plain
// data, so its JSON encoding is canonical.
func hashStrategy(st v1alpha1.Strategy) string {
	b, err := json.Marshal(st)
	if err != nil {
		panic(fmt.Sprintf("engine: marshal strategy: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// StepLabels describes the steps a strategy executes, promotion included as
// the last one, in the words status messages use; index i matches
// status.currentStepIndex.
func StepLabels(st v1alpha1.Strategy) ([]string, error) {
	steps, err := compile(st)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(steps)+1)
	for _, s := range steps {
		out = append(out, s.String())
	}
	return append(out, "promote to 100%"), nil
}

// startsRevision reports whether a setRevision step runs its revision (it
// names a backend or template) rather than stopping it.
func startsRevision(r *v1alpha1.RevisionStep) bool {
	return r.Backend != nil || r.Template != nil
}
