package v1alpha1

import (
	"encoding/json"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer/cbor/direct"
)

// Semantic equality (status patches compare with it) cannot look inside a
// time.Time and panics on its unexported fields; it is told how to compare
// a Timestamp, as apimachinery does for metav1.Time.
func init() {
	if err := equality.Semantic.AddFunc(func(a, b Timestamp) bool { return a.Time.Equal(b.Time) }); err != nil {
		panic(err)
	}
}

// Timestamp is a point in time kept to the microsecond in JSON (RFC 3339,
// as metav1.MicroTime writes it). Unlike metav1.MicroTime it also reads the
// whole-second form metav1.Time writes, so a status written by an older
// Sluice, whose field was a metav1.Time, still decodes.
//
// +kubebuilder:validation:Type=string
// +kubebuilder:validation:Format=date-time
// +kubebuilder:object:generate=false
type Timestamp struct {
	time.Time `json:"-"`
}

// NewTimestamp returns t cut to the microsecond, the precision it keeps in
// JSON, so a value and its decoded copy are equal.
func NewTimestamp(t time.Time) Timestamp {
	return Timestamp{Time: t.Truncate(time.Microsecond)}
}

const timestampLayout = "2006-01-02T15:04:05.000000Z07:00"

// MarshalJSON writes RFC 3339 with microseconds, in UTC.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(t.UTC().Format(timestampLayout))
}

// UnmarshalJSON reads RFC 3339 with or without a fraction of a second.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		t.Time = time.Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	// time.RFC3339 accepts a fraction when parsing.
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	t.Time = v.Truncate(time.Microsecond).Local()
	return nil
}

// MarshalCBOR writes what metav1.MicroTime writes.
func (t Timestamp) MarshalCBOR() ([]byte, error) {
	return metav1.NewMicroTime(t.Time).MarshalCBOR()
}

// UnmarshalCBOR reads RFC 3339 with or without a fraction of a second.
func (t *Timestamp) UnmarshalCBOR(b []byte) error {
	var s *string
	if err := direct.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	if s == nil {
		t.Time = time.Time{}
		return nil
	}
	v, err := time.Parse(time.RFC3339, *s)
	if err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	t.Time = v.Truncate(time.Microsecond).Local()
	return nil
}

// Equal reports whether t and u are the same instant; two nil timestamps
// are equal.
func (t *Timestamp) Equal(u *Timestamp) bool {
	if t == nil || u == nil {
		return t == u
	}
	return t.Time.Equal(u.Time)
}

// DeepCopyInto copies t into out.
func (t *Timestamp) DeepCopyInto(out *Timestamp) { *out = *t }

// DeepCopy returns a copy of t.
func (t *Timestamp) DeepCopy() *Timestamp {
	if t == nil {
		return nil
	}
	out := *t
	return &out
}
