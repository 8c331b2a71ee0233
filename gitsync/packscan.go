package gitsync

import (
	"io"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
)

// go-git's pack parser holds each object of a fetched pack whole in
// memory while it indexes the pack, so a 200 MB file costs 200 MB of
// memory before any check of the fetched commit could refuse it. Object
// sizes are therefore checked in the stream itself: a scanner reads
// what the transport delivers, beside go-git, and stops the fetch at the
// first object whose size (a delta's: the size of the object it makes)
// is over MaxBlobBytes. It inflates each object once, into nothing, so
// it costs CPU but no memory. Which file the object is cannot be known
// yet (trees and the object's own hash are not at hand), so this
// rejection names the limit and the size; the check of the commit's tree
// names the path of a file that is already in the mirror.

// sidebandOf is the framing the server uses for the pack, as go-git
// decides it (the request's capabilities); ok is false for a bare pack.
func sidebandOf(caps *capability.List) (t sideband.Type, ok bool) {
	switch {
	case caps.Supports(capability.Sideband):
		return sideband.Sideband, true
	case caps.Supports(capability.Sideband64k):
		return sideband.Sideband64k, true
	}
	return 0, false
}

// maxDeltaHeader is more than the two sizes a delta starts with take.
const maxDeltaHeader = 2 * 10

// scanPackObjects reads a pack (side-band framed when framed) and returns
// a *FetchLimitError for the first object over maxObject bytes, nil for a
// pack that keeps the limit, or another error for a stream it cannot
// read (go-git reports those itself).
func scanPackObjects(r io.Reader, framing sideband.Type, framed bool, maxObject int64) error {
	if framed {
		r = sideband.NewDemuxer(framing, r)
	}
	s := packfile.NewScanner(r)
	_, count, err := s.Header()
	if err != nil {
		return err
	}
	for range count {
		oh, err := s.NextObjectHeader()
		if err != nil {
			return err
		}
		if !oh.Type.IsDelta() {
			if oh.Length > maxObject {
				return objectTooLarge(oh.Type, oh.Length, maxObject)
			}
			if _, _, err := s.NextObject(io.Discard); err != nil {
				return err
			}
			continue
		}
		head := &headWriter{}
		if _, _, err := s.NextObject(head); err != nil {
			return err
		}
		if size, ok := deltaTargetSize(head.b); ok && size > maxObject {
			return &FetchLimitError{Limit: LimitMaxBlobBytes, Max: maxObject, Size: size, Object: deltaObject}
		}
	}
	return nil
}

// deltaObject is what a delta's result is called: its type is its
// base's, which the stream may not hold.
const deltaObject = "object (a delta)"

func objectTooLarge(t plumbing.ObjectType, size, max int64) *FetchLimitError {
	return &FetchLimitError{Limit: LimitMaxBlobBytes, Max: max, Size: size, Object: t.String()}
}

// headWriter keeps the first bytes written to it.
type headWriter struct{ b []byte }

func (w *headWriter) Write(p []byte) (int, error) {
	if n := maxDeltaHeader - len(w.b); n > 0 {
		w.b = append(w.b, p[:min(n, len(p))]...)
	}
	return len(p), nil
}

// deltaTargetSize reads the second of the two sizes a delta starts with
// (the base's, then the result's), each 7 bits a byte, low bits first.
func deltaTargetSize(b []byte) (int64, bool) {
	var sizes [2]int64
	for i := range sizes {
		var shift uint
		for {
			if len(b) == 0 || shift > 56 {
				return 0, false
			}
			c := b[0]
			b = b[1:]
			sizes[i] |= int64(c&0x7f) << shift
			shift += 7
			if c&0x80 == 0 {
				break
			}
		}
	}
	return sizes[1], true
}
