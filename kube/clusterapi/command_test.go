package clusterapi

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/sluicehq/sluice/kube/controller"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// playController applies every command annotation in ns as the controller
// does — once per ID, into status.lastCommand — with the result result
// gives, until the test ends. A short delay first makes the Backend wait
// through its watch rather than find the answer in the patch's response.
// It polls: it is the scenery here, not what is under test.
func playController(t *testing.T, c client.Client, ns string, result func(controller.Command) string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			var list v1alpha1.RolloutList
			if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
				continue
			}
			for i := range list.Items {
				ro := &list.Items[i]
				cmd, err := controller.ParseCommand(ro.Annotations[controller.CommandAnnotation])
				if err != nil || (ro.Status.LastCommand != nil && ro.Status.LastCommand.ID == cmd.ID) {
					continue
				}
				ro.Status.LastCommand = &v1alpha1.CommandRecord{ID: cmd.ID, Kind: cmd.Kind, By: cmd.By, At: metav1.Now(), Result: result(cmd)}
				// A conflict is retried at the next tick, as a controller would.
				_ = c.Status().Update(ctx, ro)
			}
		}
	}()
}

func lastCommand(t *testing.T, c client.Client, ns, name string) *v1alpha1.CommandRecord {
	t.Helper()
	ro := &v1alpha1.Rollout{}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, ro); err != nil {
		t.Fatal(err)
	}
	return ro.Status.LastCommand
}

func TestCommandWaitsForTheEngine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		kind        v1alpha1.CommandKind
		result      string
		wantRefused bool
	}{
		{name: "applied", kind: v1alpha1.CommandPause, result: "paused"},
		{name: "refused", kind: v1alpha1.CommandRetry, result: "refused: the rollout is not aborted", wantRefused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := admin(t)
			ns := newNamespace(t, c)
			newRollout(t, c, ns, "checkout")
			playController(t, c, ns, func(controller.Command) string { return tc.result })
			// The user the API server knows, not what the client states,
			// is who the command records.
			b := backendAs(t, "alice", Options{User: "kubeconfig-entry"})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			resp, err := b.Command(ctx, ns, "checkout", rolloutapi.CommandRequest{Kind: tc.kind, By: "claimed"})
			if err != nil {
				t.Fatal(err)
			}
			if resp.ID == "" || resp.Kind != tc.kind || resp.Result != tc.result || resp.Refused != tc.wantRefused {
				t.Fatalf("Command = %+v, want %s with result %q, refused %v", resp, tc.kind, tc.result, tc.wantRefused)
			}
			if lc := lastCommand(t, c, ns, "checkout"); lc == nil || lc.ID != resp.ID || lc.By != "alice" {
				t.Fatalf("status.lastCommand = %+v, want ID %s by alice", lc, resp.ID)
			}
		})
	}
}

func TestCommandFailures(t *testing.T) {
	t.Parallel()
	c := admin(t)
	ns := newNamespace(t, c)
	newRollout(t, c, ns, "checkout")
	unreachable := rest.CopyConfig(user(t, "alice", "system:masters"))
	unreachable.Host = "https://127.0.0.1:1"
	for _, tc := range []struct {
		name    string
		cfg     *rest.Config
		rollout string
		kind    v1alpha1.CommandKind
		timeout time.Duration
		want    error
		wantMsg string
		then    func(t *testing.T)
	}{
		{name: "no such rollout", rollout: "nothing", want: rolloutapi.ErrNotFound, wantMsg: `"nothing" not found`},
		{name: "unknown command", kind: "Rollback", want: rolloutapi.ErrBadRequest, wantMsg: "unknown command"},
		{name: "no rights", cfg: user(t, "mallory"), want: rolloutapi.ErrUnauthorized, wantMsg: `User "mallory" cannot patch`},
		{name: "server unreachable", cfg: unreachable, want: rolloutapi.ErrUnavailable, wantMsg: "127.0.0.1:1"},
		// Nothing plays the controller here.
		{name: "no controller", timeout: 500 * time.Millisecond, want: rolloutapi.ErrUnavailable, wantMsg: "is `sluice controller` running?",
			then: func(t *testing.T) {
				// The command the controller never applied stays queued.
				ro := &v1alpha1.Rollout{}
				if err := c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "checkout"}, ro); err != nil {
					t.Fatal(err)
				}
				if cmd, err := controller.ParseCommand(ro.Annotations[controller.CommandAnnotation]); err != nil || cmd.By != "alice" {
					t.Fatalf("annotation after the timeout: %+v, %v; want alice's command", cmd, err)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg
			if cfg == nil {
				cfg = user(t, "alice", "system:masters")
			}
			b, err := New(cfg, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if tc.rollout == "" {
				tc.rollout = "checkout"
			}
			if tc.kind == "" {
				tc.kind = v1alpha1.CommandPromote
			}
			if tc.timeout == 0 {
				tc.timeout = 30 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			resp, err := b.Command(ctx, ns, tc.rollout, rolloutapi.CommandRequest{Kind: tc.kind})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("Command = %+v, %v; want %v containing %q", resp, err, tc.want, tc.wantMsg)
			}
			if tc.then != nil {
				tc.then(t)
			}
		})
	}
}

// Where the API server will not say who the credentials belong to, the
// command names the impersonated user, else the kubeconfig's user entry,
// else what the client stated.
func TestCommandIdentityFallback(t *testing.T) {
	t.Parallel()
	refusals := map[string]error{
		"forbidden":  apierrors.NewForbidden(schema.GroupResource{Group: "authentication.k8s.io", Resource: "selfsubjectreviews"}, "", errors.New("no")),
		"not served": apierrors.NewNotFound(schema.GroupResource{Group: "authentication.k8s.io", Resource: "selfsubjectreviews"}, ""),
	}
	for _, tc := range []struct {
		name, refusal, impersonated, user, stated, want string
	}{
		{name: "kubeconfig user", refusal: "forbidden", user: "dev-cluster-admin", stated: "alice", want: "dev-cluster-admin"},
		{name: "impersonated", refusal: "not served", impersonated: "bob", user: "dev-cluster-admin", stated: "alice", want: "bob"},
		{name: "stated", refusal: "forbidden", stated: "alice", want: "alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := admin(t)
			ns := newNamespace(t, c)
			newRollout(t, c, ns, "checkout")
			playController(t, c, ns, func(controller.Command) string { return "paused" })
			refusing := interceptor.NewClient(c, interceptor.Funcs{
				Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
					if _, ok := obj.(*authenticationv1.SelfSubjectReview); ok {
						return refusals[tc.refusal]
					}
					return c.Create(ctx, obj, opts...)
				},
			})
			b := newBackend(refusing, Options{User: tc.user})
			b.impersonated = tc.impersonated
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			resp, err := b.Command(ctx, ns, "checkout", rolloutapi.CommandRequest{Kind: v1alpha1.CommandPause, By: tc.stated})
			if err != nil {
				t.Fatal(err)
			}
			if lc := lastCommand(t, c, ns, "checkout"); lc == nil || lc.ID != resp.ID || lc.By != tc.want {
				t.Fatalf("status.lastCommand = %+v, want by %q", lc, tc.want)
			}
		})
	}
}
