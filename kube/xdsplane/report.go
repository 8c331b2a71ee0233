package xdsplane

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/internal/untrusted"
	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/xds"
)

// A replica's report is one ConfigMap in the controller's namespace,
// named ReportPrefix + replica, labelled LabelReport, whose ReportKey
// holds the JSON of a Report. Every replica writes its own (Reporter);
// the leader reads the others' (Reports).
const (
	ReportPrefix = "sluice-xds-"
	LabelReport  = "sluice.dev/xds-report"
	ReportKey    = "report.json"
	// ReportFormat is the version of Report's JSON. A reader ignores a
	// report of another format: during an upgrade a replica it cannot
	// read counts as a replica without clients, as before reports existed.
	ReportFormat = 1
	// staleHeartbeats is how many heartbeats a report may miss before
	// the leader ignores it and then deletes it.
	staleHeartbeats = 3
	// maxReportMessage bounds a NACK message in a report: the first
	// part names the node and the resource, and a report of thousands of
	// Rollouts must stay well inside a ConfigMap's 1 MiB.
	maxReportMessage = 256
	// maxReportNode bounds a silent node's id in a report.
	maxReportNode = 128
)

// ReportOptions configure both sides of the reports: the Reporter that
// writes this replica's and the Reports that read the others'.
type ReportOptions struct {
	// Namespace is the controller's own, where reports live.
	Namespace string
	// Replica names this replica (its pod's name); it must be unique
	// among the replicas and make a valid ConfigMap name after
	// ReportPrefix.
	Replica string
	// MinInterval is the least time between two writes of the report, so
	// a burst of ACKs costs one write; default 250ms.
	MinInterval time.Duration
	// Heartbeat is how often an unchanged report is written again to show
	// the replica lives; default 10s. The leader ignores a report whose
	// renewal it has not seen for three of the heartbeats the report
	// states, and deletes it.
	Heartbeat time.Duration
	// Metrics count the writes; nil counts nowhere.
	Metrics *Metrics
	Logger  logr.Logger
}

func (o ReportOptions) withDefaults() ReportOptions {
	if o.MinInterval <= 0 {
		o.MinInterval = 250 * time.Millisecond
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 10 * time.Second
	}
	if o.Metrics == nil {
		o.Metrics = unregisteredMetrics()
	}
	return o
}

func (o ReportOptions) check() error {
	if o.Namespace == "" || o.Replica == "" {
		return fmt.Errorf("xDS reports: Namespace and Replica are required (have %q, %q)", o.Namespace, o.Replica)
	}
	return nil
}

// ReportName is the name of a replica's report ConfigMap.
func ReportName(replica string) string { return ReportPrefix + replica }

// reportLabels mark a report for the leader's narrowed cache.
func reportLabels() map[string]string {
	return map[string]string{LabelReport: "true", workload.LabelManagedBy: workload.ManagedBy}
}

// ReportCacheByObject narrows the manager's ConfigMap cache to the
// reports in the controller's namespace, so reading them never makes the
// cache list and watch every ConfigMap of the cluster. Merge it into
// cache.Options.ByObject with the others; nothing else in the manager may
// read ConfigMaps through the cache.
func ReportCacheByObject(namespace string) map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{&corev1.ConfigMap{}: {
		Namespaces: map[string]cache.Config{namespace: {}},
		Label:      labels.SelectorFromSet(labels.Set{LabelReport: "true"}),
	}}
}

// Report is what one replica's xDS server knows of its clients: per
// Rollout ("namespace/name") with at least one subscribed client, the
// plan version it serves and what those clients answered.
type Report struct {
	Format  int    `json:"format"`
	Replica string `json:"replica"`
	// RenewTime is when the report was last written, by the replica's
	// clock; Heartbeat is how often it is written when nothing changes.
	RenewTime time.Time              `json:"renewTime"`
	Heartbeat metav1.Duration        `json:"heartbeat"`
	Rollouts  map[string]ReportEntry `json:"rollouts,omitempty"`
}

// ReportEntry is one Rollout on one replica.
type ReportEntry struct {
	// Plan is the version this replica serves.
	Plan string `json:"plan"`
	// Clients subscribe to the Rollout's service on this replica.
	Clients int `json:"clients"`
	// State is what they answered for Plan: Acknowledged (every one
	// applied it), Rejected (one NACKed it, Message says why) or Pending.
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
	// Acked counts the clients that applied Plan; Silent lists the first
	// few that left it unanswered, with since when (maxReportSilent).
	Acked  int           `json:"acked,omitempty"`
	Silent []SilentEntry `json:"silent,omitempty"`
}

// SilentEntry is a client silent on a replica since At.
type SilentEntry struct {
	Node string    `json:"node"`
	At   time.Time `json:"at"`
}

func (e ReportEntry) equal(o ReportEntry) bool {
	return e.Plan == o.Plan && e.Clients == o.Clients && e.State == o.State && e.Message == o.Message && e.Acked == o.Acked &&
		slices.EqualFunc(e.Silent, o.Silent, func(a, b SilentEntry) bool { return a.Node == b.Node && a.At.Equal(b.At) })
}

// maxReportSilent bounds the silent clients one report lists; a list
// cut short makes the leader's Exclude policy hold, never skip a node.
const maxReportSilent = 16

const statePending = "Pending"

// entryOf is a report entry for the status of the version a replica
// serves.
func entryOf(st xds.Status) ReportEntry {
	dp := st.DataPlane()
	e := ReportEntry{Plan: st.PlanVersion, Clients: st.Subscribed, State: string(dp.State), Message: dp.Message, Acked: dp.Acked}
	for _, n := range dp.Silent[:min(len(dp.Silent), maxReportSilent)] {
		e.Silent = append(e.Silent, SilentEntry{Node: untrusted.Text(n.Name, maxReportNode), At: n.Since})
	}
	if e.State == "" {
		e.State = statePending
	}
	if len(e.Message) > maxReportMessage {
		e.Message = e.Message[:maxReportMessage-3] + "..."
	}
	return e
}

// answer is the entry as one replica's answer.
func (e ReportEntry) answer(replica string) replicaAnswer {
	a := replicaAnswer{replica: replica, version: e.Plan, clients: e.Clients, message: e.Message, acked: e.Acked}
	for _, n := range e.Silent {
		a.silent = append(a.silent, engine.SilentNode{Name: n.Node, Since: n.At})
	}
	switch engine.AckState(e.State) {
	case engine.AckAcknowledged:
		a.state = engine.AckAcknowledged
	case engine.AckRejected:
		a.state = engine.AckRejected
	}
	return a
}

// parseReport reads a report ConfigMap.
func parseReport(cm *corev1.ConfigMap) (*Report, error) {
	data, ok := cm.Data[ReportKey]
	if !ok {
		return nil, fmt.Errorf("report %s/%s: no %s", cm.Namespace, cm.Name, ReportKey)
	}
	r := &Report{}
	if err := json.Unmarshal([]byte(data), r); err != nil {
		return nil, fmt.Errorf("report %s/%s: %s: %w", cm.Namespace, cm.Name, ReportKey, err)
	}
	if r.Format != ReportFormat {
		return nil, fmt.Errorf("report %s/%s: format %d, this controller reads %d", cm.Namespace, cm.Name, r.Format, ReportFormat)
	}
	if r.Replica == "" || ReportName(r.Replica) != cm.Name {
		return nil, fmt.Errorf("report %s/%s: replica %q does not match the name", cm.Namespace, cm.Name, r.Replica)
	}
	return r, nil
}
