// Command sluice is the Sluice binary: the controller, the standalone
// runner and the user verbs.
package main

import (
	"os"

	// Deployment windows name IANA time zones; embedding the database makes
	// them load the same on every host, including minimal images without
	// /usr/share/zoneinfo.
	_ "time/tzdata"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
