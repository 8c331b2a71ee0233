package controller

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

func TestCommandRoundTrip(t *testing.T) {
	c, err := NewCommand(v1alpha1.CommandPromoteFull, "alice@example.com", time.Date(2026, 5, 1, 12, 0, 0, 500, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseCommand(s)
	if err != nil {
		t.Fatalf("ParseCommand(%s): %v", s, err)
	}
	if got != c {
		t.Fatalf("round trip: got %+v, want %+v", got, c)
	}
	p, err := CommandPatch(c)
	if err != nil {
		t.Fatal(err)
	}
	var patch struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(p, &patch); err != nil || patch.Metadata.Annotations[CommandAnnotation] != s {
		t.Fatalf("CommandPatch = %s (%v): want the annotation only", p, err)
	}
}

func TestParseCommandRefuses(t *testing.T) {
	for _, tc := range []struct{ name, value, want string }{
		{"not json", `promote`, "invalid character"},
		{"unknown field", `{"id":"a","kind":"Promote","force":true}`, "unknown field"},
		{"no id", `{"kind":"Promote"}`, "command id"},
		{"bad id", `{"id":"a b","kind":"Promote"}`, "command id"},
		{"unknown kind", `{"id":"a","kind":"Rollback"}`, "command kind"},
		{"trailing", `{"id":"a","kind":"Promote"} {}`, "trailing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCommand(tc.value)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseCommand(%s) = %v, want an error containing %q", tc.value, err, tc.want)
			}
		})
	}
}

func TestCommandOf(t *testing.T) {
	ro := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{}}}
	if _, err := commandOf(ro); err != errNoCommand {
		t.Fatalf("no annotation: %v, want errNoCommand", err)
	}
	ro.Annotations[CommandAnnotation] = `{"id":"x1","kind":"Abort","by":"bob","at":"2026-05-01T12:00:00Z"}`
	c, err := commandOf(ro)
	if err != nil || c.engineCommand().ID != "x1" || c.engineCommand().By != "bob" || c.Kind != v1alpha1.CommandAbort {
		t.Fatalf("commandOf = %+v, %v", c, err)
	}
}
