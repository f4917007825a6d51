package main

// cri-reset <endpoint>: stops and removes every pod sandbox (and so every
// container) of a CRI runtime. `hack/controlplane.sh down` runs it after the
// kubelet has stopped so that the runtime tears down the pods' networks (CNI
// DEL: veths, host-port and masquerade rules), mounts and cgroups before it
// is stopped itself, leaving nothing behind on the host.

import (
	"context"
	"fmt"
	"os"
	"time"

	criremote "k8s.io/cri-client/pkg"
)

func criReset(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: cri-reset unix:///path/to/runtime.sock")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rt, err := criremote.NewRemoteRuntimeService(ctx, args[0], 10*time.Second, nil, false)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-reset: connect %s: %v\n", args[0], err)
		return 1
	}
	pods, err := rt.ListPodSandbox(ctx, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-reset: list pod sandboxes: %v\n", err)
		return 1
	}
	failed := 0
	for _, p := range pods {
		name := p.GetMetadata().GetNamespace() + "/" + p.GetMetadata().GetName()
		// StopPodSandbox kills the containers (SIGKILL, no grace: the kubelet is gone).
		if err := rt.StopPodSandbox(ctx, p.GetId()); err != nil {
			fmt.Fprintf(os.Stderr, "cri-reset: stop %s: %v\n", name, err)
			failed++
			continue
		}
		if err := rt.RemovePodSandbox(ctx, p.GetId()); err != nil {
			fmt.Fprintf(os.Stderr, "cri-reset: remove %s: %v\n", name, err)
			failed++
			continue
		}
		fmt.Printf("removed pod sandbox %s (%s)\n", name, p.GetId()[:12])
	}
	if failed > 0 {
		return 1
	}
	return 0
}
