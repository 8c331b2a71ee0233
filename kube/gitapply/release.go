package gitapply

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Release gives up every object of source sourceID as a commit without
// any of them would: its Rollouts get the removal mark, naming lastCommit
// (the last commit the source applied), and are retired by the reconciler
// with their traffic on stable and their routes kept; its
// AnalysisTemplates are deleted. It is what deleting a GitSource does,
// and it works from what the cluster holds, so no Applier need be running.
// It returns how many Rollouts it marked and templates it deleted.
func Release(ctx context.Context, c client.Client, sourceID, lastCommit string, log logr.Logger) (marked, deleted int, err error) {
	if sourceID == "" {
		return 0, 0, errors.New("releasing a Git source: no source ID")
	}
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	a := &Applier{c: c, opts: Options{SourceID: sourceID}, log: log.WithValues("sourceID", sourceID)}
	cm := &commit{snap: &gitsync.Snapshot{Commit: gitsync.Commit{SHA: lastCommit}}, source: sourceID, wanted: map[key]bool{}}
	var rollouts v1alpha1.RolloutList
	if err := c.List(ctx, &rollouts); err != nil {
		return 0, 0, fmt.Errorf("releasing %s: listing Rollouts: %w", describeSource(sourceID), err)
	}
	var templates v1alpha1.AnalysisTemplateList
	if err := c.List(ctx, &templates); err != nil {
		return 0, 0, fmt.Errorf("releasing %s: listing AnalysisTemplates: %w", describeSource(sourceID), err)
	}
	marked, merr := a.markRemoved(ctx, cm, rollouts.Items)
	deleted, derr := a.deleteTemplates(ctx, cm, templates.Items)
	if err := errors.Join(merr, derr); err != nil {
		return marked, deleted, fmt.Errorf("releasing %s: %w", describeSource(sourceID), err)
	}
	return marked, deleted, nil
}
