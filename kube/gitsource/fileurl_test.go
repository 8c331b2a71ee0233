package gitsource

import (
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// A file:// URL is refused unless the operator allows it, and the refusal
// names the setting that allows it.
func TestFileURLRefusalNamesTheSetting(t *testing.T) {
	t.Parallel()
	gs := &v1alpha1.GitSource{
		ObjectMeta: metav1.ObjectMeta{Namespace: "books", Name: "books"},
		Spec:       v1alpha1.GitSourceSpec{URL: "file:///srv/git/books.git", Ref: v1alpha1.GitRef{Branch: "main"}},
	}
	_, err := configOf(gs, nil, false)
	if !errors.Is(err, errInvalid) || !strings.Contains(err.Error(), "gitSources.allowFileURLs: true") {
		t.Errorf("refusal %v: want an invalid source naming gitSources.allowFileURLs", err)
	}
	if _, err := configOf(gs, nil, true); err != nil {
		t.Errorf("allowed: %v", err)
	}
}
