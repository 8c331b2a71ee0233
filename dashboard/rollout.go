package dashboard

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/untrusted"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// historyLimit is how many events the rollout page reads.
const historyLimit = 200

// rolloutPage is one Rollout.
type rolloutPage struct {
	base
	R rolloutapi.Rollout
	// Operate is true when the viewer may run commands on R.
	Operate bool
	Href    string
	Events  string
	Flash   *flash
	Actions []actionView
	Steps   []stepView
	Traffic []hostView
	// PlanVersion is the plan in force, if one was published.
	PlanVersion string
	Plane       planeView
	Analysis    []runView
	Git         gitView
	History     []eventView
	// HistoryHidden says why the events are not shown (the viewer may
	// not read them).
	HistoryHidden string
	LastCommand   *v1alpha1.CommandRecord
}

// actionView is one command on the page: a link to its confirmation, or
// the engine's reason why not.
type actionView struct {
	Kind    v1alpha1.CommandKind
	Label   string
	Allowed bool
	Result  string
	Href    string
	Danger  bool
}

// actionLabels are the buttons' words.
var actionLabels = map[v1alpha1.CommandKind]string{
	v1alpha1.CommandPromote: "Promote", v1alpha1.CommandPromoteFull: "Promote fully", v1alpha1.CommandAbort: "Abort",
	v1alpha1.CommandRetry: "Retry", v1alpha1.CommandPause: "Pause", v1alpha1.CommandResume: "Resume",
}

type stepView struct {
	N        int
	Label    string
	State    rolloutapi.StepState
	Started  *time.Time
	Duration time.Duration
	// PauseEnds is when the current timed pause ends.
	PauseEnds *time.Time
	Acked     *time.Time
}

type eventView struct {
	Time                  time.Time
	Type, Reason, Message string
}

func (d *Dashboard) rolloutData(r *http.Request, s *session, root string) (rolloutPage, error) {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	b := s.viewer.Backend()
	ro, err := b.Get(r.Context(), ns, name)
	if err != nil {
		return rolloutPage{}, err
	}
	p := rolloutPage{base: d.base(r, s, ro.Key()), R: ro, LastCommand: ro.Status.LastCommand}
	hist, err := b.History(r.Context(), ns, name, historyLimit)
	switch {
	case errors.Is(err, rolloutapi.ErrForbidden), errors.Is(err, rolloutapi.ErrUnauthorized):
		// One who may read the Rollout but not its events sees the rest.
		p.HistoryHidden = err.Error()
	case err != nil:
		return rolloutPage{}, err
	}
	p.Operate, _ = d.canOperate(r.Context(), s, ns, name)
	p.Root = root
	p.Href = root + rolloutPath(ns, name)
	p.Events = p.Href + "/events"
	if p.Operate {
		for _, k := range rolloutapi.CommandKinds {
			o, _ := ro.Option(k)
			p.Actions = append(p.Actions, actionView{
				Kind: k, Label: actionLabels[k], Allowed: o.Allowed, Result: o.Result,
				Href:   p.Href + "/confirm/" + string(k),
				Danger: k == v1alpha1.CommandAbort || k == v1alpha1.CommandPromoteFull,
			})
		}
	}
	for _, st := range rolloutapi.Timeline(ro, hist) {
		p.Steps = append(p.Steps, stepView{N: st.Index + 1, Label: st.Label, State: st.State, Started: st.Started,
			Duration: st.Duration(), PauseEnds: st.PauseEnds, Acked: st.Acknowledged})
	}
	p.Traffic = trafficOf(ro)
	if ro.Plan != nil {
		p.PlanVersion = ro.Plan.Version
	}
	p.Plane = planeOf(ro)
	p.Analysis = analysisOf(ro)
	p.Git = gitOf(ro)
	for _, e := range slices.Backward(hist) {
		p.History = append(p.History, eventView{Time: e.Time, Type: e.Type, Reason: e.Reason, Message: e.Message})
	}
	return p, nil
}

func (d *Dashboard) rollout(w http.ResponseWriter, r *http.Request, s *session) {
	p, err := d.rolloutData(r, s, root(r))
	if err != nil {
		d.backendError(w, r, s, err)
		return
	}
	p.Flash = d.sessions.takeFlash(s.id)
	d.render(w, http.StatusOK, "rollout", p)
}

// rolloutFragment renders the live part of a rollout's page for its event
// stream, whose URL is one level below the page's.
func (d *Dashboard) rolloutFragment(r *http.Request, s *session) ([]byte, error) {
	p, err := d.rolloutData(r, s, strings.TrimPrefix(root(r), "../"))
	if err != nil {
		return nil, err
	}
	return d.fragment("rollout", "live", p)
}

// confirmPage asks before a command, naming the rollout and what the
// engine says the command will do.
type confirmPage struct {
	base
	R      rolloutapi.Rollout
	Action actionView
	Back   string
	Post   string
}

func (d *Dashboard) confirm(w http.ResponseWriter, r *http.Request, s *session) {
	kind := v1alpha1.CommandKind(r.PathValue("kind"))
	if err := rolloutapi.ValidCommand(kind); err != nil {
		d.backendError(w, r, s, err)
		return
	}
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	if ok, why := d.canOperate(r.Context(), s, ns, name); !ok {
		d.errorPage(w, r, s, http.StatusForbidden, why)
		return
	}
	ro, err := s.viewer.Backend().Get(r.Context(), ns, name)
	if err != nil {
		d.backendError(w, r, s, err)
		return
	}
	o, _ := ro.Option(kind)
	p := confirmPage{base: d.base(r, s, actionLabels[kind]+" "+ro.Key()), R: ro}
	href := p.Root + rolloutPath(ro.Namespace, ro.Name)
	p.Action = actionView{Kind: kind, Label: actionLabels[kind], Allowed: o.Allowed, Result: o.Result,
		Danger: kind == v1alpha1.CommandAbort || kind == v1alpha1.CommandPromoteFull}
	p.Back, p.Post = href, href+"/commands/"+string(kind)
	d.render(w, http.StatusOK, "confirm", p)
}

// text bounds outside text that reaches a page by a way that did not
// bound it already.
func text(s string) string { return untrusted.Text(s, 2048) }
