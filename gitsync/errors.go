package gitsync

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"

	"github.com/sluicehq/sluice/rollout/manifest"
)

// ErrorKind says what went wrong, in words stable enough to be a metric
// label and to decide policy on: an unreachable remote is retried at the
// next poll, an invalid commit waits for a new push, a config error waits
// for a human.
type ErrorKind string

// Error kinds. The values are the `kind` label of
// sluice_gitsync_errors_total.
const (
	// KindConfig: the source or its credentials are unusable as configured.
	KindConfig ErrorKind = "config"
	// KindUnreachable: network, DNS, TLS, timeout or a server error.
	KindUnreachable ErrorKind = "unreachable"
	// KindAuth: credentials refused, or the SSH host key not trusted.
	KindAuth ErrorKind = "auth"
	// KindNotFound: the repository, branch, tag or commit does not exist.
	KindNotFound ErrorKind = "not_found"
	// KindInvalidCommit: the commit's manifests have problems; the whole
	// commit is rejected.
	KindInvalidCommit ErrorKind = "invalid_commit"
	// KindLimit: the commit has more files or objects than allowed.
	KindLimit ErrorKind = "limit"
	// KindStorage: the local mirror could not be read or written.
	KindStorage ErrorKind = "storage"
	// KindPushRejected: the remote refused a write-back push (protected
	// branch, pre-receive hook).
	KindPushRejected ErrorKind = "push_rejected"
	// KindConflict: the branch kept moving during a write-back.
	KindConflict ErrorKind = "conflict"
	// KindWriteBack: the Rollout's file could not be edited safely.
	KindWriteBack ErrorKind = "write_back"
)

// AllErrorKinds lists every kind, so metrics can show zeros.
var AllErrorKinds = []ErrorKind{
	KindConfig, KindUnreachable, KindAuth, KindNotFound, KindInvalidCommit,
	KindLimit, KindStorage, KindPushRejected, KindConflict, KindWriteBack,
}

// Error is every error gitsync returns or reports in State.
type Error struct {
	Kind ErrorKind
	// Op is what was being done: "fetch", "load", "write-back", ...
	Op string
	// Commit is the full SHA concerned, when there is one.
	Commit string
	// Problems are the manifest problems of an invalid commit, each
	// printed as file:line: field: reason.
	Problems []manifest.Problem
	Err      error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("gitsync: ")
	b.WriteString(e.Op)
	if e.Commit != "" {
		fmt.Fprintf(&b, " commit %s", e.Commit)
	}
	fmt.Fprintf(&b, ": %s", e.Kind)
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of a gitsync error, or "" for any other error.
func KindOf(err error) ErrorKind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return ""
}

// RejectedOf returns err as the rejection of a commit, when it is one: an
// *Error of kind KindInvalidCommit or KindLimit that names the commit.
// Other errors (the remote, the mirror) say nothing about a commit's
// content and give nil.
func RejectedOf(err error) *Error {
	var e *Error
	if !errors.As(err, &e) || e.Commit == "" || (e.Kind != KindInvalidCommit && e.Kind != KindLimit) {
		return nil
	}
	return e
}

func newError(kind ErrorKind, op string, err error) *Error {
	return &Error{Kind: kind, Op: op, Err: err}
}

// classifyRemote sorts an error from talking to the remote into a kind.
// Transport errors come in many shapes (sentinels, wrapped net errors, SSH
// handshake text), so the checks go from most to least specific.
func classifyRemote(err error) ErrorKind {
	var nomatch git.NoMatchingRefSpecError
	var keyErr *xknownhosts.KeyError
	var revoked *xknownhosts.RevokedError
	var netErr net.Error
	switch {
	case errors.Is(err, transport.ErrAuthenticationRequired),
		errors.Is(err, transport.ErrAuthorizationFailed),
		errors.Is(err, transport.ErrInvalidAuthMethod),
		errors.As(err, &keyErr), errors.As(err, &revoked):
		return KindAuth
	case errors.Is(err, transport.ErrRepositoryNotFound),
		errors.Is(err, transport.ErrEmptyRemoteRepository),
		errors.As(err, &nomatch),
		errors.Is(err, plumbing.ErrReferenceNotFound):
		return KindNotFound
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.As(err, &netErr):
		return KindUnreachable
	}
	// The SSH client reports authentication and host key failures only
	// as text.
	msg := err.Error()
	switch {
	case strings.Contains(msg, "unable to authenticate"),
		strings.Contains(msg, "knownhosts:"),
		strings.Contains(msg, "host key"):
		return KindAuth
	case strings.Contains(msg, "repository not found"),
		strings.Contains(msg, "does not appear to be a git repository"):
		return KindNotFound
	}
	return KindUnreachable
}
