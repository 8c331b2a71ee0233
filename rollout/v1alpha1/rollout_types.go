package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The short name is sro, not ro: Argo Rollouts' Rollout has ro, and both
// may be installed in one cluster while moving from one to the other.

// Rollout shifts the traffic of one service from its stable revision to a new
// one, step by step, gated by analysis. A spec whose revision differs from
// status.stableRevision starts a rollout.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sro,categories=sluice
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Step",type=string,JSONPath=`.status.stepDisplay`
// +kubebuilder:printcolumn:name="Weight",type=integer,JSONPath=`.status.traffic.canaryWeight`
// +kubebuilder:printcolumn:name="Stable",type=string,JSONPath=`.status.stableRevision`
// +kubebuilder:printcolumn:name="Stable Ready",type=string,JSONPath=`.status.stableReplicas.display`
// +kubebuilder:printcolumn:name="Canary",type=string,JSONPath=`.status.canaryRevision`
// +kubebuilder:printcolumn:name="Canary Ready",type=string,JSONPath=`.status.canaryReplicas.display`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Git Applied",type=string,JSONPath=`.status.gitSync.appliedCommit`,priority=1
// +kubebuilder:printcolumn:name="Git Rejected",type=string,JSONPath=`.status.gitSync.rejected.commit`,priority=1
type Rollout struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RolloutSpec   `json:"spec"`
	Status RolloutStatus `json:"status,omitempty"`
}

// RolloutList is a list of Rollouts.
//
// +kubebuilder:object:root=true
type RolloutList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Rollout `json:"items"`
}

// RolloutSpec is the desired state of a Rollout.
//
// +kubebuilder:validation:XValidation:rule="has(self.template) != has(self.backend)",message="exactly one of template (controller mode) or backend (standalone mode) must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.template) || has(self.replicas)",message="replicas is required with template"
// +kubebuilder:validation:XValidation:rule="!has(self.backend) || !has(self.replicas)",message="replicas applies to template (controller mode), not backend"
type RolloutSpec struct {
	// Service names the traffic being shifted and how to reach it.
	Service ServiceSpec `json:"service"`

	// Replicas of the workload at full scale (controller mode).
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Template is the pod template of the revision to run (controller mode).
	// Its hash is the revision name.
	// +optional
	Template *corev1.PodTemplateSpec `json:"template,omitempty"`

	// Backend is the revision to run in standalone mode: a named version and
	// its endpoints.
	// +optional
	Backend *Backend `json:"backend,omitempty"`

	// Strategy says how traffic moves to a new revision.
	Strategy Strategy `json:"strategy"`

	// Analysis runs in the background for the whole rollout; a Failed run
	// aborts it.
	// +optional
	Analysis *BackgroundAnalysis `json:"analysis,omitempty"`

	// Windows allow or deny step advancement by schedule. With no allow
	// window, advancement is allowed except inside deny windows. Aborts are
	// never held by a window.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Windows []DeploymentWindow `json:"windows,omitempty"`

	// Rollback is what Sluice does on its own when something goes wrong.
	// +kubebuilder:default={}
	// +optional
	Rollback RollbackPolicy `json:"rollback,omitempty"`

	// ProgressDeadlineSeconds bounds how long a step may wait for the data
	// plane to acknowledge it or for the workload to become ready; past it
	// the rollout aborts. Pauses and analysis are bounded by their own
	// settings.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=600
	// +optional
	ProgressDeadlineSeconds *int32 `json:"progressDeadlineSeconds,omitempty"`

	// ScaleDownDelaySeconds keeps the previous stable revision running this
	// long after promotion, for clients that have not yet seen the switch.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=30
	// +optional
	ScaleDownDelaySeconds *int32 `json:"scaleDownDelaySeconds,omitempty"`

	// Paused holds the rollout at its current step.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// DataPlane says what a step does about proxies that stay silent.
	// +kubebuilder:default={}
	// +optional
	DataPlane DataPlanePolicy `json:"dataPlane,omitempty"`
}

// SilentProxyPolicy is what a step does about stale proxies.
// +kubebuilder:validation:Enum=Hold;Exclude
type SilentProxyPolicy string

const (
	// SilentHold: a stale proxy keeps the step waiting (and reported) until
	// it answers, goes away, or the progress deadline aborts the rollout.
	SilentHold SilentProxyPolicy = "Hold"
	// SilentExclude: a step counts as acknowledged when every proxy that
	// is not stale has applied it and at least one has.
	SilentExclude SilentProxyPolicy = "Exclude"
)

// DataPlanePolicy bounds how long a step waits for each proxy.
type DataPlanePolicy struct {
	// AckDeadlineSeconds: a data-plane node (an xDS proxy, or a Gateway API
	// gateway answering a route write) that has neither ACKed nor NACKed a
	// plan version this long after it was sent is stale; it is reported in
	// status.traffic.staleNodes, an Event and a metric.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=30
	// +optional
	AckDeadlineSeconds *int32 `json:"ackDeadlineSeconds,omitempty"`
	// SilentProxies: Hold (the default: a step never counts without every
	// proxy) or Exclude (stale proxies are left out of the count).
	// +kubebuilder:default=Hold
	// +optional
	SilentProxies SilentProxyPolicy `json:"silentProxies,omitempty"`
}

// StaleNodesStatus reports the data-plane nodes (xDS proxies, gateways)
// that have not answered the plan
// in force within spec.dataPlane.ackDeadlineSeconds.
type StaleNodesStatus struct {
	// Count of stale nodes.
	Count int32 `json:"count"`
	// Nodes are the first few node ids, oldest silence first; node ids are
	// the proxies' own words, bounded and escaped.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=5
	Nodes []string `json:"nodes,omitempty"`
	// Excluded is true when the step went on without them (Exclude).
	// +optional
	Excluded bool `json:"excluded,omitempty"`
}

// ReasonStaleProxies is the Progressing reason while stale proxies hold
// a step, and the Event when nodes become stale.
const ReasonStaleProxies = "StaleProxies"

// ServiceSpec is the service whose traffic is shifted.
type ServiceSpec struct {
	// Name of the service; subsets, clusters and ReplicaSets are named
	// after it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// Hosts the routing applies to: VirtualService hosts, Envoy virtual host
	// domains, and the xds:/// target names of proxyless gRPC clients.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=atomic
	Hosts []string `json:"hosts"`

	// Port the service listens on.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`

	// VirtualService names an existing Istio VirtualService and the HTTP
	// routes in it that Sluice manages. Other routes are left as declared.
	// +optional
	VirtualService *VirtualServiceRef `json:"virtualService,omitempty"`

	// DestinationRule names an existing Istio DestinationRule whose
	// stable/canary subsets Sluice manages.
	// +optional
	DestinationRule *ObjectRef `json:"destinationRule,omitempty"`

	// Policy is carried onto every route Sluice writes for this service.
	// +optional
	Policy *RoutePolicy `json:"policy,omitempty"`

	// SessionAffinity pins each session (a header or cookie value) to one
	// revision during the rollout; a session moves only from stable to
	// canary.
	// +optional
	SessionAffinity *SessionAffinity `json:"sessionAffinity,omitempty"`

	// Routers write the traffic plan into routing objects in controller
	// mode; all of them get the same plan. Absent: Istio alone (the
	// VirtualService and DestinationRule above). Sluice's own xDS serves
	// the plan in both modes whatever the routers.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	Routers []Router `json:"routers,omitempty"`
}

// Router is exactly one way of writing the plan.
// +kubebuilder:validation:XValidation:rule="[has(self.istio), has(self.httpRoute), has(self.grpcRoute), has(self.replicas)].filter(x, x).size() == 1",message="a router must set exactly one of istio, httpRoute, grpcRoute or replicas"
type Router struct {
	// Istio writes a VirtualService and a DestinationRule, as
	// spec.service.virtualService and destinationRule say.
	// +optional
	Istio *IstioRouter `json:"istio,omitempty"`
	// HTTPRoute changes the named rules of a Gateway API HTTPRoute.
	// +optional
	HTTPRoute *GatewayRouteRef `json:"httpRoute,omitempty"`
	// GRPCRoute changes the named rules of a Gateway API GRPCRoute.
	// +optional
	GRPCRoute *GatewayRouteRef `json:"grpcRoute,omitempty"`
	// Replicas is no router at all: one Service selects both revisions and
	// the canary weight is approximated by replica counts.
	// +optional
	Replicas *ReplicasRouter `json:"replicas,omitempty"`
}

// IstioRouter has no settings of its own yet: the Istio objects are named
// by spec.service.virtualService and destinationRule.
type IstioRouter struct{}

// ReplicasRouter has no settings: the achievable weight follows from
// spec.replicas.
type ReplicasRouter struct{}

// GatewayRouteRef names a Gateway API route in the Rollout's namespace and
// the rules of it that Sluice manages. Every other rule, filter, timeout,
// hostname and parentRef stays as written.
type GatewayRouteRef struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Rules Sluice manages. Empty: the route's only rule (an error when
	// it has several).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Rules []GatewayRuleRef `json:"rules,omitempty"`
	// Create lets Sluice create (and own) the route when it does not
	// exist, attached to these parents; without it a missing route is an
	// error and nothing is created behind the user's back.
	// +optional
	Create *GatewayRouteCreate `json:"create,omitempty"`
}

// GatewayRuleRef picks a rule by its name or, for an unnamed rule, its
// index.
// +kubebuilder:validation:XValidation:rule="has(self.name) != has(self.index)",message="exactly one of name or index must be set"
type GatewayRuleRef struct {
	// Name is the rule's name field.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`
	// Index of the rule in spec.rules, from 0.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Index *int32 `json:"index,omitempty"`
}

// GatewayRouteCreate is what a route Sluice creates is attached to.
type GatewayRouteCreate struct {
	// ParentRefs of the created route, as in the Gateway API
	// (group/kind default to a Gateway; for GAMMA, the Service).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	ParentRefs []GatewayParentRef `json:"parentRefs"`
	// Hostnames of the created route.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Hostnames []string `json:"hostnames,omitempty"`
}

// GatewayParentRef is the part of a Gateway API parentRef Sluice needs.
type GatewayParentRef struct {
	// +optional
	Group string `json:"group,omitempty"`
	// +optional
	Kind string `json:"kind,omitempty"`
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +optional
	SectionName string `json:"sectionName,omitempty"`
	// +optional
	Port *int32 `json:"port,omitempty"`
}

// ObjectRef names an object in the Rollout's namespace.
type ObjectRef struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// VirtualServiceRef names a VirtualService and the routes Sluice manages in it.
type VirtualServiceRef struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Routes are the names of the HTTP routes Sluice manages. Empty means
	// the single unnamed HTTP route.
	// +optional
	// +listType=atomic
	Routes []string `json:"routes,omitempty"`
}

// Backend is a revision in standalone mode.
type Backend struct {
	// Version names the revision, e.g. "v2".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9]([-._a-zA-Z0-9]*[a-zA-Z0-9])?$`
	Version string `json:"version"`
	// Endpoints are host:port addresses serving this version.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=261
	// +listType=atomic
	Endpoints []string `json:"endpoints"`
	// Labels are attached to the endpoints (locality, zone, ...).
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
}

// RoutePolicy is the per-route behaviour the user sets: timeout, retries and
// fault injection, for the whole service and per matching request.
type RoutePolicy struct {
	// Timeout of a request, e.g. "2s".
	// +optional
	// +kubebuilder:validation:Format=duration
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// +optional
	Retries *RetryPolicy `json:"retries,omitempty"`
	// +optional
	Fault *FaultPolicy `json:"fault,omitempty"`
	// Rules give the requests they match a timeout, retries and fault of
	// their own; the first rule that matches applies, and what it leaves
	// unset comes from the fields above. Matching requests still go
	// wherever the rollout sends them.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=8
	Rules []PolicyRule `json:"rules,omitempty"`
}

// PolicyRule is a policy for the requests that match it.
type PolicyRule struct {
	// Name of the rule; the routes written for it are named after it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
	// Match selects the requests; any one of the matches suffices.
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	Match []RouteMatch `json:"match"`
	// +optional
	// +kubebuilder:validation:Format=duration
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// +optional
	Retries *RetryPolicy `json:"retries,omitempty"`
	// Fault of the rule; its own match, if any, is not allowed (the
	// rule's applies).
	// +optional
	Fault *FaultPolicy `json:"fault,omitempty"`
}

// RetryPolicy retries failed requests.
type RetryPolicy struct {
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10
	Attempts int32 `json:"attempts"`
	// +optional
	// +kubebuilder:validation:Format=duration
	PerTryTimeout *metav1.Duration `json:"perTryTimeout,omitempty"`
	// RetryOn is the comma-separated list of conditions, as in Envoy's
	// x-envoy-retry-on (e.g. "5xx,reset,connect-failure").
	// +optional
	RetryOn string `json:"retryOn,omitempty"`
}

// FaultPolicy injects faults, optionally only into requests that match.
type FaultPolicy struct {
	// +optional
	Abort *FaultAbort `json:"abort,omitempty"`
	// +optional
	Delay *FaultDelay `json:"delay,omitempty"`
	// Match limits the fault to matching requests; they get a route of
	// their own ahead of the others.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	Match []RouteMatch `json:"match,omitempty"`
}

// FaultAbort answers a share of requests with an error status. With both
// statuses set, HTTP callers get httpStatus and proxyless gRPC clients
// grpcStatus; with one, every caller gets it (gRPC maps an HTTP status to a
// code, see docs/api.md).
// +kubebuilder:validation:XValidation:rule="has(self.httpStatus) || has(self.grpcStatus)",message="set httpStatus, grpcStatus or both"
type FaultAbort struct {
	// +kubebuilder:validation:Minimum=200
	// +kubebuilder:validation:Maximum=599
	// +optional
	HTTPStatus *int32 `json:"httpStatus,omitempty"`
	// GRPCStatus is a gRPC status code number (e.g. 14 for UNAVAILABLE).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=16
	// +optional
	GRPCStatus *int32 `json:"grpcStatus,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Percent int32 `json:"percent"`
}

// FaultDelay delays a share of requests.
type FaultDelay struct {
	// +kubebuilder:validation:Format=duration
	FixedDelay metav1.Duration `json:"fixedDelay"`
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Percent int32 `json:"percent"`
}

// SessionAffinity pins each session to one revision while the canary
// weight holds, and moves sessions only from stable to canary when it rises:
// a user who saw the canary keeps seeing it until promotion or abort (abort
// moves everyone back to stable). The session key is a request header the
// client sends (a user id, a session id) or a cookie.
//
// Through Sluice's xDS (Envoy and proxyless gRPC) the weighted route goes to
// one consistent-hash cluster holding both revisions' endpoints, weighted
// in the split's ratio; see docs/api.md for what each data plane gives.
// +kubebuilder:validation:XValidation:rule="has(self.cookie) != has(self.header)",message="exactly one of cookie or header must be set"
type SessionAffinity struct {
	// +optional
	Cookie *CookieAffinity `json:"cookie,omitempty"`
	// +optional
	Header *HeaderAffinity `json:"header,omitempty"`
}

// DefaultAffinityCookie is the cookie name of cookie affinity when the
// spec gives none.
const DefaultAffinityCookie = "sluice-canary"

// CookieAffinity keys sessions by a cookie. Envoy creates the cookie on the
// first response when the request has none; through an Istio
// VirtualService the canary sets it to its revision.
type CookieAffinity struct {
	// +kubebuilder:validation:Pattern=`^[!#$%&'*+\-.^_|~0-9A-Za-z]+$`
	// +kubebuilder:default=sluice-canary
	// +optional
	Name string `json:"name,omitempty"`
	// MaxAge of a cookie Sluice's proxies create; absent means a session
	// cookie.
	// +optional
	// +kubebuilder:validation:Format=duration
	MaxAge *metav1.Duration `json:"maxAge,omitempty"`
}

// HeaderAffinity keys sessions by the value of a request header.
type HeaderAffinity struct {
	// Name of the header, lower case (gRPC metadata keys are).
	// +kubebuilder:validation:Pattern=`^[a-z0-9][-a-z0-9_.]*$`
	Name string `json:"name"`
}

// RouteMatch matches a request; all of its conditions must hold.
type RouteMatch struct {
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Headers []HeaderMatch `json:"headers,omitempty"`
	// +optional
	URI *URIMatch `json:"uri,omitempty"`
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Cookies []CookieMatch `json:"cookies,omitempty"`
}

// HeaderMatch matches one header. Exactly one of exact, prefix, regex or
// present is set.
// +kubebuilder:validation:XValidation:rule="[has(self.exact), has(self.prefix), has(self.regex), has(self.present)].filter(x, x).size() == 1",message="exactly one of exact, prefix, regex or present must be set"
type HeaderMatch struct {
	// Name of the header, lower case.
	// +kubebuilder:validation:Pattern=`^:?[a-z0-9][-a-z0-9_.]*$`
	Name string `json:"name"`
	// +optional
	Exact *string `json:"exact,omitempty"`
	// +optional
	Prefix *string `json:"prefix,omitempty"`
	// Regex in RE2 syntax, matched against the whole value.
	// +optional
	Regex *string `json:"regex,omitempty"`
	// +optional
	Present *bool `json:"present,omitempty"`
}

// URIMatch matches the request path.
// +kubebuilder:validation:XValidation:rule="has(self.exact) != has(self.prefix)",message="exactly one of exact or prefix must be set"
type URIMatch struct {
	// +optional
	Exact *string `json:"exact,omitempty"`
	// +optional
	Prefix *string `json:"prefix,omitempty"`
}

// CookieMatch matches a cookie by exact value.
type CookieMatch struct {
	// +kubebuilder:validation:Pattern=`^[!#$%&'*+\-.^_|~0-9A-Za-z]+$`
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Strategy is exactly one of canary, blueGreen or darkRelease.
// +kubebuilder:validation:XValidation:rule="[has(self.canary), has(self.blueGreen), has(self.darkRelease)].filter(x, x).size() == 1",message="exactly one of canary, blueGreen or darkRelease must be set"
type Strategy struct {
	// +optional
	Canary *CanaryStrategy `json:"canary,omitempty"`
	// +optional
	BlueGreen *BlueGreenStrategy `json:"blueGreen,omitempty"`
	// +optional
	DarkRelease *DarkReleaseStrategy `json:"darkRelease,omitempty"`
}

// CanaryStrategy moves traffic by ordered steps. After the last step the new
// revision is promoted to 100%.
type CanaryStrategy struct {
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Steps []CanaryStep `json:"steps,omitempty"`
}

// CanaryStep is exactly one action.
// +kubebuilder:validation:XValidation:rule="[has(self.setWeight), has(self.pause), has(self.analysis), has(self.setHeaderRoute), has(self.setMirror), has(self.setRevision)].filter(x, x).size() == 1",message="a step must set exactly one of setWeight, pause, analysis, setHeaderRoute, setMirror or setRevision"
type CanaryStep struct {
	// SetWeight sends this percentage of the default route to the canary.
	// The step completes when every proxy has acknowledged the change.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	SetWeight *int32 `json:"setWeight,omitempty"`
	// Pause waits for a duration counted from acknowledgement of the
	// current traffic, or for promote when no duration is set.
	// +optional
	Pause *PauseStep `json:"pause,omitempty"`
	// Analysis waits until an analysis run over the templates succeeds.
	// +optional
	Analysis *AnalysisStep `json:"analysis,omitempty"`
	// SetHeaderRoute sends matching requests to the canary; with no match
	// it removes the named route.
	// +optional
	SetHeaderRoute *HeaderRouteStep `json:"setHeaderRoute,omitempty"`
	// SetMirror copies a share of the default route's requests to the
	// canary; 0 removes the mirror.
	// +optional
	SetMirror *MirrorStep `json:"setMirror,omitempty"`
	// SetRevision starts or changes an extra revision running next to
	// stable and canary (an experiment, a baseline, a pinned version);
	// with only a name it stops it.
	// +optional
	SetRevision *RevisionStep `json:"setRevision,omitempty"`
}

// RevisionStep runs a named extra revision: it receives a share of the
// default route and/or the requests that match, until a later step stops
// it, its duration ends, or the rollout ends (promotion or abort stop it).
type RevisionStep struct {
	// Name of the extra revision: its subset, its route ("revision-<name>")
	// and the analysis arguments "revision_<name>" and "subset_<name>".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=30
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
	// Backend serves the revision in standalone mode. Its version is the
	// revision and must differ from stable's, the canary's and the other
	// extra revisions'.
	// +optional
	Backend *Backend `json:"backend,omitempty"`
	// Template builds the revision in controller mode from the stable or
	// canary pod template.
	// +optional
	Template *RevisionTemplate `json:"template,omitempty"`
	// Replicas of the revision in controller mode; default 1.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Replicas *int32 `json:"replicas,omitempty"`
	// Weight is the revision's share of the default route; stable gets
	// what the canary and the extra revisions leave.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Weight int32 `json:"weight,omitempty"`
	// Match sends matching requests to the revision, ahead of the
	// weighted route.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	Match []RouteMatch `json:"match,omitempty"`
	// Duration after which the revision stops, counted from the
	// acknowledgement of the step that started (or last changed) it.
	// +optional
	// +kubebuilder:validation:Format=duration
	Duration *metav1.Duration `json:"duration,omitempty"`
}

// RevisionSource is the pod template an extra revision starts from.
// +kubebuilder:validation:Enum=Stable;Canary
type RevisionSource string

const (
	RevisionFromStable RevisionSource = "Stable"
	RevisionFromCanary RevisionSource = "Canary"
)

// RevisionTemplate is a pod template derived from the stable or canary one:
// with no images it is a fresh copy (a baseline).
type RevisionTemplate struct {
	// From is the template the revision starts from.
	From RevisionSource `json:"from"`
	// Images replaces the image of the named containers.
	// +optional
	Images map[string]string `json:"images,omitempty"`
}

// PauseStep waits for a duration or for promote.
type PauseStep struct {
	// +optional
	// +kubebuilder:validation:Format=duration
	Duration *metav1.Duration `json:"duration,omitempty"`
}

// AnalysisStep names templates to run and the arguments to give them.
type AnalysisStep struct {
	// +kubebuilder:validation:MinItems=1
	// +listType=atomic
	Templates []TemplateRef `json:"templates"`
	// Baseline and Candidate are the subsets a comparison (and the
	// stableRevision/canaryRevision arguments) stand for: "stable",
	// "canary" or an extra revision's name. Defaults: stable and canary.
	// +optional
	Baseline string `json:"baseline,omitempty"`
	// +optional
	Candidate string `json:"candidate,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=name
	Args []Argument `json:"args,omitempty"`
}

// TemplateRef names an AnalysisTemplate in the Rollout's namespace.
type TemplateRef struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// Argument is a value passed to an analysis template.
type Argument struct {
	// +kubebuilder:validation:Pattern=`^[a-zA-Z_][a-zA-Z0-9_]*$`
	Name  string `json:"name"`
	Value string `json:"value"`
}

// HeaderRouteStep adds, replaces or (with no match) removes a named route to
// the canary.
type HeaderRouteStep struct {
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=40
	Name string `json:"name"`
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	Match []RouteMatch `json:"match,omitempty"`
}

// MirrorStep mirrors a share of requests to the canary.
type MirrorStep struct {
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Percent int32 `json:"percent"`
}

// BlueGreenStrategy runs the new revision at full scale behind a preview
// route, then switches all traffic at once.
type BlueGreenStrategy struct {
	// Preview is how testers reach the new revision before the switch.
	Preview PreviewSpec `json:"preview"`
	// PrePromotionAnalysis must succeed before the switch.
	// +optional
	PrePromotionAnalysis *AnalysisStep `json:"prePromotionAnalysis,omitempty"`
	// PostPromotionAnalysis runs after the switch; failure switches back.
	// +optional
	PostPromotionAnalysis *AnalysisStep `json:"postPromotionAnalysis,omitempty"`
	// AutoPromotionSeconds switches this long after the preview is live and
	// pre-promotion analysis passed. Absent: wait for promote.
	// +kubebuilder:validation:Minimum=0
	// +optional
	AutoPromotionSeconds *int32 `json:"autoPromotionSeconds,omitempty"`
}

// PreviewSpec routes preview traffic by request match, by extra hosts, or both.
// +kubebuilder:validation:XValidation:rule="(has(self.match) && size(self.match) > 0) || (has(self.hosts) && size(self.hosts) > 0)",message="preview needs match or hosts"
type PreviewSpec struct {
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	Match []RouteMatch `json:"match,omitempty"`
	// Hosts served only by the new revision, e.g. preview.example.com.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MaxLength=253
	Hosts []string `json:"hosts,omitempty"`
}

// DarkReleaseStrategy first sends only matching requests (by header or
// cookie) to the new revision, judges them, then promotes: through canary
// steps when given, or straight to 100%.
type DarkReleaseStrategy struct {
	// Match selects the requests that see the new revision.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	// +listType=atomic
	Match []RouteMatch `json:"match"`
	// Analysis judges the dark traffic; it must succeed before promotion.
	// +optional
	Analysis *AnalysisStep `json:"analysis,omitempty"`
	// Duration is the least time in the dark, counted from acknowledgement.
	// With neither duration nor analysis, promotion waits for promote.
	// +optional
	// +kubebuilder:validation:Format=duration
	Duration *metav1.Duration `json:"duration,omitempty"`
	// Steps are canary steps run after the dark phase. Empty: straight to 100%.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Steps []CanaryStep `json:"steps,omitempty"`
}

// BackgroundAnalysis runs for the whole rollout.
type BackgroundAnalysis struct {
	AnalysisStep `json:",inline"`
	// StartingStep delays the start to this canary step index.
	// +kubebuilder:validation:Minimum=0
	// +optional
	StartingStep *int32 `json:"startingStep,omitempty"`
}

// WindowKind allows or denies advancement.
// +kubebuilder:validation:Enum=Allow;Deny
type WindowKind string

const (
	WindowAllow WindowKind = "Allow"
	WindowDeny  WindowKind = "Deny"
)

// DeploymentWindow opens at each cron tick for a duration.
type DeploymentWindow struct {
	Kind WindowKind `json:"kind"`
	// Schedule is a five-field cron expression (minute hour dom month dow)
	// or a descriptor such as @daily.
	// +kubebuilder:validation:MinLength=1
	Schedule string `json:"schedule"`
	// Duration the window stays open after each tick.
	// +kubebuilder:validation:Format=duration
	Duration metav1.Duration `json:"duration"`
	// TimeZone is an IANA name such as Europe/Berlin; default UTC.
	// +optional
	TimeZone string `json:"timeZone,omitempty"`
}

// FailureAction is what Sluice does when a rollout goes wrong.
// +kubebuilder:validation:Enum=Abort;Pause
type FailureAction string

const (
	// ActionAbort sends 100% to stable at once.
	ActionAbort FailureAction = "Abort"
	// ActionPause holds traffic where it is and waits for a person.
	ActionPause FailureAction = "Pause"
)

// RollbackPolicy decides automatic reactions.
type RollbackPolicy struct {
	// OnAnalysisFailure: Abort (default) or Pause.
	// +kubebuilder:default=Abort
	// +optional
	OnAnalysisFailure FailureAction `json:"onAnalysisFailure,omitempty"`
	// OnNack: what to do when a proxy rejects the traffic plan. Default Abort.
	// +kubebuilder:default=Abort
	// +optional
	OnNack FailureAction `json:"onNack,omitempty"`
	// GitRevert pushes a commit that sets the Rollout back to the stable
	// revision after an automatic abort, so Git never claims a version that
	// is not serving.
	// +optional
	GitRevert bool `json:"gitRevert,omitempty"`
}
