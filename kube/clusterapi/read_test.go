package clusterapi

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rolloutapi"
)

func keys(rs []rolloutapi.Rollout) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.Key())
	}
	return out
}

func TestListAndGet(t *testing.T) {
	t.Parallel()
	c := admin(t)
	ns1, ns2 := newNamespace(t, c), newNamespace(t, c)
	newRollout(t, c, ns1, "web")
	newRollout(t, c, ns1, "api")
	ro := newRollout(t, c, ns2, "checkout")
	ctx := context.Background()

	for _, tc := range []struct {
		name     string
		o        Options
		pageSize int64
		want     []string // any order: List sorts
		alsoIn   bool     // other tests' Rollouts may be listed too
	}{
		{name: "one namespace", o: Options{ListNamespace: ns1}, want: []string{ns1 + "/api", ns1 + "/web"}},
		{name: "one namespace, a page per rollout", o: Options{ListNamespace: ns1}, pageSize: 1, want: []string{ns1 + "/api", ns1 + "/web"}},
		{name: "all namespaces", want: []string{ns1 + "/api", ns1 + "/web", ns2 + "/checkout"}, alsoIn: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := backendAs(t, "lister", tc.o)
			if tc.pageSize > 0 {
				b.pageSize = tc.pageSize
			}
			rs, err := b.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got := keys(rs)
			if !slices.IsSorted(got) {
				t.Errorf("List not sorted by namespace/name: %v", got)
			}
			if tc.alsoIn {
				got = slices.DeleteFunc(got, func(k string) bool { return !slices.Contains(tc.want, k) })
			}
			slices.Sort(tc.want)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("List = %v, want %v", got, tc.want)
			}
		})
	}

	b := backendAs(t, "reader", Options{})
	got, err := b.Get(ctx, ns2, "checkout")
	if err != nil {
		t.Fatal(err)
	}
	labels, err := engine.StepLabels(ro.Spec.Strategy)
	if err != nil {
		t.Fatal(err)
	}
	if got.Key() != ns2+"/checkout" || got.Strategy != "canary" || !slices.Equal(got.Steps, labels) || got.Plan != nil ||
		got.Status.Traffic.CanaryWeight != 20 || got.Status.StepDisplay != "2/3" {
		t.Fatalf("Get = %+v; want canary %s/checkout with steps %v, 20%% at step 2/3 and no plan", got, ns2, labels)
	}
	if _, err := b.Get(ctx, ns2, "nothing"); !errors.Is(err, rolloutapi.ErrNotFound) || !strings.Contains(err.Error(), `"nothing" not found`) {
		t.Fatalf("Get of a missing rollout: %v, want rolloutapi.ErrNotFound with the API server's words", err)
	}
}

func TestReadsRefusedByRBAC(t *testing.T) {
	t.Parallel()
	c := admin(t)
	ns := newNamespace(t, c)
	newRollout(t, c, ns, "web")
	b, err := New(user(t, "mallory"), Options{ListNamespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"list":    func() error { _, err := b.List(ctx); return err },
		"get":     func() error { _, err := b.Get(ctx, ns, "web"); return err },
		"history": func() error { _, err := b.History(ctx, ns, "web", 10); return err },
	} {
		err := call()
		if !errors.Is(err, rolloutapi.ErrUnauthorized) || !strings.Contains(err.Error(), `User "mallory" cannot`) {
			t.Errorf("%s as a user without rights: %v, want rolloutapi.ErrUnauthorized naming the user", name, err)
		}
	}
}

func TestHistory(t *testing.T) {
	t.Parallel()
	c := admin(t)
	ns := newNamespace(t, c)
	ro := newRollout(t, c, ns, "checkout")
	other := newRollout(t, c, ns, "web")
	ctx := context.Background()
	t0 := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	at := func(d time.Duration) metav1.Time { return metav1.NewTime(t0.Add(d)) }
	about := func(r client.Object) corev1.ObjectReference {
		return corev1.ObjectReference{APIVersion: "sluice.dev/v1alpha1", Kind: "Rollout", Namespace: ns, Name: r.GetName(), UID: r.GetUID()}
	}
	legacy := func(name, reason string, r corev1.ObjectReference, first, last metav1.Time, count int32) *corev1.Event {
		return &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Namespace: ns, Name: name},
			InvolvedObject: r, Type: corev1.EventTypeNormal, Reason: reason, Message: reason + " happened",
			FirstTimestamp: first, LastTimestamp: last, Count: count,
			Source: corev1.EventSource{Component: "sluice-rollout"},
		}
	}
	earlier := about(ro)
	earlier.UID = "a-deleted-rollout-of-the-same-name"
	evs := []*corev1.Event{
		legacy("b", "StepAdvanced", about(ro), at(2*time.Second), at(2*time.Second), 1),
		legacy("a", "RolloutStarted", about(ro), at(0), at(0), 1),
		legacy("c", "CommandPause", about(ro), at(time.Second), at(4*time.Second), 3),
		// As an events.k8s.io/v1 recorder writes it.
		{
			ObjectMeta:     metav1.ObjectMeta{Namespace: ns, Name: "d"},
			InvolvedObject: about(ro), Type: corev1.EventTypeWarning, Reason: "AnalysisFailed", Message: "AnalysisFailed happened",
			EventTime: metav1.NewMicroTime(t0.Add(3 * time.Second)), Action: "Analyze",
			ReportingController: "sluice.dev/rollout", ReportingInstance: "sluice-0",
		},
		legacy("x", "NotThisRollout", about(other), at(time.Second), at(time.Second), 1),
		legacy("y", "NotThisUID", earlier, at(time.Second), at(time.Second), 1),
	}
	for _, e := range evs {
		if err := c.Create(ctx, e); err != nil {
			t.Fatalf("create event %s: %v", e.Name, err)
		}
	}

	b := backendAs(t, "historian", Options{})
	b.pageSize = 2
	for _, tc := range []struct {
		limit int
		want  []string
	}{
		{limit: 10, want: []string{"RolloutStarted", "StepAdvanced", "AnalysisFailed", "CommandPause"}},
		{limit: 2, want: []string{"AnalysisFailed", "CommandPause"}},
	} {
		got, err := b.History(ctx, ns, "checkout", tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		var reasons []string
		for _, e := range got {
			reasons = append(reasons, e.Reason)
		}
		if !slices.Equal(reasons, tc.want) {
			t.Fatalf("History(limit %d) = %v, want %v, newest last", tc.limit, reasons, tc.want)
		}
		last := got[len(got)-1]
		wantMsg := "CommandPause happened (3 times since " + t0.Add(time.Second).Format(time.RFC3339) + ")"
		if !last.Time.Equal(t0.Add(4*time.Second)) || last.Type != "Normal" || last.Message != wantMsg {
			t.Fatalf("repeated event = %+v, want time %v and message %q", last, t0.Add(4*time.Second), wantMsg)
		}
		if first := got[len(got)-2]; first.Reason == "AnalysisFailed" && (first.Type != "Warning" || !first.Time.Equal(t0.Add(3*time.Second))) {
			t.Fatalf("events.k8s.io event = %+v, want a Warning at %v", first, t0.Add(3*time.Second))
		}
	}
	if _, err := b.History(ctx, ns, "nothing", 10); !errors.Is(err, rolloutapi.ErrNotFound) {
		t.Fatalf("History of a missing rollout: %v, want rolloutapi.ErrNotFound", err)
	}
}
