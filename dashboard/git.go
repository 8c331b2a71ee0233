package dashboard

import (
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// gitView is where the Rollout came from in Git.
type gitView struct {
	Known      bool
	Repository string
	Path       string
	SHA        string
	Link       string
	Time       *time.Time
	// Author, Subject and Body are known when the backend read the
	// commit (rolloutapi.Detail).
	Author, Subject, Body string
	Rejected              []rejectedView
	Revert                *revertView
	// Sync says whether the source's head is in force
	// (status.gitSync): "in sync", or why not; empty when no source
	// applied the Rollout.
	Sync   string
	InSync bool
	Last   *v1alpha1.RolloutOutcome
}

type rejectedView struct {
	SHA, Link string
	Problems  []string
	Error     string
	At        time.Time
}

type revertView struct {
	Phase, Outcome, SHA, Link, LastError string
	Failed, Stable                       string
	Attempts, Failures                   int32
}

func gitOf(ro rolloutapi.Rollout) gitView {
	st := ro.Status
	var v gitView
	v.Last = st.LastRollout
	if g := st.Git; g != nil {
		v.Known, v.Repository, v.Path, v.SHA = true, text(g.Repository), text(g.Path), g.Commit
		v.Link = forgeCommitURL(g.Repository, g.Commit)
		if g.CommitTime != nil {
			v.Time = &g.CommitTime.Time
		}
	}
	if g := st.GitSync; g != nil {
		v.InSync = g.InSync()
		v.Sync = "Head " + rolloutapi.ShortSHA(g.HeadCommit) + " is in force."
		if !v.InSync {
			v.Sync = "Not in sync: " + rolloutapi.NotSynced(g) + "."
		}
	}
	if d := ro.Detail; d != nil {
		if c := d.Commit; c != nil && c.SHA == v.SHA {
			author, msg := rolloutapi.CommitText(c.Author, c.Message)
			subject, body, _ := strings.Cut(msg, "\n")
			v.Author, v.Subject, v.Body = author, subject, strings.TrimSpace(body)
		}
		for _, r := range d.Rejected {
			rv := rejectedView{SHA: r.SHA, Link: forgeCommitURL(v.Repository, r.SHA), Error: text(r.Error), At: r.At}
			for _, p := range r.Problems {
				rv.Problems = append(rv.Problems, text(p))
			}
			v.Rejected = append(v.Rejected, rv)
		}
	}
	if gr := st.GitRevert; gr != nil {
		v.Revert = &revertView{Phase: string(gr.Phase), Outcome: gr.Outcome, SHA: gr.Commit, Link: forgeCommitURL(v.Repository, gr.Commit),
			LastError: text(gr.LastError), Failed: gr.FailedRevision, Stable: gr.StableRevision, Attempts: gr.Attempts, Failures: gr.Failures}
	}
	return v
}

// forges are the hosts whose commit pages are known, and the path to a
// commit under a repository's.
var forges = map[string]string{
	"github.com":    "/commit/",
	"gitlab.com":    "/-/commit/",
	"bitbucket.org": "/commits/",
	"codeberg.org":  "/commit/",
}

var (
	scpLike  = regexp.MustCompile(`^[A-Za-z0-9._-]+@([A-Za-z0-9.-]+):(.+)$`)
	repoPath = regexp.MustCompile(`^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)+$`)
	hexSHA   = regexp.MustCompile(`^[0-9a-f]{7,64}$`)
)

// forgeCommitURL is the web page of a commit when the repository is on a
// known forge (https, ssh or scp-like URL), "" otherwise.
func forgeCommitURL(repo, sha string) string {
	if !hexSHA.MatchString(sha) {
		return ""
	}
	var host, p string
	if m := scpLike.FindStringSubmatch(repo); m != nil && !strings.Contains(repo, "://") {
		host, p = m[1], m[2]
	} else {
		u, err := url.Parse(repo)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "ssh" && u.Scheme != "git") {
			return ""
		}
		host, p = u.Hostname(), u.Path
	}
	suffix, ok := forges[strings.ToLower(host)]
	if !ok {
		return ""
	}
	p = strings.TrimSuffix(strings.Trim(p, "/"), ".git")
	if !repoPath.MatchString(p) {
		return ""
	}
	return "https://" + strings.ToLower(host) + "/" + p + suffix + sha
}
