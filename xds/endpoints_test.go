package xds

import "testing"

// Setting what a revision already has signals nothing: the standalone
// runner sets every revision it knows at every pass, and each signal makes
// the server translate every plan again.
func TestStaticSetUnchangedSignalsNothing(t *testing.T) {
	t.Parallel()
	s := NewStatic()
	must(t, s.Set("ns", "reviews", "v1", "10.0.0.1:80", "[::1]:8080"))
	<-s.Changed()

	steps := []struct {
		what    string
		set     func() error
		signals bool
	}{
		{"the same addresses", func() error { return s.Set("ns", "reviews", "v1", "10.0.0.1:80", "[::1]:8080") }, false},
		{"the same addresses, written otherwise", func() error { return s.Set("ns", "reviews", "v1", "10.0.0.1:80", "[0:0::1]:8080") }, false},
		{"no addresses for a revision without any", func() error { return s.Set("ns", "reviews", "v9") }, false},
		{"another order", func() error { return s.Set("ns", "reviews", "v1", "[::1]:8080", "10.0.0.1:80") }, true},
		{"one address less", func() error { return s.Set("ns", "reviews", "v1", "[::1]:8080") }, true},
		{"the same revision in another namespace", func() error { return s.Set("", "reviews", "v1", "[::1]:8080") }, true},
		{"no addresses: removed", func() error { return s.Set("ns", "reviews", "v1") }, true},
		{"removed again", func() error { return s.Set("ns", "reviews", "v1") }, false},
	}
	for _, st := range steps {
		must(t, st.set())
		select {
		case <-s.Changed():
			if !st.signals {
				t.Errorf("%s: signalled a change", st.what)
			}
		default:
			if st.signals {
				t.Errorf("%s: no change signalled", st.what)
			}
		}
	}
	if got, _ := s.Endpoints("ns", "reviews", "v1"); len(got) != 0 {
		t.Errorf("removed revision has %v", got)
	}
}

// Put changes what Set changes, says whether it did, and signals nothing.
func TestStaticPut(t *testing.T) {
	t.Parallel()
	s := NewStatic()
	steps := []struct {
		addrs   []string
		changed bool
	}{
		{[]string{"10.0.0.1:80"}, true},
		{[]string{"10.0.0.1:80"}, false},
		{[]string{"10.0.0.1:80", "10.0.0.2:80"}, true},
		{nil, true},
		{nil, false},
	}
	for i, st := range steps {
		changed, err := s.Put("ns", "reviews", "v1", st.addrs...)
		must(t, err)
		if changed != st.changed {
			t.Errorf("step %d: Put(%v) changed = %v, want %v", i, st.addrs, changed, st.changed)
		}
		got, _ := s.Endpoints("ns", "reviews", "v1")
		if len(got) != len(st.addrs) {
			t.Errorf("step %d: endpoints %v, want %v", i, got, st.addrs)
		}
	}
	select {
	case <-s.Changed():
		t.Error("Put signalled a change")
	default:
	}
	if _, err := s.Put("ns", "reviews", "v1", "reviews:80"); err == nil {
		t.Error("Put accepted a host name")
	}
}
