package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// AnalysisRun is one execution of the metrics of one or more
// AnalysisTemplates for a rollout, created when the engine starts a run and
// named after it. The templates' metrics and every argument value are copied
// into the spec at creation, so editing a template never changes a run in
// flight; the status records what a restarted controller needs to continue
// exactly where the run stopped. In standalone mode the same object is kept
// in the local state file.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=sluice
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AnalysisRun struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec AnalysisRunSpec `json:"spec"`
	// +optional
	Status AnalysisRunState `json:"status,omitempty"`
}

// AnalysisRunList is a list of AnalysisRuns.
//
// +kubebuilder:object:root=true
type AnalysisRunList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AnalysisRun `json:"items"`
}

// AnalysisRunSpec is what a run measures, fixed at creation.
type AnalysisRunSpec struct {
	// Templates the metrics were copied from, for the record.
	// +listType=atomic
	Templates []TemplateRef `json:"templates"`
	// Args holds the value of every argument the queries may use: the
	// built-ins, the Rollout's arguments and the templates' defaults.
	// +optional
	// +listType=map
	// +listMapKey=name
	Args []Argument `json:"args,omitempty"`
	// Metrics copied from the templates, in template order.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=128
	// +listType=map
	// +listMapKey=name
	Metrics []Metric `json:"metrics"`
	// Terminate stops the run: no more measurements are taken and the run
	// completes with what it has.
	// +optional
	Terminate bool `json:"terminate,omitempty"`
}

// AnalysisRunState is the recorded progress of an AnalysisRun. (The name
// AnalysisRunStatus is taken by the Rollout's summary of a run.)
type AnalysisRunState struct {
	// Phase is empty until the first step, then Running until final.
	// +optional
	Phase AnalysisPhase `json:"phase,omitempty"`
	// Message says why the run ended as it did or, while it runs, the
	// reason of the last measurement that was not Successful.
	// +optional
	Message string `json:"message,omitempty"`
	// StartedAt anchors the schedule: measurement k of a metric is taken
	// for the time StartedAt + initialDelay + k × interval.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`
	// Metrics in the order of spec.metrics.
	// +optional
	// +listType=map
	// +listMapKey=name
	Metrics []MetricResult `json:"metrics,omitempty"`
}

// MetricResult is the progress of one metric of a run: counters over every
// measurement, and the most recent measurements themselves.
type MetricResult struct {
	Name  string        `json:"name"`
	Phase AnalysisPhase `json:"phase"`
	// Counts of measurements by outcome. Their sum is the number of
	// measurements taken, which is also the index of the next one.
	// +optional
	Successful int32 `json:"successful,omitempty"`
	// +optional
	Failed int32 `json:"failed,omitempty"`
	// +optional
	Inconclusive int32 `json:"inconclusive,omitempty"`
	// +optional
	Error int32 `json:"error,omitempty"`
	// ConsecutiveErrors counts the Errors since the last other outcome.
	// +optional
	ConsecutiveErrors int32 `json:"consecutiveErrors,omitempty"`
	// LastValue is the last measured value as text.
	// +optional
	LastValue string `json:"lastValue,omitempty"`
	// Message is the reason of the last measurement that was not
	// Successful or, once the metric is final, why it ended so.
	// +optional
	Message string `json:"message,omitempty"`
	// Measurements are the most recent measurements, oldest first; older
	// ones survive only in the counters.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Measurements []Measurement `json:"measurements,omitempty"`
}

// Measurement is one judged measurement.
type Measurement struct {
	// Index counts the metric's measurements from 0.
	Index int32 `json:"index"`
	// Phase is Successful, Failed, Inconclusive or Error.
	Phase AnalysisPhase `json:"phase"`
	// At is the time the query was evaluated for (its schedule slot).
	At metav1.Time `json:"at"`
	// Value is the measured value as text.
	// +optional
	Value string `json:"value,omitempty"`
	// Message says why the measurement was not Successful.
	// +optional
	Message string `json:"message,omitempty"`
}

// The kind registers itself here rather than in groupversion_info.go so that
// everything about it stays in this file.
func init() {
	SchemeBuilder.Register(func(s *runtime.Scheme) error {
		s.AddKnownTypes(GroupVersion, &AnalysisRun{}, &AnalysisRunList{})
		return nil
	})
}
