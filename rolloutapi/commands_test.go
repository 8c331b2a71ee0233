package rolloutapi

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// rolloutAt returns a Rollout whose stable revision v1 serves and whose
// spec asks for v2, with a step of 20% then a pause until promote.
func rolloutAt() *v1alpha1.Rollout {
	w := int32(20)
	return &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "shop", Generation: 1},
		Spec: v1alpha1.RolloutSpec{
			Service: v1alpha1.ServiceSpec{Name: "reviews", Hosts: []string{"reviews"}, Port: 9080},
			Backend: &v1alpha1.Backend{Version: "v2", Endpoints: []string{"127.0.0.1:9002"}},
			Strategy: v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
				{SetWeight: &w}, {Pause: &v1alpha1.PauseStep{}},
			}}},
		},
		Status: v1alpha1.RolloutStatus{
			StableRevision: "v1",
			StableBackend:  &v1alpha1.Backend{Version: "v1", Endpoints: []string{"127.0.0.1:9001"}},
		},
	}
}

// step runs the engine once as an adapter would, keeping the status.
func step(t *testing.T, ro *v1alpha1.Rollout, now time.Time, obs engine.Observations) {
	t.Helper()
	out, err := engine.Step(engine.Input{Rollout: ro, Now: now, Observations: obs})
	if err != nil {
		t.Fatal(err)
	}
	ro.Status = out.Status
}

func options(ro *v1alpha1.Rollout, now time.Time) map[v1alpha1.CommandKind]CommandOption {
	out := map[v1alpha1.CommandKind]CommandOption{}
	for _, o := range Preview(ro, now) {
		out[o.Kind] = o
	}
	return out
}

// TestPreviewSaysWhatTheEngineWould checks the preview against the
// engine's own answers through a rollout: allowed commands say what they
// do, refused ones why, in the words the CLI prints, and previewing
// changes nothing.
func TestPreviewSaysWhatTheEngineWould(t *testing.T) {
	t.Parallel()
	ro := rolloutAt()
	step(t, ro, t0, engine.Observations{})
	if ro.Status.CanaryRevision != "v2" {
		t.Fatalf("no rollout started: %+v", ro.Status)
	}
	before := ro.Status.DeepCopy()
	got := options(ro, t0.Add(time.Second))
	want := map[v1alpha1.CommandKind]CommandOption{
		v1alpha1.CommandPromote:     {Allowed: true, Result: "skipped step 1 (setWeight 20)"},
		v1alpha1.CommandPromoteFull: {Allowed: true, Result: "promoting to 100%"},
		v1alpha1.CommandAbort:       {Allowed: true, Result: "aborted: 100% to stable"},
		v1alpha1.CommandRetry:       {Result: "refused: the rollout is not aborted"},
		v1alpha1.CommandPause:       {Allowed: true, Result: "paused"},
		v1alpha1.CommandResume:      {Result: "refused: not paused (use promote to continue past a pause step)"},
	}
	for k, w := range want {
		if g := got[k]; g.Allowed != w.Allowed || g.Result != w.Result {
			t.Errorf("%s: got %+v, want allowed %v, %q", k, g, w.Allowed, w.Result)
		}
	}
	if len(Preview(ro, t0)) != len(CommandKinds) {
		t.Errorf("Preview lists %d commands, want %d", len(Preview(ro, t0)), len(CommandKinds))
	}
	if ro.Status.LastCommand != nil || !equalStatus(before, &ro.Status) {
		t.Fatalf("Preview changed the Rollout's status")
	}

	// The engine's answer to a real abort matches the preview's.
	step(t, ro, t0.Add(2*time.Second), engine.Observations{Commands: []engine.Command{{ID: "c1", Kind: v1alpha1.CommandAbort, By: "alice"}}})
	if r := ro.Status.LastCommand.Result; r != want[v1alpha1.CommandAbort].Result {
		t.Fatalf("abort answered %q, preview said %q", r, want[v1alpha1.CommandAbort].Result)
	}
	got = options(ro, t0.Add(3*time.Second))
	if o := got[v1alpha1.CommandRetry]; !o.Allowed || o.Result != "restarting from step 1" {
		t.Errorf("retry after abort: %+v", o)
	}
	for _, k := range []v1alpha1.CommandKind{v1alpha1.CommandPromote, v1alpha1.CommandPause, v1alpha1.CommandResume} {
		if o := got[k]; o.Allowed || o.Result != "refused: the rollout is aborted; use retry" {
			t.Errorf("%s after abort: %+v", k, o)
		}
	}
	if o := got[v1alpha1.CommandAbort]; o.Allowed || o.Result != "refused: already aborted" {
		t.Errorf("abort after abort: %+v", o)
	}
}

func TestPreviewRefusesWithoutARollout(t *testing.T) {
	t.Parallel()
	ro := rolloutAt()
	ro.Spec.Backend.Version = "v1"
	step(t, ro, t0, engine.Observations{})
	for _, o := range Preview(ro, t0) {
		if o.Allowed || o.Result != "refused: no rollout in progress" {
			t.Errorf("%s with no rollout: %+v", o.Kind, o)
		}
	}
	// A spec the engine cannot run refuses everything, with its reason.
	ro.Spec.Strategy = v1alpha1.Strategy{}
	for _, o := range Preview(ro, t0) {
		if o.Allowed || o.Result == "" {
			t.Errorf("%s with a broken spec: %+v", o.Kind, o)
		}
	}
}

// TestPreviewClosedWindow: a closed deployment window refuses promote, as
// the engine does, and the preview evaluates the windows itself.
func TestPreviewClosedWindow(t *testing.T) {
	t.Parallel()
	ro := rolloutAt()
	step(t, ro, t0, engine.Observations{})
	ro.Spec.Windows = []v1alpha1.DeploymentWindow{{Kind: v1alpha1.WindowDeny, Schedule: "0 0 * * *", Duration: metav1.Duration{Duration: 24 * time.Hour}}}
	o := options(ro, t0.Add(time.Minute))[v1alpha1.CommandPromote]
	if o.Allowed || o.Result == "" || o.Result[:len("refused: deployment window closed")] != "refused: deployment window closed" {
		t.Fatalf("promote in a closed window: %+v", o)
	}
	if a := options(ro, t0.Add(time.Minute))[v1alpha1.CommandAbort]; !a.Allowed {
		t.Fatalf("abort in a closed window: %+v", a)
	}
}

func equalStatus(a, b *v1alpha1.RolloutStatus) bool {
	return a.Phase == b.Phase && a.Message == b.Message && a.CanaryRevision == b.CanaryRevision &&
		*a.CurrentStepIndex == *b.CurrentStepIndex && a.Traffic.PlanVersion == b.Traffic.PlanVersion
}

func TestVerb(t *testing.T) {
	t.Parallel()
	for k, want := range map[v1alpha1.CommandKind]string{
		v1alpha1.CommandPromote: "promote", v1alpha1.CommandPromoteFull: "promote --full", v1alpha1.CommandResume: "resume",
	} {
		if got := Verb(k); got != want {
			t.Errorf("Verb(%s) = %q, want %q", k, got, want)
		}
	}
}

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }
