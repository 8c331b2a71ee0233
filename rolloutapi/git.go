package rolloutapi

import (
	"context"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/internal/untrusted"
	"github.com/sluicehq/sluice/rollout/manifest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// GitSource is the state of one Git source: the commit its ref names, the
// commit in force and a commit rejected since (v1alpha1.GitSyncStatus,
// whose Source names it). Each Rollout carries its source's state in
// status.gitSync; a backend that is a GitReporter also lists its sources,
// which tells a rejected head when no Rollout exists yet.
type GitSource struct {
	// Repository is the source's URL without credentials, when known.
	Repository string `json:"repository,omitempty"`
	v1alpha1.GitSyncStatus
}

// GitReporter is a Backend that can list its Git sources: `sluice run`
// (its one source) and a cluster (its GitSources).
type GitReporter interface {
	GitSources(ctx context.Context) ([]GitSource, error)
}

// NotSynced says in words why the head commit of g is not the commit in
// force, or "" when it is (v1alpha1.GitSyncStatus.InSync): what `sluice
// status --require-synced` fails with. Text from Git is bounded and
// escaped.
func NotSynced(g *v1alpha1.GitSyncStatus) string {
	switch {
	case g == nil:
		return "not applied from Git"
	case g.InSync():
		return ""
	case g.Rejected != nil && g.Rejected.Commit == g.HeadCommit:
		return fmt.Sprintf("head commit %s was rejected (%s); %s stays in force", ShortSHA(g.HeadCommit), RejectionSummary(g.Rejected), inForce(g))
	case g.HeadCommit == "":
		return "the source has not been fetched yet" + messageSuffix(g)
	case g.Message != "":
		return fmt.Sprintf("cannot tell whether head commit %s is the latest: %s; %s in force", ShortSHA(g.HeadCommit), untrusted.Text(g.Message, 300), inForce(g))
	}
	return fmt.Sprintf("head commit %s is not applied yet; %s in force", ShortSHA(g.HeadCommit), inForce(g))
}

func inForce(g *v1alpha1.GitSyncStatus) string {
	if g.AppliedCommit == "" {
		return "nothing"
	}
	return ShortSHA(g.AppliedCommit)
}

func messageSuffix(g *v1alpha1.GitSyncStatus) string {
	if g.Message == "" {
		return ""
	}
	return ": " + untrusted.Text(g.Message, 300)
}

// RejectionSummary is the first problem of a rejected commit and how many
// more there are, or its message: one line, bounded and escaped.
func RejectionSummary(r *v1alpha1.GitRejection) string {
	lines := RejectionLines(r)
	switch len(lines) {
	case 0:
		return "no reason recorded"
	case 1:
		return lines[0]
	}
	more := int(r.ProblemCount) - 1
	if more < 1 {
		more = len(lines) - 1
	}
	return fmt.Sprintf("%s, and %d more", lines[0], more)
}

// RejectionLines are a rejected commit's problems as file:line: field:
// reason, and a line counting those not listed; its message when it has
// no problems. Each line is bounded and escaped, ready to print.
func RejectionLines(r *v1alpha1.GitRejection) []string {
	if r == nil {
		return nil
	}
	var out []string
	for _, p := range r.Problems {
		mp := manifest.Problem{File: p.File, Line: int(p.Line), Field: p.Field, Reason: p.Reason}
		out = append(out, untrusted.Text(mp.String(), maxMessageLine))
	}
	if more := int(r.ProblemCount) - len(r.Problems); more > 0 && len(r.Problems) > 0 {
		out = append(out, fmt.Sprintf("(%d more not listed)", more))
	}
	if len(out) == 0 && strings.TrimSpace(r.Message) != "" {
		out = append(out, untrusted.Text(r.Message, maxMessageLine))
	}
	return out
}

// ShortSHA is the first 12 characters of a commit SHA.
func ShortSHA(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
