package argo

import (
	"fmt"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// rolloutConv converts one Argo Rollout.
type rolloutConv struct {
	*objectCtx
	spec     *yaml.Node // Argo's spec
	template *yaml.Node // the pod template, Argo's or a workloadRef's
	// router is "istio" or "replicas", the Sluice router the steps must
	// fit.
	router string
	// declaredMatch is set when the managed route of the VirtualService
	// has matches of its own (Sluice's header routes keep them).
	declaredMatch bool
	// steps maps an Argo canary step index to the first Sluice step
	// index at or after it.
	steps []int
	// extras are spec fields the strategy brings (background analysis,
	// scaleDownDelaySeconds).
	extras []pair
	// serviceName and hosts are spec.service's.
	serviceName string
	hosts       []string
	// background is the canary's background analysis, converted once
	// the steps are known (its startingStep is a step index).
	background pair
}

// rollout converts an Argo Rollout document.
func (o *objectCtx) rollout() *yaml.Node {
	if !has(o.d.root, "spec") {
		o.report(o.d.root, "spec", Unsupported, "no spec: not written")
		return nil
	}
	out := carry(newMap(), o.d.root)
	for _, p := range pairs(o.d.root) {
		switch {
		case o.header(out, p, kindRollout):
		case p.k.Value == "spec":
			r := &rolloutConv{objectCtx: o, spec: p.v}
			setFrom(out, p.k, "spec", r.convertSpec())
			if !has(p.v, "strategy") {
				o.report(p.k, "spec.strategy", Unsupported, "no strategy: not written")
				return nil
			}
			if r.template == nil {
				// Nothing to roll out: not written.
				return nil
			}
		default:
			o.unknown(p, "")
		}
	}
	return o.document(out)
}

func (r *rolloutConv) convertSpec() *yaml.Node {
	out := carry(newMap(), r.spec)
	r.template = r.podTemplate()
	_, strategy := get(r.spec, "strategy")
	service := r.service(strategy)
	set(out, "service", service)
	hasReplicas := false
	for _, p := range pairs(r.spec) {
		path := join("spec", p.k.Value)
		switch p.k.Value {
		case "replicas":
			hasReplicas = true
			out.Content = append(out.Content, p.k, p.v)
		case "template":
			out.Content = append(out.Content, p.k, p.v)
		case "workloadRef":
			if r.template != nil {
				setFrom(out, p.k, "template", r.template)
			}
		case "selector":
			r.report(p.k, path, Note, "not needed: Sluice selects a revision's pods by the template's labels plus sluice.dev/revision")
		case "strategy":
			out.Content = append(out.Content, p.k, r.strategy(p.v))
			for _, e := range r.extras {
				out.Content = append(out.Content, e.k, e.v)
			}
		case "revisionHistoryLimit":
			r.report(p.k, path, Note, "not needed: Sluice keeps no old ReplicaSets to roll back to; Git is the history (revert the commit)")
		case "paused":
			out.Content = append(out.Content, p.k, p.v)
		case "progressDeadlineSeconds":
			out.Content = append(out.Content, p.k, p.v)
			if abort, _ := boolValue(valueOf(r.spec, "progressDeadlineAbort")); !abort {
				r.report(p.k, path, Approximated, "Sluice aborts a step that is not ready or acknowledged within the deadline; Argo only marked the Rollout Degraded (progressDeadlineAbort: false)")
			}
		case "progressDeadlineAbort":
			r.report(p.k, path, Note, "not needed: Sluice always aborts at the progress deadline")
		case "minReadySeconds":
			r.report(p.k, path, Unsupported, "no equivalent: Sluice counts a pod once Kubernetes reports it available (use a readiness probe)")
		case "rollbackWindow":
			r.report(p.k, path, Unsupported, "no equivalent: to roll back, revert the commit in Git (Sluice rolls out the stable revision again at once, with no steps)")
		case "restartAt":
			r.report(p.k, path, Unsupported, "no equivalent: Sluice does not restart pods; change the template to roll out")
		case "analysis":
			r.report(p.k, path, Note, "not needed: Sluice lists each rollout's analysis runs in status and deletes the AnalysisRuns status no longer lists")
		default:
			r.unknown(p, "spec")
		}
	}
	if !hasReplicas && r.template != nil {
		// Argo's default, written out (after service): Sluice requires it
		// with a template.
		out.Content = slices.Insert(out.Content, 2, str("replicas"), num(1))
	}
	if r.template == nil {
		r.report(r.spec, "spec.template", Unsupported, "no pod template: neither spec.template nor a workloadRef to a Deployment among the files")
	}
	return out
}

func valueOf(m *yaml.Node, key string) *yaml.Node {
	_, v := get(m, key)
	return v
}

// podTemplate returns the pod template, resolving a workloadRef to a
// Deployment among the files.
func (r *rolloutConv) podTemplate() *yaml.Node {
	if _, t := get(r.spec, "template"); t != nil {
		return t
	}
	k, ref := get(r.spec, "workloadRef")
	if ref == nil {
		return nil
	}
	kind, name := scalar(ref, "kind"), scalar(ref, "name")
	if kind != "Deployment" {
		r.reportf(k, "spec.workloadRef", Unsupported, "a %s: Sluice needs the pod template in the Rollout", kind)
		return nil
	}
	dep := find(r.c.idx.deployments, r.d.file, r.d.namespace, name)
	if dep == nil {
		r.reportf(k, "spec.workloadRef", Unsupported, "Deployment %q is not among the files: copy its spec.template into spec.template", name)
		return nil
	}
	_, dspec := get(dep.root, "spec")
	_, t := get(dspec, "template")
	if t == nil {
		r.reportf(k, "spec.workloadRef", Unsupported, "Deployment %q has no spec.template", name)
		return nil
	}
	c := deepCopy(t)
	if c == nil {
		r.reportf(k, "spec.workloadRef", Unsupported, "the pod template of Deployment %q is too large to copy (over %d YAML nodes, aliases expanded)", name, maxCopy)
		return nil
	}
	r.reportf(k, "spec.workloadRef", Approximated, "the pod template of Deployment %q (%s) is copied into spec.template, and Sluice runs the pods itself: scale the Deployment to 0 or remove it, and edit the template here from now on", name, dep.file)
	return c
}

// templateLabels are the pod template's labels.
func (r *rolloutConv) templateLabels() map[string]string {
	_, meta := get(r.template, "metadata")
	_, labels := get(meta, "labels")
	out := map[string]string{}
	for _, p := range pairs(labels) {
		out[p.k.Value] = p.v.Value
	}
	return out
}

// service builds spec.service for the strategy, and decides the router.
func (r *rolloutConv) service(strategy *yaml.Node) *yaml.Node {
	out := newMap()
	var name string
	var hosts []string
	if _, bg := get(strategy, "blueGreen"); bg != nil {
		r.router = "istio"
		name = scalar(bg, "activeService")
	} else {
		_, canary := get(strategy, "canary")
		name, hosts = r.canaryRouting(canary, out)
	}
	if name == "" {
		name = r.selectingService()
	}
	if name == "" {
		name = r.d.name
		r.reportf(r.spec, "spec", Approximated, "no Service names this Rollout's pods: spec.service.name is the Rollout's name, %q; name your Service there", name)
	}
	if len(hosts) == 0 {
		hosts = []string{name}
	}
	r.serviceName, r.hosts = name, hosts
	// Built in the order the API reference lists the fields.
	routing := out.Content
	out.Content = nil
	set(out, "name", str(name))
	hs := newSeq()
	hs.Style = yaml.FlowStyle
	for _, h := range hosts {
		hs.Content = append(hs.Content, str(h))
	}
	set(out, "hosts", hs)
	set(out, "port", num(r.port(name)))
	out.Content = append(out.Content, routing...)
	return out
}

// selectingService finds a Service among the files whose selector picks
// the template's labels.
func (r *rolloutConv) selectingService() string {
	labels := r.templateLabels()
	if len(labels) == 0 {
		return ""
	}
	// The file's own Services first.
	services := slices.Clone(r.c.idx.services)
	slices.SortStableFunc(services, func(a, b *document) int {
		return boolCmp(b.file == r.d.file, a.file == r.d.file)
	})
	for _, s := range services {
		if s.namespace != "" && r.d.namespace != "" && s.namespace != r.d.namespace {
			continue
		}
		_, spec := get(s.root, "spec")
		_, sel := get(spec, "selector")
		ps := pairs(sel)
		if len(ps) == 0 {
			continue
		}
		all := true
		for _, p := range ps {
			if labels[p.k.Value] != p.v.Value {
				all = false
			}
		}
		if all {
			return s.name
		}
	}
	return ""
}

// port finds the pods' port: what the Service among the files targets,
// else the template's container port.
func (r *rolloutConv) port(service string) int64 {
	if svc := find(r.c.idx.services, r.d.file, r.d.namespace, service); svc != nil {
		_, spec := get(svc.root, "spec")
		_, ports := get(spec, "ports")
		ps := items(ports)
		if len(ps) > 1 {
			r.reportf(r.spec, "spec", Approximated, "Service %q has %d ports; Sluice routes one, the first's", service, len(ps))
		}
		if len(ps) > 0 {
			target := valueOf(ps[0], "targetPort")
			port, _ := intValue(valueOf(ps[0], "port"))
			if target == nil {
				return port
			}
			if n, ok := intValue(target); ok {
				r.portDiffers(service, port, n)
				return n
			}
			if n, ok := r.containerPort(target.Value); ok {
				r.portDiffers(service, port, n)
				return n
			}
		}
	}
	if n, ok := r.containerPort(""); ok {
		return n
	}
	r.report(r.spec, "spec", Approximated, "no port found in a Service or the template: spec.service.port is 80; set it to the pods' port")
	return 80
}

func (r *rolloutConv) portDiffers(service string, port, target int64) {
	if port != 0 && port != target {
		r.reportf(r.spec, "spec", Approximated, "spec.service.port is the pods' port %d, which Sluice's routes and xDS listeners use; Service %q keeps port %d for clients that connect through it", target, service, port)
	}
}

// containerPort finds a container port by name, or the first one when
// name is empty.
func (r *rolloutConv) containerPort(name string) (int64, bool) {
	_, spec := get(r.template, "spec")
	_, containers := get(spec, "containers")
	for _, c := range items(containers) {
		_, ports := get(c, "ports")
		for _, p := range items(ports) {
			if name == "" || scalar(p, "name") == name {
				return intValue(valueOf(p, "containerPort"))
			}
		}
	}
	return 0, false
}

// shortHost turns a Kubernetes Service host (name, name.ns, name.ns.svc,
// name.ns.svc.cluster.local) into the Service's name; "" for other hosts.
func shortHost(h string) string {
	first, rest, found := strings.Cut(h, ".")
	if !found {
		return h
	}
	parts := strings.Split(rest, ".")
	if len(parts) == 1 || parts[1] == "svc" {
		return first
	}
	return ""
}

func (r *rolloutConv) strategy(s *yaml.Node) *yaml.Node {
	out := carry(newMap(), s)
	for _, p := range pairs(s) {
		path := join("spec.strategy", p.k.Value)
		switch p.k.Value {
		case "canary":
			out.Content = append(out.Content, p.k, r.canary(p.v, path))
		case "blueGreen":
			out.Content = append(out.Content, p.k, r.blueGreen(p.v, path))
		default:
			r.unknown(p, "spec.strategy")
		}
	}
	return out
}

// scaleDown moves scaleDownDelaySeconds to the spec.
func (r *rolloutConv) scaleDown(p pair) {
	r.extras = append(r.extras, pair{carry(str("scaleDownDelaySeconds"), p.k), p.v})
}

func (r *rolloutConv) blueGreen(bg *yaml.Node, path string) *yaml.Node {
	out := carry(newMap(), bg)
	preview := newMap()
	pk, _ := get(bg, "previewService")
	setFrom(out, pk, "preview", preview)
	autoEnabled := true
	if b, ok := boolValue(valueOf(bg, "autoPromotionEnabled")); ok {
		autoEnabled = b
	}
	var autoSeconds, autoValue *yaml.Node
	for _, p := range pairs(bg) {
		fp := join(path, p.k.Value)
		switch p.k.Value {
		case "activeService":
			r.reportf(p.k, fp, Approximated, "Argo switched the selector of Service %q; Sluice switches the routes of the mesh (Istio or its own xDS) and never edits the Service: it selects the pods of both revisions, so clients that bypass the mesh reach both", p.v.Value)
		case "previewService":
			set(preview, "hosts", flowLike(newSeq(str(p.v.Value)), &yaml.Node{Style: yaml.FlowStyle}))
			r.reportf(p.k, fp, Approximated, "the preview is the mesh host %q, routed to the new revision by Sluice; the Service of that name must exist but its selector no longer matters", p.v.Value)
		case "previewReplicaCount":
			r.report(p.k, fp, Unsupported, "no equivalent: Sluice runs the new revision at full scale before the switch")
		case "autoPromotionEnabled":
			if !autoEnabled {
				r.report(p.k, fp, Note, "converted: without autoPromotionSeconds, Sluice waits for `sluice promote`")
			}
		case "autoPromotionSeconds":
			autoSeconds, autoValue = p.k, p.v
			if !autoEnabled {
				r.report(p.k, fp, Note, "not needed: ignored by Argo with autoPromotionEnabled: false")
			}
		case "prePromotionAnalysis", "postPromotionAnalysis":
			if a := r.analysis(p.v, fp, false); a != nil {
				out.Content = append(out.Content, p.k, a)
			}
		case "scaleDownDelaySeconds":
			r.scaleDown(p)
		case "scaleDownDelayRevisionLimit", "maxUnavailable":
			r.report(p.k, fp, Note, "not needed: Sluice brings the new revision to full scale before the switch and keeps one previous revision for scaleDownDelaySeconds")
		case "antiAffinity", "previewMetadata", "activeMetadata", "abortScaleDownDelaySeconds":
			r.report(p.k, fp, Unsupported, "no equivalent")
		default:
			r.unknown(p, path)
		}
	}
	if !has(bg, "previewService") {
		set(preview, "match", previewMatch())
		r.report(bg, path, Approximated, "Sluice needs a preview: requests with the header x-preview: \"true\" reach the new revision before the switch")
	}
	if autoEnabled {
		secs, _ := intValue(autoValue)
		setFrom(out, autoSeconds, "autoPromotionSeconds", carry(num(secs), autoValue))
	}
	return out
}

func previewMatch() *yaml.Node {
	h := newMap()
	set(h, "name", str("x-preview"))
	set(h, "exact", str("true"))
	m := newMap()
	set(m, "headers", newSeq(h))
	return newSeq(m)
}

func (r *rolloutConv) canary(c *yaml.Node, path string) *yaml.Node {
	out := carry(newMap(), c)
	for _, p := range pairs(c) {
		fp := join(path, p.k.Value)
		switch p.k.Value {
		case "steps":
			out.Content = append(out.Content, p.k, r.canarySteps(p.v, fp))
		case "analysis":
			r.background = p
		case "stableService", "trafficRouting":
			// Converted into spec.service.
		case "canaryService":
			r.report(p.k, fp, Note, "not needed: Sluice routes to the canary's subset (or pods), not to a Service of its own")
		case "scaleDownDelaySeconds":
			r.scaleDown(p)
		case "maxSurge", "maxUnavailable", "scaleDownDelayRevisionLimit", "minPodsPerReplicaSet":
			r.report(p.k, fp, Note, "not needed: Sluice scales the canary to its weight's share of spec.replicas (at least 1 pod) and keeps both revisions available while pods move")
		case "dynamicStableScale":
			if r.router == "replicas" {
				r.report(p.k, fp, Note, "not needed: with the replicas router stable runs the pods the canary does not")
			} else {
				r.report(p.k, fp, Unsupported, "no equivalent: Sluice keeps stable at full scale until promotion")
			}
		case "antiAffinity", "canaryMetadata", "stableMetadata", "abortScaleDownDelaySeconds", "pingPong", "replicaProgressThreshold":
			r.report(p.k, fp, Unsupported, "no equivalent")
		default:
			r.unknown(p, path)
		}
	}
	if r.background.k != nil {
		if a := r.analysis(r.background.v, join(path, "analysis"), true); a != nil {
			r.extras = append(r.extras, pair{r.background.k, a})
		}
	}
	return out
}

// describeList writes names as "a", "b" and "c".
func describeList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// boolCmp orders false before true.
func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
