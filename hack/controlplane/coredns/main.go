// Command coredns is CoreDNS (github.com/coredns/coredns, version pinned in
// go.mod) with only the plugins the local cluster's DNS uses: the upstream
// main imports all of them (core/plugin), which would pull in every cloud
// SDK. The plugin order stays upstream's (dnsserver.Directives).
package main

import (
	_ "github.com/coredns/coredns/core/dnsserver" // the "dns" server type
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	coremain.Run()
}
