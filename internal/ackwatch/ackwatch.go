// Package ackwatch wakes a loop that feeds the engine (the standalone
// runner, the Kubernetes reconciler) while a published plan version waits
// for its acknowledgement and who has answered it changes.
//
// A wait for the final answer (every node applied the version, or one
// rejected it) never ends while a node stays silent. The engine must still
// see that node, and since when it is silent, to mark it stale at
// spec.dataPlane.ackDeadlineSeconds and, with silentProxies: Exclude, to
// count the step once only stale nodes are missing. Watch reports those
// partial answers; the engine then asks to be called again at the
// deadline (Output.RequeueAfter). Both modes use it beside their wait for
// the final answer, which stays theirs.
package ackwatch

import (
	"context"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/rollout/engine"
)

// MinInterval is the least time between two looks, hence between two
// wakes: a fleet of proxies answering one by one wakes the loop a few
// times a second at most, not once per proxy.
const MinInterval = 200 * time.Millisecond

// Watch calls wake whenever the pending answer look returns differs, in
// what may change the engine's decision (progress), from the one it last
// woke for, looking at most once per MinInterval, the first time
// MinInterval after it starts; the first look wakes unless no node
// subscribes. It returns when look's answer is final (not pending: the
// caller's wait for it reports it) or ctx ends.
//
// changed returns a channel closed at the next change that may move the
// answer (xds.Server.StatusChanged, or several sources merged). Watch
// takes it before each look, so a change while looking is not lost.
func Watch(ctx context.Context, changed func() <-chan struct{}, look func() engine.DataPlane, wake func()) {
	// The first look waits too: proxies that answer within MinInterval, as
	// most do, bring the final answer before it, so a published version
	// costs the loop no wake for a partial answer it would act on no
	// differently.
	first := time.NewTimer(MinInterval)
	select {
	case <-ctx.Done():
		first.Stop()
		return
	case <-first.C:
	}
	var last progress
	for {
		next := changed()
		dp := look()
		if dp.State != engine.AckPending {
			return
		}
		if p := progressOf(dp); p != last {
			last = p
			wake()
		}
		pace := time.NewTimer(MinInterval)
		select {
		case <-ctx.Done():
		case <-next:
			select {
			case <-ctx.Done():
			case <-pace.C:
			}
		}
		pace.Stop()
		if ctx.Err() != nil {
			return
		}
	}
}

// Progress is what of a pending answer may change the engine's decision
// (ProgressOf), for a caller that follows many versions in one loop and
// so cannot use Watch: comparable, the zero value with no node
// subscribed.
type Progress = progress

// ProgressOf is the progress of a pending answer, as Watch compares it.
func ProgressOf(dp engine.DataPlane) Progress { return progressOf(dp) }

// progress is what of a pending answer may change the engine's decision:
// how many nodes subscribe, how many applied the version, and which were
// sent it and left it unanswered since when (a fingerprint, so that one
// silent node replacing another is seen too).
type progress struct {
	subscribed, acked, silent int
	silentSum                 uint64
}

func progressOf(dp engine.DataPlane) progress {
	p := progress{subscribed: dp.Subscribed, acked: dp.Acked, silent: len(dp.Silent)}
	if len(dp.Silent) > 0 {
		h := fnv.New64a()
		for _, n := range dp.Silent {
			_, _ = h.Write([]byte(n.Name))
			_, _ = h.Write([]byte{0})
			_, _ = h.Write(strconv.AppendInt(nil, n.Since.UnixNano(), 10))
			_, _ = h.Write([]byte{0})
		}
		p.silentSum = h.Sum64()
	}
	return p
}
