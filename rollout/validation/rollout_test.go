package validation

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

func TestValidRollouts(t *testing.T) {
	t.Parallel()
	for name, r := range map[string]*v1alpha1.Rollout{
		"canary": canary(), "blueGreen": blueGreen(), "darkRelease": darkRelease(), "standalone": standalone(),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			checkErrors(t, ValidateRollout(r), nil)
		})
	}
}

func steps(r *v1alpha1.Rollout) []v1alpha1.CanaryStep { return r.Spec.Strategy.Canary.Steps }

func TestRolloutRules(t *testing.T) {
	t.Parallel()
	longName := strings.Repeat("a", 64)
	cases := []struct {
		name   string
		base   func() *v1alpha1.Rollout // nil: canary
		mutate func(r *v1alpha1.Rollout)
		want   []string
	}{
		// metadata
		{"name required", nil, func(r *v1alpha1.Rollout) { r.Name = "" },
			[]string{"metadata.name: Required value"}},
		{"generateName not supported", nil, func(r *v1alpha1.Rollout) { r.Name, r.GenerateName = "", "reviews-" },
			[]string{"metadata.name: Required value: objects kept in Git need a fixed name"}},
		{"name is a DNS subdomain", nil, func(r *v1alpha1.Rollout) { r.Name = "Reviews_1" },
			[]string{`metadata.name: Invalid value: "Reviews_1"`}},
		{"namespace is a DNS label", nil, func(r *v1alpha1.Rollout) { r.Namespace = "book.info" },
			[]string{`metadata.namespace: Invalid value: "book.info"`}},
		{"label keys valid", nil, func(r *v1alpha1.Rollout) { r.Labels = map[string]string{"bad key": "x"} },
			[]string{`metadata.labels: Invalid value: "bad key"`}},

		// template XOR backend, replicas
		{"template or backend required", nil, func(r *v1alpha1.Rollout) { r.Spec.Template = nil },
			[]string{"spec.template: Required value: exactly one of template (controller mode) or backend (standalone mode) must be set"}},
		{"template and backend exclusive", nil, func(r *v1alpha1.Rollout) { r.Spec.Backend = standalone().Spec.Backend },
			[]string{"spec.backend: Forbidden: exactly one of template"}},
		{"replicas required with template", nil, func(r *v1alpha1.Rollout) { r.Spec.Replicas = nil },
			[]string{"spec.replicas: Required value: replicas is required with template"}},
		{"replicas minimum 0", nil, func(r *v1alpha1.Rollout) { r.Spec.Replicas = new(int32(-1)) },
			[]string{"spec.replicas: Invalid value: -1: must be greater than or equal to 0"}},
		{"template needs a container", nil, func(r *v1alpha1.Rollout) { r.Spec.Template.Spec.Containers = nil },
			[]string{"spec.template.spec.containers: Required value"}},
		{"container image required", nil, func(r *v1alpha1.Rollout) { r.Spec.Template.Spec.Containers[0].Image = "" },
			[]string{"spec.template.spec.containers[0].image: Required value"}},
		{"container names unique", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "reviews", Image: "busybox"}}
		}, []string{`spec.template.spec.containers[0].name: Duplicate value: "reviews"`}},
		{"template labels valid", nil, func(r *v1alpha1.Rollout) { r.Spec.Template.Labels = map[string]string{"app": "-bad-"} },
			[]string{`spec.template.metadata.labels: Invalid value: "-bad-"`}},

		// service
		{"service name required", nil, func(r *v1alpha1.Rollout) { r.Spec.Service.Name = "" },
			[]string{"spec.service.name: Required value"}},
		{"service name pattern", nil, func(r *v1alpha1.Rollout) { r.Spec.Service.Name = "Reviews" },
			[]string{`spec.service.name: Invalid value: "Reviews"`}},
		{"service name max length 63", nil, func(r *v1alpha1.Rollout) { r.Spec.Service.Name = longName },
			[]string{`spec.service.name: Invalid value: "` + longName + `": must be no more than 63 characters`}},
		{"hosts min items 1", nil, func(r *v1alpha1.Rollout) { r.Spec.Service.Hosts = nil },
			[]string{"spec.service.hosts: Required value"}},
		{"hosts max items 16", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.Hosts = nil
			for i := range 17 {
				r.Spec.Service.Hosts = append(r.Spec.Service.Hosts, "h"+strings.Repeat("x", i))
			}
		}, []string{"spec.service.hosts: Too many: 17: must have at most 16 items"}},
		{"host is a DNS name", nil, func(r *v1alpha1.Rollout) { r.Spec.Service.Hosts[1] = "reviews:9080" },
			[]string{`spec.service.hosts[1]: Invalid value: "reviews:9080": must be a DNS name`}},
		{"host empty", nil, func(r *v1alpha1.Rollout) { r.Spec.Service.Hosts[1] = "" },
			[]string{`spec.service.hosts[1]: Required value`}},
		{"hosts unique", nil, func(r *v1alpha1.Rollout) { r.Spec.Service.Hosts[1] = "reviews" },
			[]string{`spec.service.hosts[1]: Duplicate value: "reviews"`}},
		{"port required", nil, func(r *v1alpha1.Rollout) { r.Spec.Service.Port = 0 },
			[]string{"spec.service.port: Required value"}},
		{"port maximum", nil, func(r *v1alpha1.Rollout) { r.Spec.Service.Port = 65536 },
			[]string{"spec.service.port: Invalid value: 65536: must be between 1 and 65535"}},
		{"virtualService name required", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.VirtualService = &v1alpha1.VirtualServiceRef{Routes: []string{"primary"}}
		}, []string{"spec.service.virtualService.name: Required value"}},
		{"virtualService routes unique", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.VirtualService = &v1alpha1.VirtualServiceRef{Name: "reviews", Routes: []string{"primary", "primary"}}
		}, []string{`spec.service.virtualService.routes[1]: Duplicate value: "primary"`}},
		{"destinationRule name required", nil, func(r *v1alpha1.Rollout) { r.Spec.Service.DestinationRule = &v1alpha1.ObjectRef{} },
			[]string{"spec.service.destinationRule.name: Required value"}},

		// route policy
		{"policy timeout positive", nil, func(r *v1alpha1.Rollout) { r.Spec.Service.Policy = &v1alpha1.RoutePolicy{Timeout: dur("0s")} },
			[]string{`spec.service.policy.timeout: Invalid value: "0s": must be greater than 0`}},
		{"retries attempts maximum 10", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.Policy = &v1alpha1.RoutePolicy{Retries: &v1alpha1.RetryPolicy{Attempts: 11}}
		}, []string{"spec.service.policy.retries.attempts: Invalid value: 11: must be between 0 and 10"}},
		{"retries perTryTimeout positive", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.Policy = &v1alpha1.RoutePolicy{Retries: &v1alpha1.RetryPolicy{Attempts: 2, PerTryTimeout: dur("-1s")}}
		}, []string{`spec.service.policy.retries.perTryTimeout: Invalid value: "-1s"`}},
		{"retries retryOn known conditions", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.Policy = &v1alpha1.RoutePolicy{Retries: &v1alpha1.RetryPolicy{Attempts: 2, RetryOn: "5xx, 503,conect-failure"}}
		}, []string{`spec.service.policy.retries.retryOn: Invalid value: "5xx, 503,conect-failure": unknown retry condition "conect-failure"`}},
		{"fault needs abort or delay", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.Policy = &v1alpha1.RoutePolicy{Fault: &v1alpha1.FaultPolicy{}}
		}, []string{"spec.service.policy.fault: Required value"}},
		{"fault abort with both statuses", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.Policy = &v1alpha1.RoutePolicy{Fault: &v1alpha1.FaultPolicy{Abort: &v1alpha1.FaultAbort{HTTPStatus: new(int32(503)), GRPCStatus: new(int32(14)), Percent: 1}}}
		}, nil},
		{"fault abort needs a status", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.Policy = &v1alpha1.RoutePolicy{Fault: &v1alpha1.FaultPolicy{Abort: &v1alpha1.FaultAbort{Percent: 1}}}
		}, []string{"spec.service.policy.fault.abort.httpStatus: Required value: set httpStatus, grpcStatus or both"}},
		{"rules: alice aborted, bob delayed", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.Policy = &v1alpha1.RoutePolicy{Rules: []v1alpha1.PolicyRule{
				{Name: "alice", Match: []v1alpha1.RouteMatch{endUser("alice")}, Fault: &v1alpha1.FaultPolicy{Abort: &v1alpha1.FaultAbort{HTTPStatus: new(int32(500)), Percent: 100}}},
				{Name: "bob", Match: []v1alpha1.RouteMatch{endUser("bob")}, Timeout: dur("5s"), Fault: &v1alpha1.FaultPolicy{Delay: &v1alpha1.FaultDelay{FixedDelay: *dur("2s"), Percent: 100}}},
			}}
		}, nil},
		{"rules: name, match, duplicate, empty, fault match", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.Policy = &v1alpha1.RoutePolicy{Rules: []v1alpha1.PolicyRule{
				{Name: "Alice", Match: []v1alpha1.RouteMatch{endUser("alice")}, Timeout: dur("1s")},
				{Name: "bob", Timeout: dur("1s")},
				{Name: "bob", Match: []v1alpha1.RouteMatch{endUser("bob")}},
				{Name: "carol", Match: []v1alpha1.RouteMatch{endUser("carol")}, Fault: &v1alpha1.FaultPolicy{
					Abort: &v1alpha1.FaultAbort{GRPCStatus: new(int32(14)), Percent: 1}, Match: []v1alpha1.RouteMatch{endUser("dave")}}},
			}}
		}, []string{
			`spec.service.policy.rules[0].name: Invalid value: "Alice"`,
			"spec.service.policy.rules[1].match: Required value",
			`spec.service.policy.rules[2].name: Duplicate value: "bob"`,
			"spec.service.policy.rules[2]: Required value: a rule must set timeout, retries or fault",
			"spec.service.policy.rules[3].fault.match: Forbidden",
		}},
		{"fault httpStatus range", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.Policy = &v1alpha1.RoutePolicy{Fault: &v1alpha1.FaultPolicy{Abort: &v1alpha1.FaultAbort{HTTPStatus: new(int32(600)), Percent: 1}}}
		}, []string{"spec.service.policy.fault.abort.httpStatus: Invalid value: 600: must be between 200 and 599"}},
		{"fault grpcStatus range", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.Policy = &v1alpha1.RoutePolicy{Fault: &v1alpha1.FaultPolicy{Abort: &v1alpha1.FaultAbort{GRPCStatus: new(int32(0)), Percent: 1}}}
		}, []string{"spec.service.policy.fault.abort.grpcStatus: Invalid value: 0: must be between 1 and 16"}},
		{"fault abort percent range", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.Policy = &v1alpha1.RoutePolicy{Fault: &v1alpha1.FaultPolicy{Abort: &v1alpha1.FaultAbort{HTTPStatus: new(int32(503)), Percent: 101}}}
		}, []string{"spec.service.policy.fault.abort.percent: Invalid value: 101: must be between 0 and 100"}},
		{"fault delay fixedDelay required", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.Policy = &v1alpha1.RoutePolicy{Fault: &v1alpha1.FaultPolicy{Delay: &v1alpha1.FaultDelay{Percent: 5}}}
		}, []string{"spec.service.policy.fault.delay.fixedDelay: Required value"}},
		{"fault delay fixedDelay positive", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.Policy = &v1alpha1.RoutePolicy{Fault: &v1alpha1.FaultPolicy{Delay: &v1alpha1.FaultDelay{FixedDelay: *dur("-2s"), Percent: 5}}}
		}, []string{`spec.service.policy.fault.delay.fixedDelay: Invalid value: "-2s": must be greater than 0`}},
		{"fault delay percent range", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.Policy = &v1alpha1.RoutePolicy{Fault: &v1alpha1.FaultPolicy{Delay: &v1alpha1.FaultDelay{FixedDelay: *dur("2s"), Percent: -1}}}
		}, []string{"spec.service.policy.fault.delay.percent: Invalid value: -1: must be between 0 and 100"}},
		{"fault match checked", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.Policy = &v1alpha1.RoutePolicy{Fault: &v1alpha1.FaultPolicy{
				Delay: &v1alpha1.FaultDelay{FixedDelay: *dur("2s"), Percent: 5},
				Match: []v1alpha1.RouteMatch{jasonMatch()[0], {}},
			}}
		}, []string{"spec.service.policy.fault.match[1]: Required value: must set at least one of headers, uri or cookies"}},

		// session affinity
		{"affinity exactly one: both", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.SessionAffinity = &v1alpha1.SessionAffinity{Cookie: &v1alpha1.CookieAffinity{}, Header: &v1alpha1.HeaderAffinity{Name: "x-canary"}}
		}, []string{"spec.service.sessionAffinity.header: Forbidden: exactly one of cookie or header must be set"}},
		{"affinity exactly one: neither", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.SessionAffinity = &v1alpha1.SessionAffinity{}
		}, []string{"spec.service.sessionAffinity.cookie: Required value: exactly one of cookie or header must be set"}},
		{"affinity cookie name pattern", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.SessionAffinity = &v1alpha1.SessionAffinity{Cookie: &v1alpha1.CookieAffinity{Name: "my cookie"}}
		}, []string{`spec.service.sessionAffinity.cookie.name: Invalid value: "my cookie"`}},
		{"affinity cookie maxAge positive", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.SessionAffinity = &v1alpha1.SessionAffinity{Cookie: &v1alpha1.CookieAffinity{MaxAge: dur("0s")}}
		}, []string{`spec.service.sessionAffinity.cookie.maxAge: Invalid value: "0s"`}},
		{"affinity header name pattern", nil, func(r *v1alpha1.Rollout) {
			r.Spec.Service.SessionAffinity = &v1alpha1.SessionAffinity{Header: &v1alpha1.HeaderAffinity{Name: "X-Canary"}}
		}, []string{`spec.service.sessionAffinity.header.name: Invalid value: "X-Canary"`}},

		// strategy
		{"strategy required", nil, func(r *v1alpha1.Rollout) { r.Spec.Strategy = v1alpha1.Strategy{}; r.Spec.Analysis = nil },
			[]string{"spec.strategy: Required value: exactly one of canary, blueGreen or darkRelease must be set"}},
		{"strategy exactly one", nil, func(r *v1alpha1.Rollout) { r.Spec.Strategy.BlueGreen = blueGreen().Spec.Strategy.BlueGreen },
			[]string{"spec.strategy.blueGreen: Forbidden: exactly one of canary, blueGreen or darkRelease must be set"}},

		// canary steps
		{"steps max items 64", nil, func(r *v1alpha1.Rollout) {
			s := make([]v1alpha1.CanaryStep, 65)
			for i := range s {
				s[i].SetWeight = new(int32(1))
			}
			r.Spec.Strategy.Canary.Steps = s
		}, []string{"spec.strategy.canary.steps: Too many: 65: must have at most 64 items"}},
		{"step needs an action", nil, func(r *v1alpha1.Rollout) { steps(r)[4] = v1alpha1.CanaryStep{} },
			[]string{"spec.strategy.canary.steps[4]: Required value: a step must set exactly one of"}},
		{"step exactly one action", nil, func(r *v1alpha1.Rollout) { steps(r)[0].SetMirror = &v1alpha1.MirrorStep{Percent: 5} },
			[]string{"spec.strategy.canary.steps[0].setMirror: Forbidden: a step must set exactly one of"}},
		{"setWeight maximum 100", nil, func(r *v1alpha1.Rollout) { steps(r)[5].SetWeight = new(int32(101)) },
			[]string{"spec.strategy.canary.steps[5].setWeight: Invalid value: 101: must be between 0 and 100"}},
		{"pause duration positive", nil, func(r *v1alpha1.Rollout) { steps(r)[1].Pause.Duration = dur("0s") },
			[]string{`spec.strategy.canary.steps[1].pause.duration: Invalid value: "0s": must be greater than 0`}},
		{"pause without duration waits for promote", nil, func(r *v1alpha1.Rollout) { steps(r)[1].Pause.Duration = nil },
			nil},
		{"analysis templates min items 1", nil, func(r *v1alpha1.Rollout) { steps(r)[2].Analysis.Templates = nil },
			[]string{"spec.strategy.canary.steps[2].analysis.templates: Required value"}},
		{"analysis template name required", nil, func(r *v1alpha1.Rollout) { steps(r)[2].Analysis.Templates[0].Name = "" },
			[]string{"spec.strategy.canary.steps[2].analysis.templates[0].name: Required value"}},
		{"analysis template name valid", nil, func(r *v1alpha1.Rollout) { steps(r)[2].Analysis.Templates[0].Name = "Success" },
			[]string{`spec.strategy.canary.steps[2].analysis.templates[0].name: Invalid value: "Success"`}},
		{"analysis templates unique", nil, func(r *v1alpha1.Rollout) {
			steps(r)[2].Analysis.Templates = append(steps(r)[2].Analysis.Templates, v1alpha1.TemplateRef{Name: "success-rate"})
		}, []string{`spec.strategy.canary.steps[2].analysis.templates[1].name: Duplicate value: "success-rate"`}},
		{"analysis args unique", nil, func(r *v1alpha1.Rollout) {
			steps(r)[2].Analysis.Args = append(steps(r)[2].Analysis.Args, v1alpha1.Argument{Name: "threshold", Value: "0.9"})
		}, []string{`spec.strategy.canary.steps[2].analysis.args[1].name: Duplicate value: "threshold"`}},
		{"analysis arg name pattern", nil, func(r *v1alpha1.Rollout) { steps(r)[2].Analysis.Args[0].Name = "1st" },
			[]string{`spec.strategy.canary.steps[2].analysis.args[0].name: Invalid value: "1st": must match ^[a-zA-Z_][a-zA-Z0-9_]*$`}},
		{"analysis arg not built in", nil, func(r *v1alpha1.Rollout) { steps(r)[2].Analysis.Args[0].Name = "canaryRevision" },
			[]string{`spec.strategy.canary.steps[2].analysis.args[0].name: Invalid value: "canaryRevision": is supplied by Sluice`}},
		{"header route name pattern", nil, func(r *v1alpha1.Rollout) {
			steps(r)[3].SetHeaderRoute.Name = "Jason"
			steps(r)[6].SetHeaderRoute.Name = "Jason"
		},
			[]string{
				`spec.strategy.canary.steps[3].setHeaderRoute.name: Invalid value: "Jason"`,
				`spec.strategy.canary.steps[6].setHeaderRoute.name: Invalid value: "Jason"`,
			}},
		{"header route name max length 40", nil, func(r *v1alpha1.Rollout) {
			n := strings.Repeat("j", 41)
			steps(r)[3].SetHeaderRoute.Name, steps(r)[6].SetHeaderRoute.Name = n, n
		}, []string{
			"spec.strategy.canary.steps[3].setHeaderRoute.name: Too long: may not be more than 40",
			"spec.strategy.canary.steps[6].setHeaderRoute.name: Too long: may not be more than 40",
		}},
		{"header route match max items 8", nil, func(r *v1alpha1.Rollout) {
			for range 8 {
				steps(r)[3].SetHeaderRoute.Match = append(steps(r)[3].SetHeaderRoute.Match, jasonMatch()...)
			}
		}, []string{"spec.strategy.canary.steps[3].setHeaderRoute.match: Too many: 9: must have at most 8 items"}},
		{"header route removal needs a route in effect", nil, func(r *v1alpha1.Rollout) { steps(r)[6].SetHeaderRoute.Name = "mary" },
			[]string{`spec.strategy.canary.steps[6].setHeaderRoute.name: Invalid value: "mary": without match this step removes a header route`}},
		{"header route removal before it is set", nil, func(r *v1alpha1.Rollout) { steps(r)[0] = steps(r)[6] },
			[]string{`spec.strategy.canary.steps[0].setHeaderRoute.name: Invalid value: "jason"`}},
		{"header route removed twice", nil, func(r *v1alpha1.Rollout) { steps(r)[5] = steps(r)[6] },
			[]string{`spec.strategy.canary.steps[6].setHeaderRoute.name: Invalid value: "jason"`}},
		{"header route replaced while in effect", nil, func(r *v1alpha1.Rollout) { steps(r)[5] = steps(r)[3] },
			nil},
		{"setMirror maximum 100", nil, func(r *v1alpha1.Rollout) { steps(r)[4].SetMirror.Percent = 101 },
			[]string{"spec.strategy.canary.steps[4].setMirror.percent: Invalid value: 101: must be between 0 and 100"}},

		// route matches (through a header route)
		{"match not empty", nil, func(r *v1alpha1.Rollout) { steps(r)[3].SetHeaderRoute.Match[0] = v1alpha1.RouteMatch{} },
			[]string{"spec.strategy.canary.steps[3].setHeaderRoute.match[0]: Required value: must set at least one of headers, uri or cookies"}},
		{"header name pattern", nil, func(r *v1alpha1.Rollout) { steps(r)[3].SetHeaderRoute.Match[0].Headers[0].Name = "End-User" },
			[]string{`spec.strategy.canary.steps[3].setHeaderRoute.match[0].headers[0].name: Invalid value: "End-User"`}},
		{"header name pseudo-header allowed", nil, func(r *v1alpha1.Rollout) { steps(r)[3].SetHeaderRoute.Match[0].Headers[0].Name = ":authority" },
			nil},
		{"header match exactly one: none", nil, func(r *v1alpha1.Rollout) { steps(r)[3].SetHeaderRoute.Match[0].Headers[0].Exact = nil },
			[]string{"spec.strategy.canary.steps[3].setHeaderRoute.match[0].headers[0]: Required value: exactly one of exact, prefix, regex or present must be set"}},
		{"header match exactly one: two", nil, func(r *v1alpha1.Rollout) { steps(r)[3].SetHeaderRoute.Match[0].Headers[0].Regex = new("ja.*") },
			[]string{"spec.strategy.canary.steps[3].setHeaderRoute.match[0].headers[0].regex: Forbidden: exactly one of exact, prefix, regex or present must be set"}},
		{"header regex compiles as RE2", nil, func(r *v1alpha1.Rollout) {
			h := &steps(r)[3].SetHeaderRoute.Match[0].Headers[0]
			h.Exact, h.Regex = nil, new("(?=jason)")
		}, []string{`spec.strategy.canary.steps[3].setHeaderRoute.match[0].headers[0].regex: Invalid value: "(?=jason)": must be an RE2 regular expression`}},
		{"headers max items 16", nil, func(r *v1alpha1.Rollout) {
			m := &steps(r)[3].SetHeaderRoute.Match[0]
			for range 16 {
				m.Headers = append(m.Headers, m.Headers[0])
			}
		}, []string{"spec.strategy.canary.steps[3].setHeaderRoute.match[0].headers: Too many: 17: must have at most 16 items"}},
		{"uri exactly one: both", nil, func(r *v1alpha1.Rollout) {
			steps(r)[3].SetHeaderRoute.Match[0].URI = &v1alpha1.URIMatch{Exact: new("/a"), Prefix: new("/b")}
		}, []string{"spec.strategy.canary.steps[3].setHeaderRoute.match[0].uri.prefix: Forbidden: exactly one of exact or prefix must be set"}},
		{"uri exactly one: neither", nil, func(r *v1alpha1.Rollout) {
			steps(r)[3].SetHeaderRoute.Match[0].URI = &v1alpha1.URIMatch{}
		}, []string{"spec.strategy.canary.steps[3].setHeaderRoute.match[0].uri: Required value: exactly one of exact or prefix must be set"}},
		{"uri starts with slash", nil, func(r *v1alpha1.Rollout) {
			steps(r)[3].SetHeaderRoute.Match[0].URI = &v1alpha1.URIMatch{Prefix: new("api")}
		}, []string{`spec.strategy.canary.steps[3].setHeaderRoute.match[0].uri.prefix: Invalid value: "api": must start with /`}},
		{"cookie name pattern", nil, func(r *v1alpha1.Rollout) {
			steps(r)[3].SetHeaderRoute.Match[0].Cookies = []v1alpha1.CookieMatch{{Name: "a;b", Value: "1"}}
		}, []string{`spec.strategy.canary.steps[3].setHeaderRoute.match[0].cookies[0].name: Invalid value: "a;b"`}},
		{"cookies max items 16", nil, func(r *v1alpha1.Rollout) {
			for range 17 {
				steps(r)[3].SetHeaderRoute.Match[0].Cookies = append(steps(r)[3].SetHeaderRoute.Match[0].Cookies, v1alpha1.CookieMatch{Name: "c", Value: "1"})
			}
		}, []string{"spec.strategy.canary.steps[3].setHeaderRoute.match[0].cookies: Too many: 17: must have at most 16 items"}},

		// blueGreen
		{"preview needs match or hosts", blueGreen, func(r *v1alpha1.Rollout) { r.Spec.Strategy.BlueGreen.Preview = v1alpha1.PreviewSpec{} },
			[]string{"spec.strategy.blueGreen.preview: Required value: preview needs match or hosts"}},
		{"preview hosts only", blueGreen, func(r *v1alpha1.Rollout) { r.Spec.Strategy.BlueGreen.Preview.Match = nil },
			nil},
		{"preview match max items 8", blueGreen, func(r *v1alpha1.Rollout) {
			p := &r.Spec.Strategy.BlueGreen.Preview
			for range 8 {
				p.Match = append(p.Match, p.Match[0])
			}
		}, []string{"spec.strategy.blueGreen.preview.match: Too many: 9: must have at most 8 items"}},
		{"preview hosts max items 8", blueGreen, func(r *v1alpha1.Rollout) {
			p := &r.Spec.Strategy.BlueGreen.Preview
			p.Hosts = nil
			for i := range 9 {
				p.Hosts = append(p.Hosts, "p"+strings.Repeat("x", i))
			}
		}, []string{"spec.strategy.blueGreen.preview.hosts: Too many: 9: must have at most 8 items"}},
		{"preview host is a DNS name", blueGreen, func(r *v1alpha1.Rollout) { r.Spec.Strategy.BlueGreen.Preview.Hosts[0] = "http://preview" },
			[]string{`spec.strategy.blueGreen.preview.hosts[0]: Invalid value: "http://preview"`}},
		{"preview host is not a service host", blueGreen, func(r *v1alpha1.Rollout) { r.Spec.Strategy.BlueGreen.Preview.Hosts[0] = "reviews" },
			[]string{`spec.strategy.blueGreen.preview.hosts[0]: Invalid value: "reviews": is also a service host`}},
		{"prePromotionAnalysis checked", blueGreen, func(r *v1alpha1.Rollout) { r.Spec.Strategy.BlueGreen.PrePromotionAnalysis.Templates = nil },
			[]string{"spec.strategy.blueGreen.prePromotionAnalysis.templates: Required value"}},
		{"postPromotionAnalysis checked", blueGreen, func(r *v1alpha1.Rollout) {
			r.Spec.Strategy.BlueGreen.PostPromotionAnalysis.Args = []v1alpha1.Argument{{Name: "a"}, {Name: "a"}}
		}, []string{`spec.strategy.blueGreen.postPromotionAnalysis.args[1].name: Duplicate value: "a"`}},
		{"autoPromotionSeconds minimum 0", blueGreen, func(r *v1alpha1.Rollout) { r.Spec.Strategy.BlueGreen.AutoPromotionSeconds = new(int32(-1)) },
			[]string{"spec.strategy.blueGreen.autoPromotionSeconds: Invalid value: -1: must be greater than or equal to 0"}},

		// darkRelease
		{"dark match min items 1", darkRelease, func(r *v1alpha1.Rollout) { r.Spec.Strategy.DarkRelease.Match = nil },
			[]string{"spec.strategy.darkRelease.match: Required value"}},
		{"dark match max items 8", darkRelease, func(r *v1alpha1.Rollout) {
			d := r.Spec.Strategy.DarkRelease
			for range 7 {
				d.Match = append(d.Match, d.Match[0])
			}
		}, []string{"spec.strategy.darkRelease.match: Too many: 9: must have at most 8 items"}},
		{"dark match checked", darkRelease, func(r *v1alpha1.Rollout) { r.Spec.Strategy.DarkRelease.Match[1].Cookies[0].Name = "" },
			[]string{"spec.strategy.darkRelease.match[1].cookies[0].name: Required value"}},
		{"dark duration positive", darkRelease, func(r *v1alpha1.Rollout) { r.Spec.Strategy.DarkRelease.Duration = dur("-1m") },
			[]string{`spec.strategy.darkRelease.duration: Invalid value: "-1m0s": must be greater than 0`}},
		{"dark analysis checked", darkRelease, func(r *v1alpha1.Rollout) { r.Spec.Strategy.DarkRelease.Analysis.Templates[0].Name = "" },
			[]string{"spec.strategy.darkRelease.analysis.templates[0].name: Required value"}},
		{"dark steps checked", darkRelease, func(r *v1alpha1.Rollout) { r.Spec.Strategy.DarkRelease.Steps[1].SetWeight = new(int32(-5)) },
			[]string{"spec.strategy.darkRelease.steps[1].setWeight: Invalid value: -5: must be between 0 and 100"}},

		// background analysis
		{"background analysis templates required", nil, func(r *v1alpha1.Rollout) { r.Spec.Analysis.Templates = nil },
			[]string{"spec.analysis.templates: Required value"}},
		{"startingStep below number of steps", nil, func(r *v1alpha1.Rollout) { r.Spec.Analysis.StartingStep = new(int32(7)) },
			[]string{"spec.analysis.startingStep: Invalid value: 7: must be less than the number of steps (7)"}},
		{"startingStep minimum 0", nil, func(r *v1alpha1.Rollout) { r.Spec.Analysis.StartingStep = new(int32(-1)) },
			[]string{"spec.analysis.startingStep: Invalid value: -1: must be greater than or equal to 0"}},
		{"startingStep counts darkRelease steps", darkRelease, func(r *v1alpha1.Rollout) {
			r.Spec.Analysis = &v1alpha1.BackgroundAnalysis{AnalysisStep: *analysis("success-rate"), StartingStep: new(int32(2))}
		}, []string{"spec.analysis.startingStep: Invalid value: 2: must be less than the number of steps (2)"}},
		{"startingStep not with blueGreen", blueGreen, func(r *v1alpha1.Rollout) {
			r.Spec.Analysis = &v1alpha1.BackgroundAnalysis{AnalysisStep: *analysis("success-rate"), StartingStep: new(int32(0))}
		}, []string{"spec.analysis.startingStep: Forbidden: blueGreen has no steps"}},

		// windows
		{"windows max items 32", nil, func(r *v1alpha1.Rollout) {
			for range 31 {
				r.Spec.Windows = append(r.Spec.Windows, r.Spec.Windows[0])
			}
		}, []string{"spec.windows: Too many: 33: must have at most 32 items"}},
		{"window kind required", nil, func(r *v1alpha1.Rollout) { r.Spec.Windows[1].Kind = "" },
			[]string{"spec.windows[1].kind: Required value"}},
		{"window kind enum", nil, func(r *v1alpha1.Rollout) { r.Spec.Windows[1].Kind = "Block" },
			[]string{`spec.windows[1].kind: Unsupported value: "Block": supported values: "Allow", "Deny"`}},
		{"window schedule required", nil, func(r *v1alpha1.Rollout) { r.Spec.Windows[0].Schedule = "" },
			[]string{"spec.windows[0].schedule: Required value"}},
		{"window schedule parses", nil, func(r *v1alpha1.Rollout) { r.Spec.Windows[0].Schedule = "0 25 * * *" },
			[]string{`spec.windows[0].schedule: Invalid value: "0 25 * * *": must be a five-field cron expression`}},
		{"window schedule has five fields", nil, func(r *v1alpha1.Rollout) { r.Spec.Windows[0].Schedule = "0 0 9 * * 1-5" },
			[]string{`spec.windows[0].schedule: Invalid value: "0 0 9 * * 1-5"`}},
		{"window schedule without zone prefix", nil, func(r *v1alpha1.Rollout) { r.Spec.Windows[0].Schedule = "CRON_TZ=UTC 0 9 * * 1-5" },
			[]string{`spec.windows[0].schedule: Invalid value: "CRON_TZ=UTC 0 9 * * 1-5": set the time zone in timeZone`}},
		{"window schedule not @every", nil, func(r *v1alpha1.Rollout) { r.Spec.Windows[0].Schedule = "@every 1h" },
			[]string{`spec.windows[0].schedule: Invalid value: "@every 1h": @every is not supported`}},
		{"window duration required", nil, func(r *v1alpha1.Rollout) { r.Spec.Windows[0].Duration = metav1.Duration{} },
			[]string{"spec.windows[0].duration: Required value"}},
		{"window duration positive", nil, func(r *v1alpha1.Rollout) { r.Spec.Windows[0].Duration = metav1.Duration{Duration: -time.Hour} },
			[]string{`spec.windows[0].duration: Invalid value: "-1h0m0s": must be greater than 0`}},
		{"window time zone loads", nil, func(r *v1alpha1.Rollout) { r.Spec.Windows[0].TimeZone = "Europe/Berln" },
			[]string{`spec.windows[0].timeZone: Invalid value: "Europe/Berln"`}},
		{"window time zone not Local", nil, func(r *v1alpha1.Rollout) { r.Spec.Windows[0].TimeZone = "Local" },
			[]string{`spec.windows[0].timeZone: Invalid value: "Local"`}},

		// rollback, deadlines
		{"onAnalysisFailure enum", nil, func(r *v1alpha1.Rollout) { r.Spec.Rollback.OnAnalysisFailure = "Retry" },
			[]string{`spec.rollback.onAnalysisFailure: Unsupported value: "Retry": supported values: "Abort", "Pause"`}},
		{"onNack enum", nil, func(r *v1alpha1.Rollout) { r.Spec.Rollback.OnNack = "abort" },
			[]string{`spec.rollback.onNack: Unsupported value: "abort"`}},
		{"progressDeadlineSeconds minimum 1", nil, func(r *v1alpha1.Rollout) { r.Spec.ProgressDeadlineSeconds = new(int32(0)) },
			[]string{"spec.progressDeadlineSeconds: Invalid value: 0: must be greater than or equal to 1"}},
		{"scaleDownDelaySeconds minimum 0", nil, func(r *v1alpha1.Rollout) { r.Spec.ScaleDownDelaySeconds = new(int32(-30)) },
			[]string{"spec.scaleDownDelaySeconds: Invalid value: -30: must be greater than or equal to 0"}},

		// backend
		{"backend version required", standalone, func(r *v1alpha1.Rollout) { r.Spec.Backend.Version = "" },
			[]string{"spec.backend.version: Required value"}},
		{"backend version pattern", standalone, func(r *v1alpha1.Rollout) { r.Spec.Backend.Version = "v2/" },
			[]string{`spec.backend.version: Invalid value: "v2/": must match`}},
		{"backend version max length 63", standalone, func(r *v1alpha1.Rollout) { r.Spec.Backend.Version = longName },
			[]string{"spec.backend.version: Too long: may not be more than 63"}},
		{"backend endpoints min items 1", standalone, func(r *v1alpha1.Rollout) { r.Spec.Backend.Endpoints = nil },
			[]string{"spec.backend.endpoints: Required value"}},
		{"backend endpoint host:port", standalone, func(r *v1alpha1.Rollout) { r.Spec.Backend.Endpoints[0] = "10.0.0.7" },
			[]string{`spec.backend.endpoints[0]: Invalid value: "10.0.0.7": must be host:port`}},
		{"backend endpoint port range", standalone, func(r *v1alpha1.Rollout) { r.Spec.Backend.Endpoints[1] = "[fd00::7]:0" },
			[]string{`spec.backend.endpoints[1]: Invalid value: "[fd00::7]:0": port "0" must be a number between 1 and 65535`}},
		{"backend endpoint port numeric", standalone, func(r *v1alpha1.Rollout) { r.Spec.Backend.Endpoints[1] = "reviews:http" },
			[]string{`spec.backend.endpoints[1]: Invalid value: "reviews:http": port "http"`}},
		{"backend endpoint host valid", standalone, func(r *v1alpha1.Rollout) { r.Spec.Backend.Endpoints[2] = "reviews_v2:9080" },
			[]string{`spec.backend.endpoints[2]: Invalid value: "reviews_v2:9080": host "reviews_v2" must be an IP address or a DNS name`}},
		{"backend endpoints unique", standalone, func(r *v1alpha1.Rollout) { r.Spec.Backend.Endpoints[2] = "10.0.0.7:9080" },
			[]string{`spec.backend.endpoints[2]: Duplicate value: "10.0.0.7:9080"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := tc.base
			if base == nil {
				base = canary
			}
			r := base()
			tc.mutate(r)
			checkErrors(t, ValidateRollout(r), tc.want)
		})
	}
}

func TestRolloutReportsEveryProblem(t *testing.T) {
	t.Parallel()
	r := canary()
	r.Name = ""
	steps(r)[0].SetWeight = new(int32(101))
	r.Spec.Windows[0].TimeZone = "Nowhere/Else"
	checkErrors(t, ValidateRollout(r), []string{
		"metadata.name: Required value",
		"spec.strategy.canary.steps[0].setWeight: Invalid value: 101: must be between 0 and 100",
		`spec.windows[0].timeZone: Invalid value: "Nowhere/Else"`,
	})
}

func TestNilObjects(t *testing.T) {
	t.Parallel()
	if errs := ValidateRollout(nil); len(errs) != 1 {
		t.Errorf("ValidateRollout(nil) = %v, want one error", errs)
	}
	if errs := ValidateAnalysisTemplate(nil); len(errs) != 1 {
		t.Errorf("ValidateAnalysisTemplate(nil) = %v, want one error", errs)
	}
}
