// Command sluice is the Sluice binary: the controller, the standalone
// runner and the user verbs. Installed as kubectl-sluice it is also
// kubectl's plugin (docs/cli.md).
package main

import (
	"context"
	"os"

	// Deployment windows name IANA time zones; embedding the database makes
	// them load the same on every host, including minimal images without
	// /usr/share/zoneinfo.
	_ "time/tzdata"
)

func main() {
	name, args := invocation(os.Args[0], os.Args[1:])
	os.Exit(runAs(context.Background(), name, args, os.Stdout, os.Stderr))
}
