package argo

import (
	"fmt"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// objectCtx converts one Argo object and collects its findings.
type objectCtx struct {
	c       *converter
	d       *document
	summary Object
}

func (o *objectCtx) report(n *yaml.Node, field string, lvl Level, msg string) {
	if lvl == Unsupported {
		msg = strings.TrimPrefix(msg, "no equivalent: ")
	}
	o.c.res.Findings = append(o.c.res.Findings, Finding{
		File: o.d.file, Line: o.d.line(n), Object: o.d.kind + " " + o.d.name,
		Field: field, Level: lvl, Message: msg,
	})
	o.summary.Worst = max(o.summary.Worst, lvl)
}

func (o *objectCtx) reportf(n *yaml.Node, field string, lvl Level, format string, args ...any) {
	o.report(n, field, lvl, fmt.Sprintf(format, args...))
}

// unknown reports a field this converter does not know.
func (o *objectCtx) unknown(p pair, path string) {
	o.report(p.k, join(path, p.k.Value), Unsupported, "unknown field: not converted")
}

// document wraps a converted root mapping in a document node that keeps
// the comments around the original.
func (o *objectCtx) document(root *yaml.Node) *yaml.Node {
	n := o.d.node
	return &yaml.Node{Kind: yaml.DocumentNode, HeadComment: n.HeadComment, LineComment: n.LineComment, FootComment: n.FootComment,
		Content: []*yaml.Node{root}}
}

// header converts apiVersion, kind and metadata; it reports whether the
// pair was one of them.
func (o *objectCtx) header(out *yaml.Node, p pair, kind string) bool {
	switch p.k.Value {
	case "apiVersion":
		setFrom(out, p.k, "apiVersion", carry(str(sluiceAPIVersion), p.v))
	case "kind":
		setFrom(out, p.k, "kind", carry(str(kind), p.v))
	case "metadata":
		setFrom(out, p.k, "metadata", o.metadata(p.v))
	case "status":
		o.report(p.k, "status", Note, "not needed: Sluice writes its own status")
	default:
		return false
	}
	return true
}

// runtimeMeta are metadata fields the API server writes.
var runtimeMeta = map[string]bool{
	"uid": true, "resourceVersion": true, "generation": true, "creationTimestamp": true,
	"managedFields": true, "selfLink": true, "deletionTimestamp": true, "ownerReferences": true,
}

func (o *objectCtx) metadata(m *yaml.Node) *yaml.Node {
	out := carry(newMap(), m)
	for _, p := range pairs(m) {
		path := join("metadata", p.k.Value)
		switch {
		case runtimeMeta[p.k.Value]:
			o.report(p.k, path, Note, "not needed: written by the API server")
		case p.k.Value == "annotations":
			if a := o.annotations(p.v); len(a.Content) > 0 {
				out.Content = append(out.Content, p.k, a)
			}
		default:
			out.Content = append(out.Content, p.k, p.v)
		}
	}
	return out
}

func (o *objectCtx) annotations(m *yaml.Node) *yaml.Node {
	out := flowLike(carry(newMap(), m), m)
	for _, p := range pairs(m) {
		path := fmt.Sprintf("metadata.annotations[%s]", p.k.Value)
		switch {
		case strings.HasPrefix(p.k.Value, "notifications.argoproj.io/"):
			o.report(p.k, path, Unsupported, "not per Rollout: Sluice's notifications are set in its configuration (webhooks per event; docs/notifications.md)")
		case strings.HasPrefix(p.k.Value, "rollout.argoproj.io/"):
			o.report(p.k, path, Note, "not needed: Argo Rollouts' own bookkeeping")
		default:
			out.Content = append(out.Content, p.k, p.v)
		}
	}
	return out
}

// argName makes an Argo argument name a Sluice one (an identifier:
// dashes and dots become underscores).
func argName(name string) string {
	var b strings.Builder
	for i, r := range name {
		switch {
		case r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			r = '_'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// dnsLabel makes a name a DNS label of at most limit characters.
func dnsLabel(name string, limit int) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteRune('-')
		}
	}
	s := strings.Trim(b.String(), "-")
	if len(s) > limit {
		s = strings.TrimRight(s[:limit], "-")
	}
	return s
}
