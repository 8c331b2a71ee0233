package argo

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/rollout/validation"
)

// canarySteps converts the canary steps. Sluice's steps hold one action
// each, so an Argo step with several becomes several, in order.
func (r *rolloutConv) canarySteps(steps *yaml.Node, path string) *yaml.Node {
	out := carry(newSeq(), steps)
	list := items(steps)
	r.steps = make([]int, len(list)+1)
	for i, s := range list {
		r.steps[i] = len(out.Content)
		sp := elem(path, i)
		var converted []*yaml.Node
		actions := pairs(s)
		for _, p := range actions {
			converted = append(converted, r.step(p, join(sp, p.k.Value))...)
		}
		if len(actions) > 1 && len(converted) > 1 {
			r.reportf(s, sp, Note, "Sluice's steps hold one action each: this one is %d steps, in the order written", len(converted))
		}
		if len(converted) > 0 {
			carry(converted[0], s)
		}
		out.Content = append(out.Content, converted...)
	}
	r.steps[len(list)] = len(out.Content)
	return out
}

// step converts one action of an Argo step into Sluice steps.
func (r *rolloutConv) step(p pair, path string) []*yaml.Node {
	one := func(key string, v *yaml.Node) []*yaml.Node {
		if v == nil {
			return nil
		}
		m := newMap()
		setFrom(m, p.k, key, v)
		return []*yaml.Node{m}
	}
	switch p.k.Value {
	case "setWeight":
		if n, ok := intValue(p.v); !ok || n < 0 || n > 100 {
			r.report(p.k, path, Unsupported, "a weight is a percentage from 0 to 100")
			return nil
		}
		return one("setWeight", p.v)
	case "pause":
		return one("pause", r.pause(p, path))
	case "analysis":
		return one("analysis", r.analysis(p.v, path, false))
	case "setCanaryScale":
		if b, _ := boolValue(valueOf(p.v, "matchTrafficWeight")); b {
			r.report(p.k, path, Note, "not needed: Sluice always scales the canary to its weight")
		} else {
			r.report(p.k, path, Unsupported, "no equivalent: Sluice scales the canary to its weight's share of spec.replicas (at least 1 pod); a scale of its own is left out")
		}
		return nil
	case "setHeaderRoute":
		return one("setHeaderRoute", r.headerRoute(p, path))
	case "setMirrorRoute":
		return one("setMirror", r.mirror(p, path))
	case "experiment":
		return r.experiment(p, path)
	case "plugin":
		r.report(p.k, path, Unsupported, "no equivalent: Sluice has no step plugins")
		return nil
	}
	r.report(p.k, path, Unsupported, "unknown step: not converted")
	return nil
}

// duration reads an Argo duration: seconds as a number, or a Go duration
// string.
func duration(n *yaml.Node) (string, time.Duration, error) {
	if secs, ok := intValue(n); ok {
		return seconds(secs), time.Duration(secs) * time.Second, nil
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not a duration", n.Value)
	}
	return n.Value, d, nil
}

// seconds writes a number of seconds as a duration in the largest whole
// unit: 300 is "5m".
func seconds(n int64) string {
	switch {
	case n != 0 && n%3600 == 0:
		return strconv.FormatInt(n/3600, 10) + "h"
	case n != 0 && n%60 == 0:
		return strconv.FormatInt(n/60, 10) + "m"
	}
	return strconv.FormatInt(n, 10) + "s"
}

func (r *rolloutConv) pause(p pair, path string) *yaml.Node {
	out := flowLike(carry(newMap(), p.v), p.v)
	for _, q := range pairs(p.v) {
		fp := join(path, q.k.Value)
		if q.k.Value != "duration" {
			r.unknown(q, path)
			continue
		}
		text, d, err := duration(q.v)
		switch {
		case err != nil:
			r.report(q.k, fp, Unsupported, err.Error())
			return nil
		case d <= 0:
			r.report(q.k, fp, Note, "a pause of no time does nothing: left out")
			return nil
		}
		setFrom(out, q.k, "duration", carry(str(text), q.v))
	}
	return out
}

// analysis converts an analysis reference (a step's, the background's, or
// blue/green's pre- and post-promotion).
func (r *rolloutConv) analysis(a *yaml.Node, path string, background bool) *yaml.Node {
	out := carry(newMap(), a)
	templates := newSeq()
	var names []string
	addTemplate := func(k *yaml.Node, name string, cluster bool, fp string) {
		names = append(names, name)
		templates.Content = append(templates.Content, flowLike(single("name", str(name)), &yaml.Node{Style: yaml.FlowStyle}))
		r.checkTemplateRef(k, fp, name, cluster)
	}
	var args *yaml.Node
	for _, p := range pairs(a) {
		fp := join(path, p.k.Value)
		switch p.k.Value {
		case "templates":
			for i, t := range items(p.v) {
				c, _ := boolValue(valueOf(t, "clusterScope"))
				addTemplate(t, scalar(t, "templateName"), c, elem(fp, i))
			}
		case "templateName":
			addTemplate(p.k, p.v.Value, false, fp)
		case "args":
			args = p.k
		case "startingStep":
			if !background {
				r.unknown(p, path)
				continue
			}
			n, _ := intValue(p.v)
			if n < 0 || int(n) >= len(r.steps) {
				r.report(p.k, fp, Unsupported, "not a step index")
				continue
			}
			to := r.steps[n]
			setFrom(out, p.k, "startingStep", num(int64(to)))
			if int64(to) != n {
				r.reportf(p.k, fp, Note, "Argo's step %d is Sluice's step %d (steps were split or left out)", n, to)
			}
		case "dryRun":
			r.report(p.k, fp, Unsupported, "not per Rollout: set dryRun: true on the metric in the template (it then holds for every Rollout using it)")
		case "measurementRetention":
			r.report(p.k, fp, Note, "not needed: an AnalysisRun keeps the last 10 measurements of each metric, and counters of all")
		case "analysisRunMetadata":
			r.report(p.k, fp, Unsupported, "no equivalent: Sluice labels its AnalysisRuns itself")
		default:
			r.unknown(p, path)
		}
	}
	if len(names) == 0 {
		r.report(a, path, Unsupported, "no template to run")
		return nil
	}
	out.Content = append([]*yaml.Node{str("templates"), templates}, out.Content...)
	if args != nil {
		if list := r.args(valueOf(a, "args"), join(path, "args"), names); len(list.Content) > 0 {
			setFrom(out, args, "args", list)
		}
	}
	return out
}

// checkTemplateRef reports what a template reference becomes.
func (r *rolloutConv) checkTemplateRef(n *yaml.Node, path, name string, cluster bool) {
	t := r.c.idx.template(r.d.file, r.d.namespace, name, cluster)
	if t != nil && t.out == nil {
		r.reportf(n, path, Unsupported, "template %q (%s) could not be converted, so this analysis cannot start: give Sluice a Prometheus template of that name", name, t.file)
		return
	}
	switch {
	case cluster && t != nil:
		r.reportf(n, path, Approximated, "Sluice has no cluster-wide templates: ClusterAnalysisTemplate %q (%s) becomes an AnalysisTemplate; apply it in this Rollout's namespace", name, t.file)
	case cluster:
		r.reportf(n, path, Approximated, "Sluice has no cluster-wide templates: convert ClusterAnalysisTemplate %q and apply it as an AnalysisTemplate in this Rollout's namespace", name)
	}
}

var templatePlaceholder = regexp.MustCompile(`\{\{\s*templates\.([^.}\s]+)\.podTemplateHash\s*\}\}`)

// args converts the arguments a Rollout passes to templates.
func (r *rolloutConv) args(list *yaml.Node, path string, templates []string) *yaml.Node {
	out := newSeq()
	for i, a := range items(list) {
		ap := elem(path, i)
		name := scalar(a, "name")
		n := argName(name)
		if isBuiltin(n) {
			if v, ok := r.builtinValue(n); ok && v == scalar(a, "value") {
				r.reportf(a, ap, Note, "not needed: Sluice supplies {{args.%s}} itself (%s), with this value", n, builtinMeaning(n))
			} else {
				r.reportf(a, ap, Approximated, "Sluice supplies {{args.%s}} itself (%s); the value passed here is not used", n, builtinMeaning(n))
			}
			continue
		}
		item := flowLike(carry(newMap(), a), a)
		_, v := get(a, "value")
		_, from := get(a, "valueFrom")
		switch {
		case v != nil:
			value := v.Value
			if m := templatePlaceholder.FindStringSubmatch(value); m != nil {
				r.reportf(a, ap, Unsupported, "no equivalent: Sluice gives templates the revision of an extra revision as the built-in {{args.revision_%s}}; use it in the template instead", argName(dnsLabel(m[1], 30)))
				continue
			}
			set(item, "name", str(n))
			set(item, "value", carry(str(value), v))
		case from != nil:
			value, ok := r.argFrom(from, ap, name, templates)
			if !ok {
				continue
			}
			set(item, "name", str(n))
			set(item, "value", str(value))
		default:
			r.report(a, ap, Unsupported, "an argument without value or valueFrom")
			continue
		}
		out.Content = append(out.Content, item)
	}
	return out
}

// builtinValue is the value Sluice gives a built-in argument, where the
// manifest fixes it.
func (r *rolloutConv) builtinValue(name string) (string, bool) {
	switch name {
	case "rollout":
		return r.d.name, true
	case "namespace":
		return r.d.namespace, r.d.namespace != ""
	case "service":
		return r.serviceName, true
	case "host":
		if len(r.hosts) > 0 {
			return r.hosts[0], true
		}
	}
	return "", false
}

// argFrom resolves an argument's valueFrom. Only a fieldRef has a value
// to write; a pod-template hash becomes a built-in the template uses.
func (r *rolloutConv) argFrom(from *yaml.Node, path, name string, templates []string) (string, bool) {
	if which := scalar(from, "podTemplateHashValue"); which != "" {
		builtin := map[string]string{"Latest": "canaryRevision", "Stable": "stableRevision"}[which]
		if builtin == "" {
			r.reportf(from, path, Unsupported, "podTemplateHashValue %q: want Latest or Stable", which)
			return "", false
		}
		rewritten := true
		for _, t := range templates {
			tdoc := r.c.idx.template(r.d.file, r.d.namespace, t, false)
			if tdoc == nil {
				tdoc = r.c.idx.template(r.d.file, "", t, true)
			}
			if tdoc == nil || r.c.idx.hashArgs[t][name] != which {
				rewritten = false
			}
		}
		if rewritten {
			r.reportf(from, path, Approximated, "the %s revision is the built-in {{args.%s}}, which the queries of %s now read instead of {{args.%s}}; Sluice's revision is the hash of the pod template, found on the pods as the label sluice.dev/revision, not rollouts-pod-template-hash: check the queries' label matchers",
				strings.ToLower(strings.TrimSuffix(builtin, "Revision")), builtin, describeList(templates), argName(name))
		} else {
			r.reportf(from, path, Unsupported, "the argument is not passed: use the built-in {{args.%s}} in %s instead of {{args.%s}} (Sluice's revision is the pods' sluice.dev/revision label)", builtin, describeList(templates), argName(name))
		}
		return "", false
	}
	if fp := scalar(valueOf(from, "fieldRef"), "fieldPath"); fp != "" {
		v, ok := r.fieldValue(fp)
		if !ok {
			r.reportf(from, path, Unsupported, "no equivalent: fieldRef %q cannot be resolved from the manifest; pass the value itself", fp)
			return "", false
		}
		r.reportf(from, path, Approximated, "fieldRef %s resolved now: %q (it no longer follows changes of the field)", fp, v)
		return v, true
	}
	if has(from, "secretKeyRef") {
		r.report(from, path, Unsupported, "no equivalent: Sluice's arguments are plain values from Git; a credential belongs in the Prometheus provider's auth (a Secret of the template's namespace) or in a provider of Sluice's configuration")
		return "", false
	}
	r.report(from, path, Unsupported, "unknown valueFrom: not converted")
	return "", false
}

var fieldRefRE = regexp.MustCompile(`^metadata\.(labels|annotations)(?:\['([^']+)'\]|\["([^"]+)"\]|\.([A-Za-z0-9_.\-/]+))$`)

// fieldValue resolves a fieldRef against the Rollout as written.
func (r *rolloutConv) fieldValue(path string) (string, bool) {
	switch path {
	case "metadata.name":
		return r.d.name, r.d.name != ""
	case "metadata.namespace":
		return r.d.namespace, r.d.namespace != ""
	}
	m := fieldRefRE.FindStringSubmatch(path)
	if m == nil {
		return "", false
	}
	key := m[2] + m[3] + m[4]
	_, meta := get(r.d.root, "metadata")
	_, kv := get(meta, m[1])
	_, v := get(kv, key)
	if v == nil {
		return "", false
	}
	return v.Value, true
}

var headerNameRE = regexp.MustCompile(`^:?[a-z0-9][-a-z0-9_.]*$`)

func (r *rolloutConv) headerRoute(p pair, path string) *yaml.Node {
	if r.router != "istio" {
		r.report(p.k, path, Unsupported, "needs request routing, which the replicas router does not do: it cannot send requests by header")
		return nil
	}
	out := newMap()
	name := scalar(p.v, "name")
	n := dnsLabel(name, 40)
	if n != name {
		r.reportf(p.k, join(path, "name"), Note, "renamed %q: a route name is a DNS label of at most 40 characters", n)
	}
	set(out, "name", str(n))
	_, match := get(p.v, "match")
	if match == nil {
		return out // removes the route, in Sluice too
	}
	matches := newSeq()
	for i, m := range items(match) {
		mp := elem(join(path, "match"), i)
		hn := strings.ToLower(scalar(m, "headerName"))
		if !headerNameRE.MatchString(hn) {
			r.reportf(m, mp, Unsupported, "header name %q is not one Sluice routes on", hn)
			continue
		}
		h := newMap()
		set(h, "name", str(hn))
		_, hv := get(m, "headerValue")
		for _, q := range pairs(hv) {
			if q.k.Value == "exact" || q.k.Value == "prefix" || q.k.Value == "regex" {
				set(h, q.k.Value, str(q.v.Value))
				break
			}
		}
		if len(h.Content) == 2 {
			r.report(m, mp, Unsupported, "a header match needs exact, prefix or regex")
			continue
		}
		hs := newSeq(flowLike(h, &yaml.Node{Style: yaml.FlowStyle}))
		hs.Style = yaml.FlowStyle
		matches.Content = append(matches.Content, single("headers", hs))
	}
	if len(matches.Content) == 0 {
		r.report(p.k, path, Unsupported, "no match left: the step is left out")
		return nil
	}
	set(out, "match", matches)
	if r.declaredMatch {
		r.report(p.k, path, Approximated, "Sluice's header route also keeps the matches the managed route declares, so it takes only requests the route took before; Argo's matched the header alone")
	}
	return out
}

func (r *rolloutConv) mirror(p pair, path string) *yaml.Node {
	if r.router != "istio" {
		r.report(p.k, path, Unsupported, "needs request routing, which the replicas router does not do: it cannot mirror")
		return nil
	}
	out := newMap()
	_, match := get(p.v, "match")
	if match == nil {
		set(out, "percent", num(0))
		r.report(p.k, path, Note, "Sluice has one mirror, of the default route: percent 0 stops it")
		return out
	}
	pct := int64(100)
	if _, v := get(p.v, "percentage"); v != nil {
		pct, _ = intValue(v)
	}
	set(out, "percent", num(pct))
	r.reportf(p.k, path, Approximated, "Sluice mirrors %d%% of every request on the default route; Argo mirrored only the requests matching the route's match (method, path, headers), which has no equivalent here", pct)
	return out
}

// experiment turns an experiment step into extra revisions (setRevision),
// a step that waits as the experiment did, and, without a duration, steps
// that stop the revisions again.
func (r *rolloutConv) experiment(p pair, path string) []*yaml.Node {
	if r.router != "istio" {
		r.report(p.k, path, Unsupported, "needs request routing, which the replicas router does not do: it runs no extra revisions")
		return nil
	}
	var steps []*yaml.Node
	var names []string
	dur := ""
	if k, v := get(p.v, "duration"); v != nil {
		text, d, err := duration(v)
		if err != nil || d <= 0 {
			r.reportf(k, join(path, "duration"), Unsupported, "not a positive duration: %q", v.Value)
		} else {
			dur = text
		}
	}
	for _, q := range pairs(p.v) {
		fp := join(path, q.k.Value)
		switch q.k.Value {
		case "templates":
			for i, t := range items(q.v) {
				if s, n := r.experimentRevision(t, elem(fp, i), dur); s != nil {
					steps, names = append(steps, s), append(names, n)
				}
			}
		case "duration", "analyses":
		case "scaleDownDelaySeconds":
			r.report(q.k, fp, Note, "not needed: Sluice scales an extra revision down when it stops")
		case "dryRun", "analysisRunMetadata":
			r.report(q.k, fp, Unsupported, "no equivalent")
		default:
			r.unknown(q, path)
		}
	}
	if len(steps) == 0 {
		r.report(p.k, path, Unsupported, "no revision left to run: the step is left out")
		return nil
	}
	var wait string
	_, analyses := get(p.v, "analyses")
	switch {
	case len(items(analyses)) > 0:
		if a := r.experimentAnalysis(analyses, join(path, "analyses")); a != nil {
			steps = append(steps, single("analysis", a))
			wait = "an analysis step that must succeed"
		}
	case dur != "":
		steps = append(steps, single("pause", single("duration", str(dur))))
		wait = "a pause of " + dur
	default:
		steps = append(steps, single("pause", flowLike(newMap(), &yaml.Node{Style: yaml.FlowStyle})))
		wait = "a pause until `sluice promote`"
	}
	stop := "their duration ends"
	if dur == "" {
		for _, n := range names {
			steps = append(steps, single("setRevision", single("name", str(n))))
		}
		stop = "the steps after it stop them"
	}
	r.reportf(p.k, path, Approximated, "converted into %d setRevision step(s) starting extra revisions %s beside stable and canary, then %s; they run until %s (or the rollout ends). Sluice's extra revisions are routed by weight or match, and have no Service of their own",
		len(names), describeList(names), wait, stop)
	return steps
}

func (r *rolloutConv) experimentRevision(t *yaml.Node, path, dur string) (*yaml.Node, string) {
	name := scalar(t, "name")
	n := dnsLabel(name, 30)
	if n == "stable" || n == "canary" || n == "" {
		n = dnsLabel("exp-"+name, 30)
	}
	if n != name {
		r.reportf(t, join(path, "name"), Note, "renamed %q: an extra revision's name is a DNS label of at most 30 characters, and not stable or canary", n)
	}
	rev := newMap()
	set(rev, "name", str(n))
	from := map[string]string{"stable": "Stable", "canary": "Canary"}[scalar(t, "specRef")]
	if from == "" {
		r.reportf(t, join(path, "specRef"), Unsupported, "specRef %q: want stable or canary", scalar(t, "specRef"))
		return nil, ""
	}
	set(rev, "template", single("from", str(from)))
	for _, q := range pairs(t) {
		fp := join(path, q.k.Value)
		switch q.k.Value {
		case "name", "specRef":
		case "replicas", "weight":
			setFrom(rev, q.k, q.k.Value, q.v)
		case "metadata", "selector":
			r.report(q.k, fp, Unsupported, "no equivalent: an extra revision's pods carry the template's labels and sluice.dev/revision")
		case "service":
			r.report(q.k, fp, Unsupported, "no equivalent: Sluice gives an extra revision no Service; send requests to it by weight or with setRevision's match")
		default:
			r.unknown(q, path)
		}
	}
	if dur != "" {
		set(rev, "duration", str(dur))
	}
	return single("setRevision", rev), n
}

// experimentAnalysis merges an experiment's analyses into one analysis
// step.
func (r *rolloutConv) experimentAnalysis(list *yaml.Node, path string) *yaml.Node {
	out := newMap()
	templates := newSeq()
	args := newSeq()
	seen := map[string]string{}
	var names []string
	for i, a := range items(list) {
		ap := elem(path, i)
		t := scalar(a, "templateName")
		c, _ := boolValue(valueOf(a, "clusterScope"))
		r.checkTemplateRef(a, ap, t, c)
		names = append(names, t)
		templates.Content = append(templates.Content, flowLike(single("name", str(t)), &yaml.Node{Style: yaml.FlowStyle}))
		if has(a, "requiredForCompletion") {
			r.report(a, join(ap, "requiredForCompletion"), Note, "not needed: an analysis step waits for its run to complete")
		}
		for _, item := range r.args(valueOf(a, "args"), join(ap, "args"), []string{t}).Content {
			n, v := scalar(item, "name"), scalar(item, "value")
			if prev, ok := seen[n]; ok {
				if prev != v {
					r.reportf(a, join(ap, "args"), Unsupported, "argument %q has another value in another analysis; one analysis step passes one value", n)
				}
				continue
			}
			seen[n] = v
			args.Content = append(args.Content, item)
		}
	}
	set(out, "templates", templates)
	if len(args.Content) > 0 {
		set(out, "args", args)
	}
	r.reportf(list, path, Approximated, "Argo ran %s beside the experiment; Sluice runs them as one analysis step once the extra revisions run, and moves on when the run is Successful", describeList(names))
	return out
}

// isBuiltin reports whether Sluice supplies an analysis argument.
func isBuiltin(name string) bool { return validation.IsBuiltinArg(name) }

var builtinArgs = map[string]string{
	"rollout":        "the Rollout's name",
	"namespace":      "the Rollout's namespace",
	"service":        "spec.service.name",
	"host":           "the first of spec.service.hosts",
	"stableRevision": "the stable revision",
	"canaryRevision": "the canary revision",
	"stableSubset":   "the stable subset's name",
	"canarySubset":   "the canary subset's name",
}

func builtinMeaning(name string) string {
	if m, ok := builtinArgs[name]; ok {
		return m
	}
	return "an extra revision's revision or subset"
}
