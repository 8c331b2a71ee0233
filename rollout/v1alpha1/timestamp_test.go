package v1alpha1

import (
	"encoding/json"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime/serializer/cbor/direct"
)

func TestTimestamp(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 2, 9, 0, 0, 912_345_678, time.UTC)
	cases := []struct {
		name string
		in   string
		want time.Time
	}{
		{"microseconds", `"2026-03-02T09:00:00.912345Z"`, at.Truncate(time.Microsecond)},
		{"whole seconds, as metav1.Time wrote it", `"2026-03-02T09:00:00Z"`, at.Truncate(time.Second)},
		{"nanoseconds are cut", `"2026-03-02T09:00:00.912345678Z"`, at.Truncate(time.Microsecond)},
		{"another zone", `"2026-03-02T10:00:00.5+01:00"`, time.Date(2026, 3, 2, 9, 0, 0, 5e8, time.UTC)},
		{"null", `null`, time.Time{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var ts Timestamp
			if err := json.Unmarshal([]byte(tc.in), &ts); err != nil {
				t.Fatal(err)
			}
			if !ts.Time.Equal(tc.want) {
				t.Errorf("%s: got %v, want %v", tc.in, ts.Time, tc.want)
			}
		})
	}
	for _, bad := range []string{`"yesterday"`, `"2026-03-02"`, `42`} {
		var ts Timestamp
		if err := json.Unmarshal([]byte(bad), &ts); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}

	ts := NewTimestamp(at)
	b, err := json.Marshal(struct {
		At *Timestamp `json:"at"`
	}{&ts})
	if err != nil || string(b) != `{"at":"2026-03-02T09:00:00.912345Z"}` {
		t.Fatalf("marshal: %s %v", b, err)
	}
	c, err := direct.Marshal(&ts)
	if err != nil {
		t.Fatal(err)
	}
	var back Timestamp
	if err := direct.Unmarshal(c, &back); err != nil || !back.Equal(&ts) {
		t.Fatalf("CBOR round trip: %v %v, want %v", back, err, ts)
	}
	later := NewTimestamp(at.Add(time.Microsecond))
	if !equality.Semantic.DeepEqual(ts, NewTimestamp(at.In(time.FixedZone("x", 3600)))) || equality.Semantic.DeepEqual(ts, later) {
		t.Error("semantic equality is not the instant's")
	}
}
