// Command etcd builds the etcd server at the version pinned in go.mod, for
// envtest. It holds no Sluice logic.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
