package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/standalone/api"
)

// Exit codes of the verbs that talk to a server, beyond exitOK, exitFailure
// (a refused command, a rollout that ended Degraded) and exitUsage.
const (
	exitNotFound    = 3 // the named rollout does not exist
	exitUnavailable = 4 // the server could not be reached, or refused the credentials
)

// target holds the flags that say which Sluice to talk to.
type target struct {
	server    string
	token     string
	namespace string
}

func (t *target) addFlags(cmd *cobra.Command) {
	def := os.Getenv("SLUICE_SERVER")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	cmd.Flags().StringVar(&t.server, "server", def, "address of a `sluice run` server (env SLUICE_SERVER)")
	cmd.Flags().StringVar(&t.token, "token", os.Getenv("SLUICE_TOKEN"), "bearer token for commands (env SLUICE_TOKEN)")
	cmd.Flags().StringVarP(&t.namespace, "namespace", "n", "default", "namespace of the rollout")
}

func (t *target) backend() api.Backend {
	return &api.Client{BaseURL: t.server, Token: t.token}
}

// backendError turns a Backend error into the exit code scripts rely on.
func backendError(err error) error {
	switch {
	case errors.Is(err, api.ErrNotFound):
		return exitError{code: exitNotFound, msg: err.Error()}
	case errors.Is(err, api.ErrUnavailable), errors.Is(err, api.ErrUnauthorized):
		return exitError{code: exitUnavailable, msg: err.Error()}
	case errors.Is(err, api.ErrBadRequest):
		return exitError{code: exitUsage, msg: err.Error()}
	}
	return exitError{code: exitFailure, msg: err.Error()}
}

func checkOutput(o string) error {
	if o != "text" && o != "json" {
		return usageError{fmt.Errorf("--output must be text or json, not %q", o)}
	}
	return nil
}
