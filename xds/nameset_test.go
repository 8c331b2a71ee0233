package xds

import (
	"maps"
	"runtime"
	"testing"
	"time"
)

func TestNameSetsShareEqualSubscriptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		a, b []string
		same bool
	}{
		{"same names", []string{"r1", "r2"}, []string{"r1", "r2"}, true},
		{"another order, a repeat and a wildcard", []string{"r1", "r2"}, []string{"*", "r2", "r1", "r2"}, true},
		{"none", nil, []string{"*"}, true},
		{"one more", []string{"r1"}, []string{"r1", "r2"}, false},
		{"a separator inside a name", []string{"a\x00b"}, []string{"a", "b"}, false},
		{"a length inside a name", []string{"\x01a\x01b"}, []string{"a", "b"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var sets nameSets
			x, y := sets.share(tc.a), sets.share(tc.b)
			if (x == y) != tc.same {
				t.Errorf("share(%q) == share(%q): %v, want %v", tc.a, tc.b, x == y, tc.same)
			}
			for _, s := range []struct {
				names []string
				set   *nameSet
			}{{tc.a, x}, {tc.b, y}} {
				want := map[string]bool{}
				for _, n := range s.names {
					if n != "*" {
						want[n] = true
					}
				}
				if !maps.Equal(s.set.names, want) {
					t.Errorf("share(%q) = %v, want %v", s.names, s.set.names, want)
				}
			}
			runtime.KeepAlive(x)
			runtime.KeepAlive(y)
		})
	}
}

// TestNameSetsForgetUnheldSets: a set no stream holds leaves the table,
// so made-up names do not pile up after their streams close.
func TestNameSetsForgetUnheldSets(t *testing.T) {
	t.Parallel()
	var sets nameSets
	held := sets.share([]string{"kept"})
	for i := range 100 {
		sets.share([]string{"made-up", string(rune('a' + i%26)), string(rune('A' + i/26))})
	}
	for deadline := time.Now().Add(30 * time.Second); sets.len() > 1; {
		if time.Now().After(deadline) {
			t.Fatalf("%d sets left, want only the held one", sets.len())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if sets.share([]string{"kept"}) != held {
		t.Error("the held set left the table")
	}
}

// TestStreamsShareASubscription: two streams naming the same resources in
// another order hold one set, and a stream that changes its names gets
// another without changing the first's.
func TestStreamsShareASubscription(t *testing.T) {
	t.Parallel()
	var sets nameSets
	var one, two kindState
	one.subscribeSotW([]string{"a", "b"}, &sets)
	two.subscribeSotW([]string{"b", "a"}, &sets)
	if one.set != two.set || one.set == nil {
		t.Fatalf("two streams subscribing to a and b hold %p and %p", one.set, two.set)
	}
	if one.wildcard || !one.everNamed {
		t.Errorf("named subscription: wildcard %v, everNamed %v", one.wildcard, one.everNamed)
	}
	two.subscribeSotW([]string{"a"}, &sets)
	if len(one.names) != 2 || len(two.names) != 1 {
		t.Errorf("after the second stream's change: %v and %v", one.names, two.names)
	}
}
