package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/dashboard"
	"github.com/sluicehq/sluice/kube/clusterapi"
	"github.com/sluicehq/sluice/rolloutapi"
)

// dashboardFlags configure the web dashboard that `sluice run` serves on
// its API listener.
type dashboardFlags struct {
	path         string
	readOnly     bool
	secureCookie bool
}

func (f *dashboardFlags) addFlags(fl *pflag.FlagSet) {
	fl.StringVar(&f.path, "dashboard-path", "/dashboard", `where the web dashboard is served on the API listener (--http-address); "off" serves none`)
	fl.BoolVar(&f.readOnly, "dashboard-read-only", false, "the dashboard shows everything but offers and runs no command, whatever the token")
	fl.BoolVar(&f.secureCookie, "dashboard-secure-cookie", false, "mark the dashboard's session cookie Secure over plain HTTP too: for a TLS-terminating proxy in front (over http.tls it always is)")
}

// check refuses a path the dashboard cannot have: the root, or one of the
// API's.
func (f *dashboardFlags) check() error {
	if f.path == "off" {
		return nil
	}
	return dashboard.CheckPath("--dashboard-path", f.path, "/api", "/healthz", "/readyz")
}

func (f *dashboardFlags) on() bool { return f.path != "off" && f.path != "" }

// serve returns api, with the dashboard beside it when it is on.
func (f *dashboardFlags) serve(api http.Handler, b rolloutapi.Backend, tokens []rolloutapi.Token, insecureNoAuth bool) (http.Handler, error) {
	if !f.on() {
		return api, nil
	}
	d, err := dashboard.New(b, dashboard.Options{Tokens: tokens, InsecureNoAuth: insecureNoAuth, ReadOnly: f.readOnly, SecureCookie: f.secureCookie})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/", api)
	dashboard.Mount(mux, f.path, d)
	return mux, nil
}

// url is where the dashboard is, for the log.
func (f *dashboardFlags) url(s *httpServer) string {
	if !f.on() {
		return "off"
	}
	scheme := "http"
	if s.tls {
		scheme = "https"
	}
	return scheme + "://" + s.addr + strings.TrimSuffix(f.path, "/") + "/"
}

func init() { addCommand(newDashboardCommand) }

// dashboardServeFlags are those of `sluice dashboard`.
type dashboardServeFlags struct {
	target
	listen   string
	refresh  time.Duration
	readOnly bool
}

func newDashboardCommand() *cobra.Command {
	var f dashboardServeFlags
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve the web dashboard on this machine, for a cluster or a sluice run server",
		Long: `Dashboard serves the web dashboard on this machine, at --listen (loopback
only), for the Rollouts of a Kubernetes cluster or of a 'sluice run' server,
so that you can watch and steer them in a browser.

Against a cluster it reads and sends commands with your kubeconfig's
credentials, as the CLI verbs do: the API server's RBAC decides what you see
and may do, and a Rollout offers its buttons only where you may patch it.
It lists the Rollouts of -n (the context's namespace) or, with -A, of every
namespace. It prints a link with a one-time key that logs you in, so that
other users of this machine cannot borrow your credentials through it.

Against a server (--server) it reads and sends commands with your token
(--token or $SLUICE_TOKEN): the server records every command under the
token's name, and refuses commands to a read token. The local page asks
for the same token once. Without a token (a server run with
--insecure-no-auth) the page asks for none.

Open pages change as the Rollouts do: the server's event stream
(/api/v1/watch) or a watch of the cluster's Rollouts says when, and the
page reads again at once. Every --refresh it reads again anyway, for what
changes without a Rollout changing (connected proxies, Events); where no
stream can be opened (a server too old to stream, a user who may not
watch Rollouts) that is all it does. 'sluice run' serves the same
dashboard itself at --dashboard-path, and 'sluice controller' to people
with their own Kubernetes identity (docs/dashboard.md).`,
		Example: `  sluice dashboard                      # the cluster of ~/.kube/config, namespace of its context
  sluice dashboard --context prod -A
  sluice dashboard --server https://sluice.example.com:8080
  SLUICE_TOKEN=... sluice dashboard --server https://sluice.example.com:8080 --listen 127.0.0.1:9000`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !loopbackOnly(f.listen) {
				return usageError{fmt.Errorf("--listen %s: the local dashboard acts with your credentials, so it listens on loopback only (127.0.0.1 or [::1])", f.listen)}
			}
			if f.refresh < 100*time.Millisecond {
				return usageError{fmt.Errorf("--refresh %s: at least 100ms", f.refresh)}
			}
			cluster, err := f.useCluster(os.Getenv, fileExists)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var h http.Handler
			var what, path string
			if cluster {
				h, what, path, err = f.clusterHandler(ctx)
			} else {
				f.settleServer()
				what = f.server
				h, err = f.handler(ctx)
			}
			if err != nil {
				return err
			}
			l, err := net.Listen("tcp", f.listen)
			if err != nil {
				return exitError{code: exitFailure, msg: fmt.Sprintf("--listen: %v", err)}
			}
			srv := &http.Server{Handler: h, ReadHeaderTimeout: httpReadHeaderTimeout, ReadTimeout: httpReadTimeout,
				WriteTimeout: httpWriteTimeout, IdleTimeout: httpIdleTimeout, MaxHeaderBytes: httpMaxHeaderBytes}
			go func() {
				<-ctx.Done()
				shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				defer cancel()
				_ = srv.Shutdown(shut)
			}()
			fmt.Fprintf(cmd.OutOrStdout(), "Dashboard of %s at http://%s/%s (Ctrl-C to stop)\n", what, l.Addr(), path)
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return exitError{code: exitFailure, msg: err.Error()}
			}
			return nil
		},
	}
	f.addFlags(cmd)
	fl := cmd.Flags()
	fl.BoolVarP(&f.allNamespaces, "all-namespaces", "A", false, "against a cluster: the Rollouts of every namespace, not just -n")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8090", "where to serve the dashboard on this machine (loopback only)")
	fl.DurationVar(&f.refresh, "refresh", time.Second, "how often a live page reads again besides when the server's event stream or the cluster's watch says a Rollout changed (and only then, where neither can be opened)")
	fl.BoolVar(&f.readOnly, "read-only", false, "offer no command, whatever your rights")
	return cmd
}

// handler is the local dashboard over a server's API, live by the
// server's event stream for as long as ctx lasts.
func (f *dashboardServeFlags) handler(ctx context.Context) (http.Handler, error) {
	if f.refresh < 100*time.Millisecond {
		return nil, usageError{fmt.Errorf("--refresh %s: at least 100ms", f.refresh)}
	}
	o := dashboard.Options{ReadOnly: f.readOnly, Refresh: f.refresh, InsecureNoAuth: f.token == ""}
	if f.token != "" {
		// The server knows the token's name and role; here it only
		// unlocks the page, and the server decides what it may do.
		tok, err := rolloutapi.ParseToken("--token", whoami(), rolloutapi.RoleOperate, rolloutapi.HashToken(f.token))
		if err != nil {
			// A login name a token name cannot be.
			tok, err = rolloutapi.ParseToken("--token", "you", rolloutapi.RoleOperate, rolloutapi.HashToken(f.token))
		}
		if err != nil {
			return nil, usageError{err}
		}
		o.Tokens = []rolloutapi.Token{tok}
	}
	c := &rolloutapi.Client{BaseURL: f.server, Token: f.token}
	d, err := dashboard.New(rolloutapi.NewLive(ctx, c, c, f.refresh), o)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// clusterHandler is the local dashboard over a cluster, with the
// kubeconfig's credentials, unlocked by a random key: it returns the
// handler, what it shows (for the banner) and the path of the link that
// logs in.
func (f *dashboardServeFlags) clusterHandler(ctx context.Context) (http.Handler, string, string, error) {
	b, err := f.backend()
	if err != nil {
		return nil, "", "", err
	}
	cb, ok := b.(*clusterapi.Backend)
	if !ok {
		return nil, "", "", fmt.Errorf("dashboard: %T is not a cluster", b)
	}
	me, err := cb.Self(ctx)
	if err != nil {
		return nil, "", "", backendError(err)
	}
	key, _, err := rolloutapi.NewToken()
	if err != nil {
		return nil, "", "", err
	}
	d, err := dashboard.New(nil, dashboard.Options{
		Access: dashboard.OneViewer(key, liveViewer{Viewer: me, live: rolloutapi.NewLive(ctx, cb, cb, f.refresh)}), LinkLogin: true, ReadOnly: f.readOnly, Refresh: f.refresh,
		LoginHelp: "Open the link sluice dashboard printed, or paste its key (sluice_...): this page acts with your kubeconfig's credentials.",
	})
	if err != nil {
		return nil, "", "", err
	}
	where := "namespace " + f.namespace
	if f.allNamespaces {
		where = "all namespaces"
	}
	what := fmt.Sprintf("cluster %s (%s) as %s", cb.Host(), where, me.Identity().Name)
	return d, what, "login?key=" + url.QueryEscape(key), nil
}

// liveViewer is a viewer whose Backend is kept live by a watch of the
// cluster's Rollouts: their pages change as soon as a Rollout does.
type liveViewer struct {
	rolloutapi.Viewer
	live *rolloutapi.Live
}

func (v liveViewer) Backend() rolloutapi.Backend { return v.live }
