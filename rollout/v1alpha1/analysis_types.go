package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AnalysisTemplate describes measurements that judge a revision: templated
// PromQL queries taken at an interval and judged by CEL conditions.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:categories=sluice
// +kubebuilder:printcolumn:name="Metrics",type=string,JSONPath=`.spec.metrics[*].name`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AnalysisTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec AnalysisTemplateSpec `json:"spec"`
}

// AnalysisTemplateList is a list of AnalysisTemplates.
//
// +kubebuilder:object:root=true
type AnalysisTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AnalysisTemplate `json:"items"`
}

// AnalysisTemplateSpec is the body of an AnalysisTemplate.
type AnalysisTemplateSpec struct {
	// Args the template accepts. Every run also gets rollout, namespace,
	// service, host, stableRevision and canaryRevision.
	// +optional
	// +listType=map
	// +listMapKey=name
	Args []ArgumentSpec `json:"args,omitempty"`
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +listType=map
	// +listMapKey=name
	Metrics []Metric `json:"metrics"`
}

// ArgumentSpec declares an argument, optionally with a default value.
type ArgumentSpec struct {
	// +kubebuilder:validation:Pattern=`^[a-zA-Z_][a-zA-Z0-9_]*$`
	Name string `json:"name"`
	// Value is the default; an argument without one must be supplied.
	// +optional
	Value *string `json:"value,omitempty"`
}

// Metric is one measured quantity and how it is judged: by CEL conditions
// over the query's result, or, with compare, by comparing the canary with
// the stable revision.
// +kubebuilder:validation:XValidation:rule="has(self.successCondition) || has(self.failureCondition) || has(self.compare)",message="at least one of successCondition or failureCondition must be set, or compare"
// +kubebuilder:validation:XValidation:rule="!has(self.compare) || !(has(self.successCondition) || has(self.failureCondition))",message="compare judges on its own: successCondition and failureCondition must not be set with it"
type Metric struct {
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// Interval between measurements. Default 1m.
	// +optional
	// +kubebuilder:validation:Format=duration
	Interval *metav1.Duration `json:"interval,omitempty"`
	// Count of measurements; absent means until the run is stopped.
	// +kubebuilder:validation:Minimum=1
	// +optional
	Count *int32 `json:"count,omitempty"`
	// InitialDelay before the first measurement.
	// +optional
	// +kubebuilder:validation:Format=duration
	InitialDelay *metav1.Duration `json:"initialDelay,omitempty"`
	// SuccessCondition is a CEL expression over `result`, e.g.
	// `result[0] >= 0.99` or `all(result, x, x < 0.05)`.
	// +optional
	SuccessCondition string `json:"successCondition,omitempty"`
	// FailureCondition is a CEL expression over `result`.
	// +optional
	FailureCondition string `json:"failureCondition,omitempty"`
	// FailureLimit is how many Failed measurements are tolerated. Default 0.
	// +kubebuilder:validation:Minimum=0
	// +optional
	FailureLimit *int32 `json:"failureLimit,omitempty"`
	// InconclusiveLimit is how many Inconclusive measurements are tolerated.
	// Default 0.
	// +kubebuilder:validation:Minimum=0
	// +optional
	InconclusiveLimit *int32 `json:"inconclusiveLimit,omitempty"`
	// ConsecutiveErrorLimit is how many Errors in a row are tolerated.
	// Default 4.
	// +kubebuilder:validation:Minimum=0
	// +optional
	ConsecutiveErrorLimit *int32 `json:"consecutiveErrorLimit,omitempty"`
	// DryRun metrics are measured and recorded but never decide the run.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`
	// Compare makes this a compare metric: the query is run for the stable
	// and the canary revision over the same window and the two samples are
	// judged with a Mann-Whitney U test, so no fixed threshold is needed.
	// The query tells the two apart with {{args.revision}} or
	// {{args.subset}}.
	// +optional
	Compare *MetricCompare `json:"compare,omitempty"`
	// Provider is where the measurements come from.
	Provider MetricProvider `json:"provider"`
}

// MetricProvider is a source of measurements.
// +kubebuilder:validation:XValidation:rule="has(self.prometheus)",message="a provider is required: prometheus"
type MetricProvider struct {
	Prometheus *PrometheusProvider `json:"prometheus,omitempty"`
}

// PrometheusProvider queries a Prometheus server over its HTTP API: one
// the operator configured (name, or neither name nor address: the one
// named "default"), which brings its own credentials, TLS settings and
// headers; or, where the operator allows template addresses, a server of
// the template's own (address), reached with credentials from Secrets in
// the template's namespace only. docs/analysis.md, "Providers".
// +kubebuilder:validation:XValidation:rule="!has(self.name) || !has(self.address)",message="name and address exclude each other: name a provider of the operator's configuration, or give the template's own address"
// +kubebuilder:validation:XValidation:rule="has(self.address) || !(has(self.auth) || has(self.tls) || (has(self.headers) && size(self.headers) > 0) || (has(self.insecureSkipVerify) && self.insecureSkipVerify))",message="auth, tls, headers and insecureSkipVerify describe the template's own server and need address; a named provider (or the default) takes them from the operator's configuration"
type PrometheusProvider struct {
	// Name of a provider in the operator's configuration
	// (prometheus.providers). Absent, and without address: the provider
	// named "default".
	// +optional
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name,omitempty"`
	// Address of a server of the template's own, e.g.
	// http://prometheus:9090; refused unless the operator allows template
	// addresses (prometheus.allowTemplateAddresses). It never receives a
	// credential of the operator's configuration.
	// +optional
	Address string `json:"address,omitempty"`
	// Query in PromQL with {{args.NAME}} placeholders; argument values are
	// escaped so they can never change the structure of the query.
	// +kubebuilder:validation:MinLength=1
	Query string `json:"query"`
	// Timeout of one query. Default 30s.
	// +optional
	// +kubebuilder:validation:Format=duration
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// Auth is credentials read from a Secret in the template's namespace,
	// for the template's own address.
	// +optional
	Auth *PrometheusAuth `json:"auth,omitempty"`
	// Headers added to every request to the template's own address.
	// +optional
	// +listType=map
	// +listMapKey=name
	Headers []HTTPHeader `json:"headers,omitempty"`
	// InsecureSkipVerify disables TLS certificate checks. Avoid.
	// +optional
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
	// TLS sets the certificate authorities to trust and a client
	// certificate for mutual TLS.
	// +optional
	TLS *PrometheusTLS `json:"tls,omitempty"`
}

// PrometheusTLS holds TLS settings; the PEM data is read from Secret keys in
// the template's namespace.
// +kubebuilder:validation:XValidation:rule="has(self.cert) == has(self.key)",message="cert and key must be set together"
type PrometheusTLS struct {
	// CA is a PEM bundle of the authorities that sign the server's
	// certificate; absent: the system's roots.
	// +optional
	CA *SecretKeyRef `json:"ca,omitempty"`
	// Cert and Key are the PEM client certificate and key for mutual TLS;
	// set both or neither.
	// +optional
	Cert *SecretKeyRef `json:"cert,omitempty"`
	// +optional
	Key *SecretKeyRef `json:"key,omitempty"`
	// ServerName is the name expected in the server's certificate, when it
	// differs from the address's host.
	// +optional
	ServerName string `json:"serverName,omitempty"`
}

// CompareDirection says which difference between canary and stable is bad.
// +kubebuilder:validation:Enum=Increase;Decrease;Either
type CompareDirection string

const (
	// CompareIncrease: a canary higher than stable fails (error rates,
	// latencies). The default.
	CompareIncrease CompareDirection = "Increase"
	// CompareDecrease: a canary lower than stable fails (success rates,
	// throughput).
	CompareDecrease CompareDirection = "Decrease"
	// CompareEither: any significant difference fails.
	CompareEither CompareDirection = "Either"
)

// MetricCompare judges the canary against the stable revision with a
// Mann-Whitney U test, as Kayenta does. Each measurement evaluates the query
// as a range query over Window (one sample every Step) once with
// {{args.revision}} = stableRevision and {{args.subset}} = stable, once with
// the canary's, and fails when the canary differs significantly, at
// Confidence, in Direction.
type MetricCompare struct {
	// Window of samples on each side, ending at the measurement. Default 5m.
	// +optional
	// +kubebuilder:validation:Format=duration
	Window *metav1.Duration `json:"window,omitempty"`
	// Step between samples in the window. Default 15s.
	// +optional
	// +kubebuilder:validation:Format=duration
	Step *metav1.Duration `json:"step,omitempty"`
	// Confidence of the test as a decimal fraction, e.g. "0.95" (the
	// default) or "0.99": a difference fails when the chance of seeing it
	// with equal distributions is below 1 - Confidence.
	// +optional
	// +kubebuilder:validation:Pattern=`^0\.[0-9]{1,4}$`
	Confidence string `json:"confidence,omitempty"`
	// Direction that fails. Default Increase.
	// +optional
	Direction CompareDirection `json:"direction,omitempty"`
}

// PrometheusAuth names the Secret keys holding credentials.
type PrometheusAuth struct {
	// BearerToken is read from this Secret key.
	// +optional
	BearerToken *SecretKeyRef `json:"bearerToken,omitempty"`
	// BasicUsername and BasicPassword are read from these Secret keys.
	// +optional
	BasicUsername *SecretKeyRef `json:"basicUsername,omitempty"`
	// +optional
	BasicPassword *SecretKeyRef `json:"basicPassword,omitempty"`
}

// SecretKeyRef names a key of a Secret.
type SecretKeyRef struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`
}

// HTTPHeader is a header sent with every query.
type HTTPHeader struct {
	// +kubebuilder:validation:MinLength=1
	Name  string `json:"name"`
	Value string `json:"value"`
}
