# shellcheck shell=bash
# The real node of the local cluster (sourced by hack/controlplane.sh; see docs/controlplane.md):
# containerd + runc + CNI (bridge twbr0, host-local IPAM, portmap), a kubelet and kube-proxy from
# the multicall binary, CoreDNS, and the project's images imported into containerd.
#
# What it creates on the host, and `node_down` removes again: the bridge $BRIDGE; cgroups under
# $CGROUP_ROOT; iptables chains (kube-proxy's KUBE-*, portmap's CNI-HOSTPORT-*: every chain that
# did not exist before `up`); mounts and files under $NODE_DIR; /run/containerd/s (shim sockets)
# and /var/lib/cni entries of the network $CNI_NET; /var/log/containers links to our pod logs;
# the sysctls the kubelet and the node set (restored to the values saved at `up`).
# Only one real node per machine: /run/threadweaver-real-node.owner names the plane that has it.

NODE_DIR="$RUN/node"             # state of the running node (removed by down)
NODE_CACHE="$CACHE/node"         # containerd's content store and snapshots (kept: images)
BRIDGE=twbr0
CNI_NET=threadweaver
CGROUP_ROOT=/threadweaver
OWNER_FILE=/run/threadweaver-real-node.owner
REAL_NODE_NAME=tw-node-0
REAL_COMPONENTS=(containerd kubelet kube-proxy coredns)
SAVED_SYSCTLS=(net/ipv4/ip_forward vm/overcommit_memory kernel/panic kernel/panic_on_oops
  net/bridge/bridge-nf-call-iptables net/ipv4/conf/all/route_localnet)

real_node_enabled() { [[ ${REAL_NODE:-1} == 1 ]]; }

node_ports_defaults() {
  KUBELET_PORT=${TW_CP_KUBELET_PORT:-20250}
  KUBELET_HEALTHZ_PORT=${TW_CP_KUBELET_HEALTHZ_PORT:-20248}
  PROXY_HEALTHZ_PORT=${TW_CP_PROXY_HEALTHZ_PORT:-20256}
  PROXY_METRICS_PORT=${TW_CP_PROXY_METRICS_PORT:-20249}
  DNS_HEALTH_PORT=${TW_CP_DNS_HEALTH_PORT:-20280}
  DNS_READY_PORT=${TW_CP_DNS_READY_PORT:-20281}
  POD_CIDR=${TW_CP_POD_CIDR:-10.245.0.0/24}
  REAL_NODE=${TW_CP_REAL_NODE:-1}
  node_addresses
}

node_addresses() {
  # The bridge's address is the node's InternalIP, where the kubelet serves and the pods
  # reach the API server and the DNS (the first address of the pod range).
  local net=${POD_CIDR%/*}
  BRIDGE_IP="${net%.*}.$((${net##*.} + 1))"
  if real_node_enabled; then API_HOST=$BRIDGE_IP; else API_HOST=$HOST; fi
}

node_ports_save() {
  cat <<EOF
KUBELET_PORT=$KUBELET_PORT
KUBELET_HEALTHZ_PORT=$KUBELET_HEALTHZ_PORT
PROXY_HEALTHZ_PORT=$PROXY_HEALTHZ_PORT
PROXY_METRICS_PORT=$PROXY_METRICS_PORT
DNS_HEALTH_PORT=$DNS_HEALTH_PORT
DNS_READY_PORT=$DNS_READY_PORT
POD_CIDR=$POD_CIDR
REAL_NODE=$REAL_NODE
EOF
}

node_port_names() {
  real_node_enabled && echo KUBELET_HEALTHZ_PORT PROXY_HEALTHZ_PORT PROXY_METRICS_PORT DNS_HEALTH_PORT DNS_READY_PORT
  return 0
}

node_ensure_tools() {
  local c
  for c in runc:runc iptables:iptables conntrack:conntrack ip:iproute2 mount:mount; do
    ensure_deb "${c%%:*}" "${c#*:}"
  done
  [[ -x /usr/lib/cni/bridge || -x /opt/cni/bin/bridge ]] || ensure_deb /usr/lib/cni/bridge containernetworking-plugins
  CNI_BIN_DIR=/usr/lib/cni
  [[ -x $CNI_BIN_DIR/bridge ]] || CNI_BIN_DIR=/opt/cni/bin
  [[ $(id -u) -eq 0 ]] || die "the real node needs root (bridge, iptables, mounts); or set TW_CP_REAL_NODE=0"
}

# The machine's real node belongs to one plane at a time. Another checkout's plane that still
# runs it keeps it: this plane then runs without one (KWOK only), saying so. One whose processes
# are gone (a stopped session, a reboot) is cleaned up with its own `down` first.
node_claim() {
  real_node_enabled || return 0
  local owner owner_root
  if [[ -f $OWNER_FILE ]] && owner=$(cat "$OWNER_FILE") && [[ $owner != "$RUN" ]]; then
    owner_root=${owner%/.cache/controlplane/run}
    if owner_alive "$owner"; then
      log "WARNING: the real node of this machine belongs to the plane of $owner_root (running);"
      log "WARNING: starting without a real node (KWOK only). Stop that plane for real pods here."
      REAL_NODE=0
      node_addresses
      COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
      return 0
    fi
    if [[ -x $owner_root/hack/controlplane.sh ]]; then
      log "cleaning up the stopped real node of $owner_root (its hack/controlplane.sh down)"
      "$owner_root/hack/controlplane.sh" down >&2 || true
    fi
    [[ -f $OWNER_FILE && $(cat "$OWNER_FILE") == "$owner" ]] && rm -f "$OWNER_FILE"
  fi
  if ip link show "$BRIDGE" >/dev/null 2>&1 && [[ ! -f $OWNER_FILE ]]; then
    die "bridge $BRIDGE exists but no control plane owns it (left over?): ip link del $BRIDGE, or set TW_CP_REAL_NODE=0"
  fi
  return 0
}

owner_alive() { # owner_alive <run dir>: its containerd or kubelet still runs
  local c f pid exe argv0
  for c in containerd kubelet; do
    f="$1/pids/$c.pid"
    [[ -f $f ]] && read -r pid exe <"$f" && [[ -n $pid ]] && pid_running "$pid" || continue
    argv0=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n1)
    [[ $argv0 == "$exe" ]] && return 0
  done
  return 1
}

# ------------------------------------------------------------------ host state ---

sysctl_path() { echo "/proc/sys/$1"; }

node_save_host_state() {
  mkdir -p "$NODE_DIR"
  local s
  : >"$NODE_DIR/sysctls.before"
  for s in "${SAVED_SYSCTLS[@]}"; do
    [[ -r $(sysctl_path "$s") ]] && echo "$s=$(cat "$(sysctl_path "$s")")" >>"$NODE_DIR/sysctls.before"
  done
  node_chains >"$NODE_DIR/iptables.before"
  local d
  : >"$NODE_DIR/dirs.created"
  for d in /run/containerd /run/containerd/s /var/lib/cni /var/log/containers; do
    [[ -e $d ]] || echo "$d" >>"$NODE_DIR/dirs.created"
  done
}

node_chains() { # "family table chain" for every iptables chain (IPv4 and IPv6)
  local f t
  for f in iptables ip6tables; do
    command -v "$f-save" >/dev/null 2>&1 || continue
    for t in filter nat mangle raw; do
      "$f-save" -t "$t" 2>/dev/null | sed -n "s/^:\\([^ ]*\\) .*/$f $t \\1/p"
    done
  done
}

node_restore_host_state() {
  local line s v
  if [[ -f "$NODE_DIR/sysctls.before" ]]; then
    while IFS= read -r line; do
      s=${line%%=*} v=${line#*=}
      [[ $(cat "$(sysctl_path "$s")" 2>/dev/null) == "$v" ]] || echo "$v" >"$(sysctl_path "$s")" 2>/dev/null || true
    done <"$NODE_DIR/sysctls.before"
  fi
  # iptables: every chain that did not exist before up (rules jumping to it first).
  if [[ -f "$NODE_DIR/iptables.before" ]]; then
    local f t c new=() ftc
    while read -r f t c; do
      grep -qxF "$f $t $c" "$NODE_DIR/iptables.before" || new+=("$f $t $c")
    done < <(node_chains)
    for ftc in "${new[@]}"; do
      read -r f t c <<<"$ftc"
      "$f-save" -t "$t" | grep -E -- "^-A .* -j $c( |\$)" | sed 's/^-A //' | while IFS= read -r rule; do
        eval "$f -w -t $t -D $rule" 2>/dev/null || true
      done
    done
    for ftc in "${new[@]}"; do read -r f t c <<<"$ftc" && "$f" -w -t "$t" -F "$c" 2>/dev/null || true; done
    for ftc in "${new[@]}"; do read -r f t c <<<"$ftc" && "$f" -w -t "$t" -X "$c" 2>/dev/null || true; done
  fi
  # The pods' log links, CNI's state of our network, what we created in /run and /var.
  local l
  for l in /var/log/containers/*.log; do
    [[ -L $l && $(readlink "$l") == "$NODE_DIR/"* ]] && rm -f "$l"
  done
  rm -rf "/var/lib/cni/networks/$CNI_NET" /var/lib/cni/results/"$CNI_NET"-* 2>/dev/null || true
  if [[ -f "$NODE_DIR/dirs.created" ]]; then
    local d
    while IFS= read -r d; do
      [[ $d == /var/lib/cni ]] && rm -rf /var/lib/cni/results /var/lib/cni/networks /var/lib/cni/cache 2>/dev/null
      rmdir "$d" 2>/dev/null || true
    done < <(tac "$NODE_DIR/dirs.created")
  fi
}

node_unmount_all() { # every mount below the node's directories, deepest first
  local m
  for _ in 1 2 3; do
    mapfile -t mounts < <(awk -v a="$NODE_DIR" -v b="$NODE_CACHE" '$5 ~ "^" a || $5 ~ "^" b {print $5}' /proc/self/mountinfo | sort -r)
    ((${#mounts[@]})) || return 0
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  done
}

node_cgroups() { # every cgroup directory of ours, deepest first
  local d
  for d in /sys/fs/cgroup/*"$CGROUP_ROOT" /sys/fs/cgroup/unified"$CGROUP_ROOT"; do
    [[ -d $d ]] && find "$d" -depth -type d
  done
}

node_remove_cgroups() {
  local d left=0
  for _ in $(seq 1 50); do
    left=0
    while IFS= read -r d; do rmdir "$d" 2>/dev/null || left=1; done < <(node_cgroups)
    ((left)) || return 0
    sleep 0.2
  done
  log "WARNING: some cgroups under $CGROUP_ROOT could not be removed (processes left?)"
}

# ------------------------------------------------------------------ pki & config ---

node_pki() { # in the pki dir (called from gen_pki's subshell)
  issue kubelet-client "/O=system:nodes/CN=system:node:$REAL_NODE_NAME" client.ext
  issue kube-proxy "/CN=system:kube-proxy" client.ext
  issue coredns "/CN=threadweaver:coredns" client.ext
  # The API server's client certificate for kubelet calls (logs, exec, port-forward).
  issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" client.ext
  cat >kubelet.ext <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$BRIDGE_IP,DNS:$REAL_NODE_NAME
EOF
  issue kubelet "/CN=$REAL_NODE_NAME" kubelet.ext
}

node_apiserver_args() {
  real_node_enabled || { echo --authorization-mode=RBAC; return 0; }
  local pki="$RUN/pki"
  printf '%s\n' --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$pki/ca.crt" --kubelet-preferred-address-types=InternalIP
}

node_write_configs() {
  local pki="$RUN/pki" sock="$NODE_DIR/containerd/containerd.sock"
  CONTAINERD_SOCK=$sock
  mkdir -p "$NODE_DIR/containerd" "$NODE_DIR/cni/net.d" "$NODE_DIR/kubelet" "$NODE_DIR/pod-logs" \
    "$NODE_CACHE/containerd" "$NODE_DIR/runc"
  ((${#sock} < 100)) || die "containerd's socket path is too long for a Unix socket: $sock"
  cat >"$NODE_DIR/containerd.toml" <<EOF
version = 3
root = "$NODE_CACHE/containerd"
state = "$NODE_DIR/containerd/state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  disable_apparmor = true
  # No CAP_SYS_RESOURCE on this kind of host: lowering oom_score_adj fails every sandbox.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$NODE_DIR/runc"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$CNI_BIN_DIR"]
    conf_dir = "$NODE_DIR/cni/net.d"
    max_conf_num = 1
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$(PAUSE_REF)"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF
  cat >"$NODE_DIR/cni/net.d/10-$CNI_NET.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NET",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$NODE_DIR/cni/ipam",
              "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$BRIDGE_IP"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
  # Pods resolve through CoreDNS on the bridge (dnsPolicy ClusterFirst); dnsPolicy Default
  # gets this file: no upstream (the machine's own resolver is not for pods).
  printf 'nameserver %s\n' "$BRIDGE_IP" >"$NODE_DIR/resolv.conf"
  cat >"$NODE_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $BRIDGE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: $HOST
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $pki/kubelet.crt
tlsPrivateKeyFile: $pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$sock
imageServiceEndpoint: unix://$sock
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_ROOT
failCgroupV1: false
failSwapOn: false
maxOpenFiles: 20000
clusterDomain: cluster.local
clusterDNS: [$BRIDGE_IP]
resolvConf: $NODE_DIR/resolv.conf
podCIDR: $POD_CIDR
podLogsDir: $NODE_DIR/pod-logs
maxPods: 110
makeIPTablesUtilChains: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
evictionPressureTransitionPeriod: 10s
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
fileCheckFrequency: 10s
staticPodPath: ""
registerNode: true
EOF
  cat >"$NODE_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $RUN/kube-proxy.kubeconfig}
hostnameOverride: $REAL_NODE_NAME
bindAddress: $BRIDGE_IP
healthzBindAddress: $HOST:$PROXY_HEALTHZ_PORT
metricsBindAddress: $HOST:$PROXY_METRICS_PORT
clusterCIDR: $POD_CIDR
# NodePorts only on the node's own address (never on the machine's loopback or eth0).
nodePortAddresses: ["$BRIDGE_IP/32"]
iptables: {masqueradeAll: true, localhostNodePorts: false, syncPeriod: 5s, minSyncPeriod: 0s}
# 0: leave the host's conntrack sysctls alone (no CAP_SYS_RESOURCE, and not ours).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  cat >"$NODE_DIR/Corefile" <<EOF
.:53 {
    bind $BRIDGE_IP
    errors
    health $HOST:$DNS_HEALTH_PORT
    ready $HOST:$DNS_READY_PORT
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $RUN/coredns.kubeconfig threadweaver
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
}
EOF
}

PAUSE_REF() { "$ROOT/hack/images.sh" ref pause; }

coredns_rbac() {
  cat <<'EOF'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "threadweaver:coredns"}
rules:
- {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "threadweaver:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "threadweaver:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "threadweaver:coredns"}
EOF
}

# ------------------------------------------------------------------ up / down ---

node_prepare_network() { # before the API server, which listens on the bridge's address
  real_node_enabled || return 0
  node_ensure_tools
  echo "$RUN" >"$OWNER_FILE"
  node_save_host_state
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge || die "cannot create bridge $BRIDGE"
  fi
  ip addr replace "$BRIDGE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Pod -> Service VIP -> pod on the same bridge: routed by the host, seen by iptables.
  echo 1 >/proc/sys/net/ipv4/ip_forward
  [[ -w /proc/sys/net/bridge/bridge-nf-call-iptables ]] && echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
  local d
  for d in /sys/fs/cgroup/*/ /sys/fs/cgroup/unified/; do
    [[ -d $d && $d != */unified/ || $d == /sys/fs/cgroup/unified/ ]] || continue
    [[ -f "${d}cgroup.procs" ]] && mkdir -p "${d%/}$CGROUP_ROOT"
  done
  return 0
}

node_import_images() {
  local n ref archive have want
  # The sandbox image is the node's own (seconds when cached); the others come from `make images`.
  "$ROOT/hack/images.sh" build pause || die "building the pause image failed"
  for n in $("$ROOT/hack/images.sh" names); do
    ref=$("$ROOT/hack/images.sh" ref "$n")
    if ! archive=$("$ROOT/hack/images.sh" archive "$n" 2>/dev/null); then
      [[ $n == pause ]] && die "the pause image is missing: hack/images.sh build pause"
      log "image $ref not built (make images): not imported"
      continue
    fi
    want=$(basename "$archive")
    have=$(ctr_k8s images ls name=="$ref" 2>/dev/null | awk 'NR>1{print $3}')
    if [[ -n $have && -f "$NODE_CACHE/imported-$n" && $(cat "$NODE_CACHE/imported-$n") == "$want" ]]; then
      continue
    fi
    ctr_k8s images import --no-unpack=false "$archive" >/dev/null 2>"$NODE_DIR/import-$n.log" ||
      { cat "$NODE_DIR/import-$n.log" >&2; die "importing $ref into containerd failed"; }
    # The samples and the chart name the images without a registry (as kind loads them):
    # also tag them docker.io/library/NAME:TAG, what an unqualified reference means.
    local short=${ref#localhost/}
    ctr_k8s images tag --force "$ref" "docker.io/library/$short" >/dev/null 2>&1
    echo "$want" >"$NODE_CACHE/imported-$n"
    log "imported $ref (also as $short) into the node"
  done
}

ctr_k8s() { "$BIN/ctr" --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

node_start() {
  real_node_enabled || return 0
  node_write_configs
  write_kubeconfig "$RUN/kubelet.kubeconfig" kubelet-client
  write_kubeconfig "$RUN/kube-proxy.kubeconfig" kube-proxy
  write_kubeconfig "$RUN/coredns.kubeconfig" coredns
  coredns_rbac | kc apply -f - >/dev/null || die "creating CoreDNS's RBAC failed"

  log "starting containerd ($CONTAINERD_SOCK)"
  PATH="$BIN:$PATH" start containerd "$BIN/containerd" --config "$NODE_DIR/containerd.toml"
  wait_for containerd "containerd's socket" ctr_k8s version
  node_import_images

  log "starting kubelet (node $REAL_NODE_NAME, https://$BRIDGE_IP:$KUBELET_PORT), kube-proxy, CoreDNS"
  start kubelet "$BIN/kubelet" --config="$NODE_DIR/kubelet.yaml" --kubeconfig="$RUN/kubelet.kubeconfig" \
    --root-dir="$NODE_DIR/kubelet" --cert-dir="$NODE_DIR/kubelet/pki" --hostname-override="$REAL_NODE_NAME" \
    --node-ip="$BRIDGE_IP" --node-labels="threadweaver.io/node=real"
  start kube-proxy "$BIN/kube-proxy" --config="$NODE_DIR/kube-proxy.yaml"
  start coredns "$BIN/coredns" -conf "$NODE_DIR/Corefile"
  wait_for kubelet "kubelet /healthz" curl -fsS --max-time 2 "http://$HOST:$KUBELET_HEALTHZ_PORT/healthz"
  wait_for kube-proxy "kube-proxy /healthz" curl -fsS --max-time 2 "http://$HOST:$PROXY_HEALTHZ_PORT/healthz"
  wait_for coredns "CoreDNS /ready" curl -fsS --max-time 2 "http://$HOST:$DNS_READY_PORT/ready"
  wait_for kubelet "node $REAL_NODE_NAME to be Ready" real_node_ready
}

real_node_ready() {
  local out
  out=$(kc get node "$REAL_NODE_NAME" --request-timeout=5s \
    -o jsonpath='{range .status.conditions[?(@.type=="Ready")]}{.status}{end} {.spec.taints}') || return 1
  [[ $out == "True " ]]
}

node_healthy() {
  real_node_enabled || return 0
  local c
  for c in "${REAL_COMPONENTS[@]}"; do alive_pid "$c" >/dev/null || return 1; done
  real_node_ready
}

node_down() { # after the kubelet and kube-proxy have stopped, containerd still running
  [[ -d $NODE_DIR ]] || return 0
  CONTAINERD_SOCK="$NODE_DIR/containerd/containerd.sock"
  if alive_pid containerd >/dev/null; then
    # Stop and remove every pod: CNI DEL (veths, IPs, hostPort rules), rootfs mounts, cgroups.
    "$BIN/cri-reset" "unix://$CONTAINERD_SOCK" >"$NODE_DIR/cri-reset.log" 2>&1 ||
      { log "WARNING: cri-reset failed:"; tail -n 5 "$NODE_DIR/cri-reset.log" >&2; }
  fi
}

node_cleanup() { # after every process is gone
  [[ -d $NODE_DIR ]] || return 0
  # Shims left by a containerd that died (their sockets are under /run/containerd/s).
  local p
  for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $NODE_DIR/containerd/containerd.sock" || true); do
    kill -KILL "$p" 2>/dev/null || true
  done
  if [[ -x $BIN/kube-proxy ]]; then
    "$BIN/kube-proxy" --cleanup --config="$NODE_DIR/kube-proxy.yaml" >"$NODE_DIR/kube-proxy-cleanup.log" 2>&1 || true
  fi
  node_unmount_all
  node_remove_cgroups
  node_restore_host_state
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE" 2>/dev/null || true; fi
  # Veths of pods that cri-reset could not remove die with their network namespace.
  rm -f /run/containerd/s/* 2>/dev/null || true
  [[ -f $OWNER_FILE && $(cat "$OWNER_FILE") == "$RUN" ]] && rm -f "$OWNER_FILE"
  return 0
}
