// Command etcd is upstream etcd's server entry point (go.etcd.io/etcd/server/v3
// main.go), built from the Go module proxy at the version pinned in go.mod.
// A separate module, so that etcd's dependency set never mixes with the
// Kubernetes one in ../go.mod.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
