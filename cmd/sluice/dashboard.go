package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/dashboard"
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
	server   string
	token    string
	listen   string
	refresh  time.Duration
	readOnly bool
}

func newDashboardCommand() *cobra.Command {
	var f dashboardServeFlags
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve the web dashboard on this machine for a sluice run server",
		Long: `Dashboard serves the web dashboard of a 'sluice run' server (--server) on
this machine, at --listen (loopback only), so that you can watch and steer
its rollouts in a browser without exposing the server's own listener.

It reads and sends commands with your token (--token or $SLUICE_TOKEN), as
the CLI verbs do: the server records every command under the token's name,
and refuses commands to a read token. The local page asks for the same token
once, so that other users of this machine cannot borrow it. Without a token
(a server run with --insecure-no-auth) the page asks for none.

The page is kept live by looking at the server every --refresh.
'sluice run' serves the same dashboard itself at --dashboard-path.`,
		Example: `  sluice dashboard --server https://sluice.example.com:8080
  SLUICE_TOKEN=... sluice dashboard --listen 127.0.0.1:9000`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("server") {
				if s := os.Getenv("SLUICE_SERVER"); s != "" {
					f.server = s
				}
			}
			if !loopbackOnly(f.listen) {
				return usageError{fmt.Errorf("--listen %s: the local dashboard acts with your token, so it listens on loopback only (127.0.0.1 or [::1])", f.listen)}
			}
			h, err := f.handler()
			if err != nil {
				return err
			}
			l, err := net.Listen("tcp", f.listen)
			if err != nil {
				return exitError{code: exitFailure, msg: fmt.Sprintf("--listen: %v", err)}
			}
			srv := &http.Server{Handler: h, ReadHeaderTimeout: httpReadHeaderTimeout, ReadTimeout: httpReadTimeout,
				WriteTimeout: httpWriteTimeout, IdleTimeout: httpIdleTimeout, MaxHeaderBytes: httpMaxHeaderBytes}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				defer cancel()
				_ = srv.Shutdown(shut)
			}()
			fmt.Fprintf(cmd.OutOrStdout(), "Dashboard of %s at http://%s/ (Ctrl-C to stop)\n", f.server, l.Addr())
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return exitError{code: exitFailure, msg: err.Error()}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.server, "server", defaultServer, "address of the `sluice run` server (env SLUICE_SERVER)")
	fl.StringVar(&f.token, "token", os.Getenv("SLUICE_TOKEN"), "your token for the server (env SLUICE_TOKEN)")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8090", "where to serve the dashboard on this machine (loopback only)")
	fl.DurationVar(&f.refresh, "refresh", 500*time.Millisecond, "how often a live page looks at the server")
	fl.BoolVar(&f.readOnly, "read-only", false, "offer no command, whatever the token")
	return cmd
}

// handler is the local dashboard over the server's API.
func (f *dashboardServeFlags) handler() (http.Handler, error) {
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
	d, err := dashboard.New(&rolloutapi.Client{BaseURL: f.server, Token: f.token}, o)
	if err != nil {
		return nil, err
	}
	return d, nil
}
