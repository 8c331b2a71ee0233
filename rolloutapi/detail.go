package rolloutapi

import (
	"context"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/untrusted"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Detail is what a backend knows of a Rollout beyond its status, for the
// dashboard's rollout page: how each proxy answered the plan in force, the
// analysis measurements, the commit in force and the commits rejected.
// `sluice run` knows all of it; a cluster (kube/clusterapi) what its
// objects and, in the controller, its Git mirror and xDS server hold; a
// field a backend does not know is left empty.
type Detail struct {
	// DataPlane is how each xDS client answered the plan in force.
	DataPlane *DataPlaneDetail `json:"dataPlane,omitempty"`
	// Analysis holds each run of status.analysis that has measurements,
	// in that order.
	Analysis []RunDetail `json:"analysis,omitempty"`
	// Commit describes status.git.commit.
	Commit *Commit `json:"commit,omitempty"`
	// Rejected are the commits of the Rollout's Git source that were
	// rejected and are not in force (the last good commit is), newest
	// first.
	Rejected []RejectedCommit `json:"rejected,omitempty"`
}

// DataPlaneDetail is how the proxies answered one plan version, proxy by
// proxy.
type DataPlaneDetail struct {
	PlanVersion string `json:"planVersion"`
	// Subscribed counts the proxies that receive the plan; Acked those
	// that applied this version.
	Subscribed int `json:"subscribed"`
	Acked      int `json:"acked"`
	// AckedProxies names the proxies that applied it, when the backend
	// can tell them apart (a proxy that subscribes to nothing of this
	// service is not one of them); nil when it cannot, with Acked still
	// right.
	AckedProxies []Proxy `json:"ackedProxies,omitempty"`
	// Pending are the proxies that have not applied it yet and still hold
	// an earlier plan; those with Since set have left it unanswered since
	// then (silent; stale once past the Rollout's ack deadline, which
	// status.traffic.staleNodes reports).
	Pending []Proxy `json:"pending,omitempty"`
	// Rejected are the proxies that NACKed it, with their error.
	Rejected []Proxy `json:"rejected,omitempty"`
	// Replica, when set, says that the detail covers only the proxies
	// connected to this controller replica (each replica of `sluice
	// controller` serves xDS to its own); the status counts them all.
	Replica string `json:"replica,omitempty"`
}

// Proxy is one xDS client's stream. Every text in it is the proxy's own,
// bounded and without control characters (internal/untrusted); it is
// escaped wherever it is shown.
type Proxy struct {
	Node    string `json:"node"`
	Cluster string `json:"cluster,omitempty"`
	// Stream tells apart two streams of one node id.
	Stream int64 `json:"stream"`
	// Since is when a silent proxy was sent the version it has not
	// answered; At is when a rejection came.
	Since *time.Time `json:"since,omitempty"`
	At    *time.Time `json:"at,omitempty"`
	// Error is a rejection's text; TypeURL the resource type rejected.
	Error   string `json:"error,omitempty"`
	TypeURL string `json:"typeURL,omitempty"`
}

// Bounds of outside text in a Detail.
const (
	maxNodeText    = 256
	maxErrorText   = 2048
	maxAuthorText  = 256
	maxMessageLine = 512
	maxMessageRows = 40
)

// NodeText bounds a proxy's node id or cluster for a Proxy.
func NodeText(s string) string { return untrusted.Text(s, maxNodeText) }

// ErrorText bounds an error from outside (a NACK) for a Proxy or a
// RejectedCommit.
func ErrorText(s string) string { return untrusted.Text(s, maxErrorText) }

// RunDetail is one analysis run's measurements.
type RunDetail struct {
	Name    string         `json:"name"`
	Metrics []MetricDetail `json:"metrics"`
}

// MetricDetail is one metric of a run: what it is judged by, and its most
// recent measurements, oldest first.
type MetricDetail struct {
	Name             string `json:"name"`
	SuccessCondition string `json:"successCondition,omitempty"`
	FailureCondition string `json:"failureCondition,omitempty"`
	// Compare is true for a metric judged by comparing the canary with
	// the stable revision (no threshold).
	Compare      bool                   `json:"compare,omitempty"`
	DryRun       bool                   `json:"dryRun,omitempty"`
	Phase        v1alpha1.AnalysisPhase `json:"phase,omitempty"`
	Measurements []v1alpha1.Measurement `json:"measurements,omitempty"`
}

// RunDetailOf is the detail of an analysis run, as both modes keep it
// (the standalone store's saved runs, the cluster's AnalysisRun objects).
func RunDetailOf(ar *v1alpha1.AnalysisRun) RunDetail {
	out := RunDetail{Name: ar.Name}
	results := map[string]v1alpha1.MetricResult{}
	for _, m := range ar.Status.Metrics {
		results[m.Name] = m
	}
	for _, m := range ar.Spec.Metrics {
		res := results[m.Name]
		out.Metrics = append(out.Metrics, MetricDetail{
			Name: m.Name, SuccessCondition: m.SuccessCondition, FailureCondition: m.FailureCondition,
			Compare: m.Compare != nil, DryRun: m.DryRun, Phase: res.Phase, Measurements: res.Measurements,
		})
	}
	return out
}

// Commit is a Git commit. Author and Message are the committer's words,
// bounded and without control characters but newlines (CommitText).
type Commit struct {
	SHA     string    `json:"sha"`
	Author  string    `json:"author,omitempty"`
	Message string    `json:"message,omitempty"`
	Time    time.Time `json:"time"`
}

// CommitText bounds a commit's author and message for a Commit: each line
// of the message at most maxMessageLine bytes, at most maxMessageRows
// lines, control characters other than the newlines escaped.
func CommitText(author, message string) (string, string) {
	lines := strings.Split(strings.TrimRight(message, "\n"), "\n")
	if len(lines) > maxMessageRows {
		lines = append(lines[:maxMessageRows], untrusted.Ellipsis)
	}
	for i, l := range lines {
		lines[i] = untrusted.Text(strings.TrimSuffix(l, "\r"), maxMessageLine)
	}
	return untrusted.Text(author, maxAuthorText), strings.Join(lines, "\n")
}

// RejectedCommit is a commit that was not applied.
type RejectedCommit struct {
	SHA string `json:"sha"`
	// Problems are the manifest problems, each file:line: field: reason.
	Problems []string `json:"problems,omitempty"`
	// Error says why, when the reason is not a list of problems (a limit).
	Error string `json:"error,omitempty"`
	// At is when it was judged.
	At time.Time `json:"at"`
}

// Watcher is a Backend that says when what it serves may have changed, so
// that a dashboard pushes a change at once instead of looking again every
// second.
type Watcher interface {
	// Changed returns a channel that is closed at the next change of what
	// List and Get return.
	Changed() <-chan struct{}
}

// ChangedOrTick returns b's change channel when b is a Watcher; otherwise
// a channel closed after every, for backends that cannot tell.
func ChangedOrTick(ctx context.Context, b Backend, every time.Duration) <-chan struct{} {
	if w, ok := b.(Watcher); ok {
		return w.Changed()
	}
	ch := make(chan struct{})
	go func() {
		t := time.NewTimer(every)
		defer t.Stop()
		select {
		case <-t.C:
			close(ch)
		case <-ctx.Done():
		}
	}()
	return ch
}
