package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/rolloutapi"
)

func init() { addCommand(newTokenCommand) }

func newTokenCommand() *cobra.Command {
	var role string
	cmd := &cobra.Command{
		Use:   "token NAME",
		Short: "Make an API token for a 'sluice run' server",
		Long: `Token prints a new random token for NAME and the entry for http.tokens in the
'sluice run' configuration, which holds only the token's SHA-256. NAME is the
actor of the token's commands in status and history. Give the token to its
holder (SLUICE_TOKEN or --token); it is not stored anywhere.

Roles: read (status, history, metrics) or operate (also promote, abort, retry,
pause, resume).`,
		Example: `  sluice token alice --role operate
  sluice token prometheus --role read`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			secret, sum, err := rolloutapi.NewToken()
			if err != nil {
				return err
			}
			if _, err := rolloutapi.ParseToken("token", args[0], rolloutapi.Role(role), sum); err != nil {
				return usageError{err}
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "# token for %s (shown once; give it to its holder as SLUICE_TOKEN):\n# %s\n", args[0], secret)
			fmt.Fprintf(w, "# add to http.tokens of the sluice run configuration:\n- name: %s\n  role: %s\n  sha256: %s\n", args[0], role, sum)
			return nil
		},
	}
	cmd.Flags().StringVar(&role, "role", string(rolloutapi.RoleRead), "read or operate")
	return cmd
}
