// Command kube-apiserver builds the upstream API server at the version
// pinned in go.mod, for envtest. It holds no Sluice logic.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
