package xds

import (
	"runtime"
	"slices"
	"sync"
	"weak"

	"google.golang.org/protobuf/encoding/protowire"
)

// nameSets shares one copy of each distinct state-of-the-world
// subscription among the streams that subscribe to it. Every Envoy of a
// view asks for the same route configurations and endpoints, and each
// stream's kindState kept its own set of those names: at 100 services
// about 6.5 KB per stream, the same for every stream (docs/performance.md,
// "2. xDS, same clients"). A set is held weakly: when no stream holds it
// any longer the collector takes it and its entry leaves the table, so
// made-up names a client subscribes to cost that client's streams only,
// and only while they hold them.
type nameSets struct {
	mu   sync.Mutex
	sets map[string]weak.Pointer[nameSet]
}

// nameSet is a subscription's names, "*" left out. It is shared, so it
// is never mutated.
type nameSet struct {
	names map[string]bool
}

// share returns the set of names, less "*", shared with every stream
// holding an equal one.
func (t *nameSets) share(names []string) *nameSet {
	key := setKey(names)
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.sets[key].Value(); s != nil {
		return s
	}
	s := &nameSet{names: make(map[string]bool, len(names))}
	for _, n := range names {
		if n != "*" {
			s.names[n] = true
		}
	}
	if t.sets == nil {
		t.sets = map[string]weak.Pointer[nameSet]{}
	}
	wp := weak.Make(s)
	t.sets[key] = wp
	runtime.AddCleanup(s, t.drop, setEntry{key, wp})
	return s
}

type setEntry struct {
	key string
	wp  weak.Pointer[nameSet]
}

// drop removes a collected set's entry, unless an equal set made since
// took its place.
func (t *nameSets) drop(e setEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sets[e.key] == e.wp {
		delete(t.sets, e.key)
	}
}

// len is how many sets the table holds.
func (t *nameSets) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sets)
}

// setKey is names as a set, less "*": sorted, without repeats, each
// prefixed by its length (a name may hold any byte, so no separator
// would be safe).
func setKey(names []string) string {
	sorted := make([]string, 0, len(names))
	size := 0
	for _, n := range names {
		if n != "*" {
			sorted = append(sorted, n)
			size += protowire.SizeBytes(len(n))
		}
	}
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	b := make([]byte, 0, size)
	for _, n := range sorted {
		b = protowire.AppendString(b, n)
	}
	return string(b)
}
