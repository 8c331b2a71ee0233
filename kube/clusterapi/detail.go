package clusterapi

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluicehq/sluice/kube/gitapply"
	"github.com/sluicehq/sluice/rollout/manifest"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// GitDetailer knows a Rollout's commits beyond what the cluster keeps: the
// author and message of the commit in force, and the commits its source
// rejected. `sluice controller` has one (its Git mirrors, on the leader);
// a CLI against a cluster has none.
type GitDetailer interface {
	// GitDetail returns what it knows of ro's source; nil and nil when
	// nothing.
	GitDetail(ro *v1alpha1.Rollout) (*rolloutapi.Commit, []rolloutapi.RejectedCommit)
}

// DataPlaneDetailer knows how each xDS client answered a plan: the xDS
// server of a controller replica (its own clients).
type DataPlaneDetailer interface {
	DataPlaneDetail(ro *v1alpha1.Rollout, p plan.Plan) *rolloutapi.DataPlaneDetail
}

// detail gathers what the cluster knows of ro beyond its status, as far
// as the credentials may read it and may (nil: all) allows; what cannot
// be read is left out, as rolloutapi.Detail allows:
//   - each analysis run's measurements, from its AnalysisRun (the
//     controller keeps the last 32 per metric there);
//   - for a Rollout a GitSource applied, the commit that source rejected
//     and why (its status.problems);
//   - with Options.Git, the author and message of the commit in force and
//     the commits the controller's own Git source rejected;
//   - with Options.DataPlane and a plan, how each proxy answered it.
func (b *Backend) detail(ctx context.Context, ro *v1alpha1.Rollout, p *plan.Plan, may func(resource) bool) *rolloutapi.Detail {
	d := &rolloutapi.Detail{}
	if may == nil || may(analysisRuns) {
		d.Analysis = b.runDetails(ctx, ro)
	}
	if may == nil || may(gitSources) {
		if rc, ok := b.gitSourceRejected(ctx, ro); ok {
			d.Rejected = append(d.Rejected, rc)
		}
	}
	if b.o.Git != nil {
		c, rejected := b.o.Git.GitDetail(ro)
		if c != nil && ro.Status.Git != nil && c.SHA == ro.Status.Git.Commit {
			d.Commit = c
		}
		for _, rc := range rejected {
			// A GitSource's own status may have said so already.
			if !slices.ContainsFunc(d.Rejected, func(x rolloutapi.RejectedCommit) bool { return x.SHA == rc.SHA }) {
				d.Rejected = append(d.Rejected, rc)
			}
		}
	}
	if b.o.DataPlane != nil && p != nil {
		d.DataPlane = b.o.DataPlane.DataPlaneDetail(ro, *p)
	}
	return d
}

// runDetails reads the AnalysisRuns of status.analysis, which the
// controller names as the status does and owns by the Rollout's UID (a run
// of an earlier Rollout of the same name is not this one's).
func (b *Backend) runDetails(ctx context.Context, ro *v1alpha1.Rollout) []rolloutapi.RunDetail {
	var out []rolloutapi.RunDetail
	for _, st := range ro.Status.Analysis {
		var ar v1alpha1.AnalysisRun
		if err := b.r.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: st.Name}, &ar); err != nil {
			continue
		}
		if ref := metav1.GetControllerOf(&ar); ref == nil || ref.UID != ro.UID {
			continue
		}
		out = append(out, rolloutapi.RunDetailOf(&ar))
	}
	return out
}

// gitSourceRejected is the commit the GitSource that applied ro rejected,
// while its Ready condition says so (the last good commit stays in force).
func (b *Backend) gitSourceRejected(ctx context.Context, ro *v1alpha1.Rollout) (rolloutapi.RejectedCommit, bool) {
	ns, name, ok := strings.Cut(gitapply.SourceOf(ro), "/")
	if !ok {
		return rolloutapi.RejectedCommit{}, false
	}
	var gs v1alpha1.GitSource
	if err := b.r.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &gs); err != nil {
		return rolloutapi.RejectedCommit{}, false
	}
	return RejectedOf(&gs)
}

// RejectedOf is the commit a GitSource rejected, as its status says: the
// commit, each listed problem as file:line: field: reason, and how many
// more there are.
func RejectedOf(gs *v1alpha1.GitSource) (rolloutapi.RejectedCommit, bool) {
	st := gs.Status
	c := meta.FindStatusCondition(st.Conditions, v1alpha1.GitSourceReady)
	if c == nil || c.Reason != v1alpha1.GitSourceCommitRejected || st.LastAttemptedCommit == "" {
		return rolloutapi.RejectedCommit{}, false
	}
	rc := rolloutapi.RejectedCommit{SHA: st.LastAttemptedCommit, At: c.LastTransitionTime.Time}
	for _, p := range st.Problems {
		mp := manifest.Problem{File: p.File, Line: int(p.Line), Field: p.Field, Reason: p.Reason}
		rc.Problems = append(rc.Problems, rolloutapi.ErrorText(mp.String()))
	}
	if more := int(st.ProblemCount) - len(st.Problems); more > 0 {
		rc.Problems = append(rc.Problems, rolloutapi.ErrorText(plural(more, "more problem")+" not listed"))
	}
	if len(rc.Problems) == 0 {
		rc.Error = rolloutapi.ErrorText(cmp.Or(st.LastAttemptMessage, c.Message))
	}
	return rc, true
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}
