package argo

import (
	"net/url"
	"regexp"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// templateConv converts one AnalysisTemplate or ClusterAnalysisTemplate.
type templateConv struct {
	*objectCtx
	// renames maps an Argo argument name to the name Sluice's
	// placeholders use: the same, an identifier, or a built-in.
	renames map[string]string
	// defaults are the arguments' default values, by Argo name.
	defaults map[string]string
	dryRun   []string
}

func (o *objectCtx) template() *yaml.Node {
	if !has(o.d.root, "spec") {
		o.report(o.d.root, "spec", Unsupported, "no spec: not written")
		return nil
	}
	out := carry(newMap(), o.d.root)
	t := &templateConv{objectCtx: o, renames: map[string]string{}, defaults: map[string]string{}}
	for _, p := range pairs(o.d.root) {
		switch {
		case o.header(out, p, kindTemplate):
		case p.k.Value == "spec":
			spec := t.spec(p.v)
			if spec == nil {
				return nil
			}
			out.Content = append(out.Content, p.k, spec)
		default:
			o.unknown(p, "")
		}
	}
	if o.d.kind == kindClusterTemplate {
		k, _ := get(o.d.root, "kind")
		users := o.c.idx.clusterUsers[o.d.name]
		if len(users) == 1 && users[0] != "" {
			_, meta := get(out, "metadata")
			set(meta, "namespace", str(users[0]))
			o.reportf(k, "kind", Approximated, "Sluice has no cluster-wide templates: written as an AnalysisTemplate in namespace %q, that of the Rollouts among the files that use it; apply a copy in the namespace of any other", users[0])
		} else {
			o.report(k, "kind", Approximated, "Sluice has no cluster-wide templates: written as an AnalysisTemplate, to apply in the namespace of each Rollout that uses it")
		}
	}
	return o.document(out)
}

func (t *templateConv) spec(s *yaml.Node) *yaml.Node {
	out := carry(newMap(), s)
	for _, d := range items(valueOf(s, "dryRun")) {
		t.dryRun = append(t.dryRun, scalar(d, "metricName"))
	}
	var args *yaml.Node
	if k, v := get(s, "args"); v != nil {
		args = t.args(v)
		if len(args.Content) > 0 {
			out.Content = append(out.Content, k, args)
		}
	}
	metrics := 0
	for _, p := range pairs(s) {
		fp := join("spec", p.k.Value)
		switch p.k.Value {
		case "args":
		case "metrics":
			list := carry(newSeq(), p.v)
			for i, m := range items(p.v) {
				if cm := t.metric(m, elem(fp, i)); cm != nil {
					list.Content = append(list.Content, cm)
				}
			}
			metrics = len(list.Content)
			if metrics > 0 {
				out.Content = append(out.Content, p.k, list)
			}
		case "dryRun":
			t.report(p.k, fp, Note, "converted: each metric named here is dryRun: true")
		case "measurementRetention":
			t.report(p.k, fp, Note, "not needed: an AnalysisRun keeps the last 10 measurements of each metric, and counters of all")
		case "templates":
			t.report(p.k, fp, Unsupported, "no equivalent: a Sluice template does not include others; name each template in the Rollout's analysis instead")
		default:
			t.unknown(p, "spec")
		}
	}
	if metrics == 0 {
		t.report(s, "spec.metrics", Unsupported, "no metric could be converted: the template is not written")
		return nil
	}
	return out
}

// args converts the declared arguments, and records how placeholders
// must be renamed.
func (t *templateConv) args(list *yaml.Node) *yaml.Node {
	out := carry(newSeq(), list)
	for i, a := range items(list) {
		ap := elem("spec.args", i)
		name := scalar(a, "name")
		n := argName(name)
		if which, ok := t.c.idx.hashArgs[t.d.name][name]; ok {
			if which != "" {
				b := map[string]string{"Latest": "canaryRevision", "Stable": "stableRevision"}[which]
				t.renames[name] = b
				t.reportf(a, ap, Approximated, "the Rollouts among the files bind it to the %s pod-template hash: the queries use the built-in {{args.%s}} instead; Sluice's revision is the hash of the pod template, found on the pods as the label sluice.dev/revision, not rollouts-pod-template-hash: check the queries' label matchers", strings.ToLower(which), b)
				continue
			}
			t.report(a, ap, Unsupported, "the Rollouts among the files bind it to the stable hash and to the latest: use {{args.stableRevision}} or {{args.canaryRevision}} in the queries")
		}
		if isBuiltin(n) {
			t.renames[name] = n
			t.reportf(a, ap, Approximated, "Sluice supplies {{args.%s}} itself (%s) and a template cannot declare it; a value a Rollout passed is not used", n, builtinMeaning(n))
			continue
		}
		t.renames[name] = n
		if n != name {
			t.reportf(a, ap, Note, "renamed %q: Sluice's argument names are identifiers (letters, digits, _)", n)
		}
		item := flowLike(carry(newMap(), a), a)
		set(item, "name", str(n))
		_, v := get(a, "value")
		_, from := get(a, "valueFrom")
		switch {
		case v != nil:
			t.defaults[name] = v.Value
			set(item, "value", carry(str(v.Value), v))
		case from != nil:
			switch fp := scalar(valueOf(from, "fieldRef"), "fieldPath"); fp {
			case "metadata.name", "metadata.namespace":
				b := map[string]string{"metadata.name": "rollout", "metadata.namespace": "namespace"}[fp]
				t.renames[name] = b
				t.reportf(from, ap, Note, "converted: %s is the built-in {{args.%s}}", fp, b)
				continue
			default:
				t.report(from, ap, Unsupported, "no equivalent: Sluice's arguments are plain values from Git; declared without a default, so each Rollout must pass a value (credentials belong in the Prometheus provider's auth)")
			}
		}
		out.Content = append(out.Content, item)
	}
	return out
}

// Placeholders of Argo (spaces allowed) and the label Argo puts on pods.
var (
	argPlaceholder = regexp.MustCompile(`\{\{\s*args\.([^{}\s]+)\s*\}\}`)
	argoHashLabel  = regexp.MustCompile(`rollouts[-_]pod[-_]template[-_]hash`)
)

// placeholders renames the argument placeholders of a query.
func (t *templateConv) placeholders(q string) string {
	return argPlaceholder.ReplaceAllStringFunc(q, func(m string) string {
		name := argPlaceholder.FindStringSubmatch(m)[1]
		n, ok := t.renames[name]
		if !ok {
			n = argName(name)
		}
		return "{{args." + n + "}}"
	})
}

// substitute writes the defaults of the arguments into a field Sluice
// does not template (a condition, a count, an address).
func (t *templateConv) substitute(n *yaml.Node, path string) (string, bool) {
	missing := ""
	used := map[string]string{}
	s := argPlaceholder.ReplaceAllStringFunc(n.Value, func(m string) string {
		name := argPlaceholder.FindStringSubmatch(m)[1]
		v, ok := t.defaults[name]
		if !ok {
			missing = name
			return m
		}
		used[name] = v
		return v
	})
	if missing != "" {
		t.reportf(n, path, Unsupported, "no equivalent: Argo fills {{args.%s}} in per run, but this field takes no arguments in Sluice and the argument has no default to write in", missing)
		return "", false
	}
	if len(used) > 0 {
		var names []string
		for k := range used {
			names = append(names, k)
		}
		slices.Sort(names)
		t.reportf(n, path, Approximated, "this field takes no arguments in Sluice: the default of %s is written in, and a Rollout passing another value no longer changes it", describeList(names))
	}
	return s, true
}

func (t *templateConv) metric(m *yaml.Node, path string) *yaml.Node {
	name := scalar(m, "name")
	_, provider := get(m, "provider")
	prom := valueOf(provider, "prometheus")
	for _, p := range pairs(provider) {
		if p.k.Value != "prometheus" {
			t.reportf(p.k, join(path, "provider."+p.k.Value), Unsupported, "no equivalent: Sluice measures with Prometheus only; metric %q is left out", name)
			return nil
		}
	}
	if prom == nil {
		t.report(m, path, Unsupported, "no provider: the metric is left out")
		return nil
	}
	out := carry(newMap(), m)
	n := dnsLabel(name, 63)
	if n != name {
		t.reportf(m, join(path, "name"), Note, "renamed %q: a metric name is a DNS label", n)
	}
	set(out, "name", str(n))
	conditions := 0
	hasCount, hasInterval := false, false
	for _, p := range pairs(m) {
		fp := join(path, p.k.Value)
		switch p.k.Value {
		case "name", "provider":
		case "interval", "initialDelay":
			text, _, err := duration(p.v)
			if err != nil {
				t.report(p.k, fp, Unsupported, err.Error())
				return nil
			}
			hasInterval = hasInterval || p.k.Value == "interval"
			out.Content = append(out.Content, p.k, carry(str(text), p.v))
		case "count", "failureLimit", "inconclusiveLimit", "consecutiveErrorLimit":
			v, ok := t.integer(p, fp)
			if !ok {
				return nil
			}
			if v < 0 {
				t.report(p.k, fp, Unsupported, "a negative limit (Argo's -1: none); the metric is left out")
				return nil
			}
			if p.k.Value == "count" {
				if v == 0 {
					continue
				}
				hasCount = true
			}
			out.Content = append(out.Content, p.k, carry(num(v), p.v))
		case "successCondition", "failureCondition":
			cel, ok := t.condition(p, fp)
			if !ok {
				t.reportf(p.k, path, Unsupported, "metric %q is left out: its %s has no equivalent", name, p.k.Value)
				return nil
			}
			conditions++
			out.Content = append(out.Content, p.k, carry(str(cel), p.v))
		case "consecutiveSuccessLimit":
			t.report(p.k, fp, Unsupported, "no equivalent: a Sluice metric succeeds after count measurements within its limits")
		default:
			t.unknown(p, path)
		}
	}
	if !hasCount && !hasInterval {
		set(out, "count", num(1))
		t.report(m, path, Note, "Argo takes one measurement when neither count nor interval is set: written as count: 1")
	}
	if conditions == 0 {
		set(out, "successCondition", str("true"))
		t.report(m, path, Approximated, "Argo judged a measurement without conditions Successful unless it failed: written as successCondition: \"true\" (in Sluice, no data is still Inconclusive)")
	}
	if slices.Contains(t.dryRun, name) || slices.Contains(t.dryRun, "*") {
		set(out, "dryRun", boolean(true))
	}
	pk, _ := get(provider, "prometheus")
	p := t.prometheus(prom, join(path, "provider.prometheus"))
	if p == nil {
		return nil
	}
	pm := newMap()
	setFrom(pm, pk, "prometheus", p)
	k, _ := get(m, "provider")
	setFrom(out, k, "provider", carry(pm, provider))
	return out
}

// integer reads an Argo IntOrString, with placeholders filled from the
// defaults.
func (t *templateConv) integer(p pair, path string) (int64, bool) {
	if v, ok := intValue(p.v); ok {
		return v, true
	}
	s, ok := t.substitute(p.v, path)
	if !ok {
		return 0, false
	}
	v, ok := intValue(str(s))
	if !ok {
		t.reportf(p.k, path, Unsupported, "%q is not an integer", s)
	}
	return v, ok
}

// condition translates a condition; the findings are reported here.
func (t *templateConv) condition(p pair, path string) (string, bool) {
	src := p.v.Value
	if strings.Contains(src, "{{") {
		s, ok := t.substitute(p.v, path)
		if !ok {
			return "", false
		}
		src = s
	}
	c, err := TranslateCondition(src)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), ErrUntranslatable.Error()+": ")
		if p.v.LineComment != "" && p.v.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) == 0 {
			msg += "; mind that \" #\" in an unquoted YAML value starts a comment: quote the condition"
		}
		t.report(p.k, path, Unsupported, msg)
		return "", false
	}
	for _, a := range c.Approximations {
		t.report(p.k, path, Approximated, a)
	}
	if c.CEL != strings.TrimSpace(p.v.Value) {
		t.reportf(p.k, path, Note, "in CEL: %s", c.CEL)
	}
	return c.CEL, true
}

func (t *templateConv) prometheus(p *yaml.Node, path string) *yaml.Node {
	out := carry(newMap(), p)
	hasAddress := has(p, "address")
	for _, q := range pairs(p) {
		fp := join(path, q.k.Value)
		switch q.k.Value {
		case "address":
			addr, ok := t.substitute(q.v, fp)
			if !ok {
				return nil
			}
			if u, err := url.Parse(addr); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				t.reportf(q.k, fp, Unsupported, "%q is not an http or https URL: the metric is left out", addr)
				return nil
			}
			out.Content = append(out.Content, q.k, carry(str(addr), q.v))
			t.report(q.k, fp, Approximated, "Sluice queries a template's own address only where its configuration sets prometheus.allowTemplateAddresses; otherwise drop address (the provider named default) or name a configured provider (name:)")
		case "query":
			v := *q.v
			v.Value = t.placeholders(q.v.Value)
			out.Content = append(out.Content, q.k, &v)
			if argoHashLabel.MatchString(v.Value) {
				t.report(q.k, fp, Approximated, "the query selects on Argo's rollouts-pod-template-hash label, which Sluice's pods do not carry: Sluice labels them sluice.dev/revision (with {{args.canaryRevision}} and {{args.stableRevision}} as values)")
			}
		case "timeout":
			secs, ok := intValue(q.v)
			if !ok {
				t.report(q.k, fp, Unsupported, "not a number of seconds")
				continue
			}
			out.Content = append(out.Content, q.k, carry(str(seconds(secs)), q.v))
		case "insecure":
			if b, _ := boolValue(q.v); b && hasAddress {
				setFrom(out, q.k, "insecureSkipVerify", q.v)
			}
		case "headers":
			h := t.headers(q, fp, hasAddress)
			if len(h.Content) > 0 {
				out.Content = append(out.Content, q.k, h)
			}
		case "authentication":
			if len(pairs(q.v)) > 0 {
				t.report(q.k, fp, Unsupported, "no equivalent: Sluice's Prometheus auth is a bearer token or basic auth from Secrets (auth), or that of a configured provider")
			}
		case "rangeQuery":
			t.report(q.k, fp, Unsupported, "no equivalent: Sluice's measurements are instant queries (a compare metric uses range queries of its own)")
			return nil
		default:
			t.unknown(q, path)
		}
	}
	return out
}

func (t *templateConv) headers(q pair, path string, hasAddress bool) *yaml.Node {
	out := carry(newSeq(), q.v)
	if !hasAddress {
		t.report(q.k, path, Approximated, "headers go with a template's own address in Sluice: give the provider named default (or the one you name) these headers in Sluice's configuration")
		return out
	}
	for _, h := range items(q.v) {
		m := flowLike(carry(newMap(), h), h)
		set(m, "name", str(scalar(h, "key")))
		set(m, "value", str(scalar(h, "value")))
		out.Content = append(out.Content, m)
	}
	return out
}
