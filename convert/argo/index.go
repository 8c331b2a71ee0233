package argo

import (
	"slices"

	yaml "go.yaml.in/yaml/v3"
)

// index is what one document needs to know of the others.
type index struct {
	services, virtualServices, destinationRules, deployments []*document
	// templates are the Argo AnalysisTemplates and
	// ClusterAnalysisTemplates.
	templates []*document
	// hashArgs records, per template name and argument, which
	// pod-template hash the Rollouts bind the argument to (Latest or
	// Stable); "" when they disagree.
	hashArgs map[string]map[string]string
	// clusterUsers lists, per ClusterAnalysisTemplate name, the
	// namespaces of the Rollouts that use it.
	clusterUsers map[string][]string
}

func buildIndex(files []*file) *index {
	idx := &index{hashArgs: map[string]map[string]string{}, clusterUsers: map[string][]string{}}
	for _, f := range files {
		for _, d := range f.docs {
			if d.root == nil {
				continue
			}
			switch {
			case d.apiVersion == "v1" && d.kind == "Service":
				idx.services = append(idx.services, d)
			case d.apiVersion == "apps/v1" && d.kind == "Deployment":
				idx.deployments = append(idx.deployments, d)
			case isIstio(d.apiVersion) && d.kind == "VirtualService":
				idx.virtualServices = append(idx.virtualServices, d)
			case isIstio(d.apiVersion) && d.kind == "DestinationRule":
				idx.destinationRules = append(idx.destinationRules, d)
			case d.isArgo(kindTemplate, kindClusterTemplate):
				idx.templates = append(idx.templates, d)
			case d.isArgo(kindRollout):
				idx.collectHashArgs(d)
				idx.collectClusterUsers(d)
			}
		}
	}
	return idx
}

func isIstio(apiVersion string) bool {
	switch apiVersion {
	case "networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3":
		return true
	}
	return false
}

// find returns the document named name in namespace ns; a document or a
// lookup without a namespace matches any. Documents of the file asking
// come first: examples of one repository may reuse names.
func find(docs []*document, file, ns, name string) *document {
	best, score := (*document)(nil), 0
	for _, d := range docs {
		if d.name != name {
			continue
		}
		s := 0
		switch {
		case d.namespace == ns:
			s = 2
		case d.namespace == "" || ns == "":
			s = 1
		default:
			continue
		}
		if d.file == file {
			s += 2
		}
		if s > score {
			best, score = d, s
		}
	}
	return best
}

// template finds an Argo template by name: a ClusterAnalysisTemplate
// when cluster is set, else an AnalysisTemplate in ns.
func (idx *index) template(file, ns, name string, cluster bool) *document {
	var docs []*document
	for _, d := range idx.templates {
		if (d.kind == kindClusterTemplate) == cluster {
			docs = append(docs, d)
		}
	}
	if cluster {
		ns = ""
	}
	return find(docs, file, ns, name)
}

// analysisRefs lists the analysis references of an Argo Rollout: each a
// mapping with templates and args.
func analysisRefs(root *yaml.Node) []*yaml.Node {
	_, spec := get(root, "spec")
	_, strategy := get(spec, "strategy")
	var refs []*yaml.Node
	if _, canary := get(strategy, "canary"); canary != nil {
		if _, a := get(canary, "analysis"); a != nil {
			refs = append(refs, a)
		}
		_, steps := get(canary, "steps")
		for _, s := range items(steps) {
			if _, a := get(s, "analysis"); a != nil {
				refs = append(refs, a)
			}
			_, exp := get(s, "experiment")
			_, analyses := get(exp, "analyses")
			refs = append(refs, items(analyses)...)
		}
	}
	if _, bg := get(strategy, "blueGreen"); bg != nil {
		for _, key := range []string{"prePromotionAnalysis", "postPromotionAnalysis"} {
			if _, a := get(bg, key); a != nil {
				refs = append(refs, a)
			}
		}
	}
	return refs
}

// refTemplates lists the template names of a reference: its templates
// list, or the templateName of an experiment's analysis.
func refTemplates(ref *yaml.Node) []string {
	var names []string
	for _, t := range templateEntries(ref) {
		names = append(names, scalar(t, "templateName"))
	}
	return names
}

// templateEntries lists the mappings of a reference that name a template
// (templateName, clusterScope).
func templateEntries(ref *yaml.Node) []*yaml.Node {
	if scalar(ref, "templateName") != "" {
		return []*yaml.Node{ref}
	}
	_, ts := get(ref, "templates")
	var out []*yaml.Node
	for _, t := range items(ts) {
		if scalar(t, "templateName") != "" {
			out = append(out, t)
		}
	}
	return out
}

func (idx *index) collectClusterUsers(ro *document) {
	for _, ref := range analysisRefs(ro.root) {
		for _, t := range templateEntries(ref) {
			if c, _ := boolValue(valueOf(t, "clusterScope")); c {
				name := scalar(t, "templateName")
				if !slices.Contains(idx.clusterUsers[name], ro.namespace) {
					idx.clusterUsers[name] = append(idx.clusterUsers[name], ro.namespace)
				}
			}
		}
	}
}

// collectHashArgs records the arguments a Rollout binds to a pod-template
// hash (valueFrom.podTemplateHashValue).
func (idx *index) collectHashArgs(ro *document) {
	for _, ref := range analysisRefs(ro.root) {
		_, args := get(ref, "args")
		for _, a := range items(args) {
			_, from := get(a, "valueFrom")
			which := scalar(from, "podTemplateHashValue")
			if which == "" {
				continue
			}
			for _, t := range refTemplates(ref) {
				m := idx.hashArgs[t]
				if m == nil {
					m = map[string]string{}
					idx.hashArgs[t] = m
				}
				name := scalar(a, "name")
				if prev, ok := m[name]; ok && prev != which {
					which = ""
				}
				m[name] = which
			}
		}
	}
}
