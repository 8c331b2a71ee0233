package gitsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// A fetch stopped by a limit keeps nothing, so the next poll would
// download the same pack again, up to the limit, every interval, until
// the remote changes. The mirror therefore remembers the refusal: the
// remote tip it was for and the limits in force. While both stay the
// same, a poll only asks the remote for its refs (the advertisement
// that starts every fetch, without the pack) and reports the same
// refusal; a new tip or other limits fetch again. The memory is kept
// beside the mirror's repository, so a restart does not download the
// pack again either.

// refusedFile holds the remembered refusal, in the source's mirror folder.
const refusedFile = "refused-fetch.json"

// refusal is a fetch stopped by a limit.
type refusal struct {
	// Tip identifies what the remote advertised for the source's
	// refspecs (remoteTip).
	Tip string `json:"tip"`
	// Commit is what the source's ref named (the commit, or an annotated
	// tag), for messages; a fixed commit's own.
	Commit string `json:"commit,omitempty"`
	// Limits are the ones the fetch was stopped under, defaults applied.
	Limits FetchLimits `json:"limits"`
	// Refusal is the limit the fetch went over.
	Refusal FetchLimitError `json:"refusal"`
}

// remoteTip digests the advertised refs that the mirror's refspecs fetch
// (name and hash of each), and returns with it the hash the source's ref
// names: the same digest means a fetch would want the same objects.
func (m *mirror) remoteTip(refs map[plumbing.ReferenceName]plumbing.Hash) (tip, commit string) {
	specs := m.refSpecs()
	var lines []string
	for name, h := range refs {
		for _, rs := range specs {
			if rs.Match(name) {
				lines = append(lines, name.String()+" "+h.String())
				break
			}
		}
	}
	slices.Sort(lines)
	sum := sha256.New()
	for _, l := range lines {
		fmt.Fprintln(sum, l)
	}
	switch {
	case m.src.Commit != "":
		commit = m.src.Commit
	default:
		src := plumbing.ReferenceName(specs[0].Src())
		if h, ok := refs[src]; ok {
			commit = h.String()
		}
	}
	return hex.EncodeToString(sum.Sum(nil)), commit
}

// listRemote asks the remote for its refs only (git ls-remote).
func (m *mirror) listRemote(ctx context.Context) (map[plumbing.ReferenceName]plumbing.Hash, error) {
	rem, err := m.repo.Remote(remoteName)
	if err != nil {
		return nil, newError(KindStorage, "open mirror", err)
	}
	list, err := rem.ListContext(ctx, &git.ListOptions{
		Auth:            m.auth,
		CABundle:        m.src.Auth.CABundle,
		InsecureSkipTLS: m.src.Auth.InsecureSkipTLSVerify,
	})
	if err != nil {
		return nil, err
	}
	refs := make(map[plumbing.ReferenceName]plumbing.Hash, len(list))
	for _, r := range list {
		if r.Type() == plumbing.HashReference {
			refs[r.Name()] = r.Hash()
		}
	}
	return refs, nil
}

// refusedAgain reports whether a fetch now would be the one refused
// before: same limits and the remote advertises the same tip. Callers
// hold Syncer.repoMu.
func (m *mirror) refusedAgain(ctx context.Context) (bool, error) {
	if m.refused == nil || m.refused.Limits != m.src.FetchLimits {
		return false, nil
	}
	refs, err := m.listRemote(ctx)
	if err != nil {
		return false, err
	}
	tip, _ := m.remoteTip(refs)
	return tip == m.refused.Tip, nil
}

// refusalError is the error a refusal is reported with, the first time
// and every time it is remembered: the same text, so a remembered
// refusal changes no status.
func (m *mirror) refusalError(r *refusal) error {
	lerr := r.Refusal
	until := "until " + m.describeRef() + " changes or the limits do"
	if m.src.Commit != "" {
		until = "until a branch or tag of the remote changes, or the limits do"
	}
	return &Error{Kind: KindLimit, Op: "fetch " + redactURL(m.src.URL), Commit: r.Commit,
		Err: fmt.Errorf("%w; it is not downloaded again %s", &lerr, until)}
}

// remember records a refusal of the fetch of refs (what the remote
// advertised to it), in memory and on disk, and returns its error.
func (m *mirror) remember(refs map[plumbing.ReferenceName]plumbing.Hash, lerr *FetchLimitError) error {
	r := &refusal{Limits: m.src.FetchLimits, Refusal: *lerr}
	r.Tip, r.Commit = m.remoteTip(refs)
	m.refused = r
	if err := writeRefusal(m.dir, r); err != nil {
		m.log.Error(err, "cannot keep the refused fetch on disk; after a restart it is downloaded once more")
	}
	return m.refusalError(r)
}

// forget drops a remembered refusal after a fetch went through.
func (m *mirror) forget() {
	if m.refused == nil {
		return
	}
	m.refused = nil
	if err := os.Remove(filepath.Join(m.dir, refusedFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		m.log.Error(err, "cannot delete the record of a refused fetch")
	}
}

func writeRefusal(dir string, r *refusal) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, refusedFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, refusedFile))
}

// readRefusal reads the refusal kept in dir; nil if there is none or it
// cannot be read (then the fetch is simply tried again).
func readRefusal(dir string) (*refusal, error) {
	b, err := os.ReadFile(filepath.Join(dir, refusedFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r refusal
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", refusedFile, err)
	}
	return &r, nil
}
