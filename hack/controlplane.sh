#!/usr/bin/env bash
# A real Kubernetes control plane for the e2e tests, built offline from upstream
# sources through the Go module proxy (see docs/controlplane.md).
#
#   hack/controlplane.sh build   build whatever binary is missing (cached, version-keyed)
#   hack/controlplane.sh up      build if needed, start etcd, kube-apiserver, kube-controller-manager,
#                                kube-scheduler, kwok and one fake Node, and the real node (containerd,
#                                kubelet, kube-proxy, CoreDNS; hack/lib/realnode.sh); wait until ready
#   hack/controlplane.sh down    stop exactly the processes `up` started, remove the run dir
#   hack/controlplane.sh status  show each component; exit 0 only if everything is healthy
#   hack/controlplane.sh env     print `export KUBECONFIG=...` and PATH (kubectl, helm); eval it
#   hack/controlplane.sh import-images   import the images of `make images` into the real node
#
# Everything listens on 127.0.0.1, but kube-apiserver, the kubelet and DNS on the real node's
# address 10.245.0.1 (TW_CP_REAL_NODE=0: no real node, all on 127.0.0.1). Ports:
#   TW_CP_ETCD_PORT=22379  TW_CP_ETCD_PEER_PORT=22380  TW_CP_APISERVER_PORT=26443
#   TW_CP_KCM_PORT=20257   TW_CP_SCHEDULER_PORT=20259  TW_CP_KWOK_PORT=20247
#   TW_CP_KUBELET_PORT=20250 TW_CP_KUBELET_HEALTHZ_PORT=20248 TW_CP_PROXY_HEALTHZ_PORT=20256
#   TW_CP_PROXY_METRICS_PORT=20249 TW_CP_DNS_HEALTH_PORT=20280 TW_CP_DNS_READY_PORT=20281
# Binaries:      .cache/controlplane/bin/<version-key>/  (bin/current -> the newest)
# Runtime state: .cache/controlplane/run/  (pki, etcd data, pids, logs)
# Kubeconfig:    .cache/controlplane/kubeconfig
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SRC="$ROOT/hack/controlplane"
CACHE="$ROOT/.cache/controlplane"
BINROOT="$CACHE/bin"
RUN="$CACHE/run"
KUBECONFIG_OUT="$CACHE/kubeconfig"
HOST=127.0.0.1

# Versions not pinned by a go.mod of their own are read from the go.mod files.
BUILD_RECIPE=1 # bump when the build commands below change, to invalidate cached binaries
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
NODE_NAME=kwok-node-0
UP_TIMEOUT=${TW_CP_UP_TIMEOUT:-120}

log() { printf 'controlplane: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# shellcheck source=hack/lib/realnode.sh
source "$ROOT/hack/lib/realnode.sh"

# ---------------------------------------------------------------- ports ------

load_ports() {
  # The ports of a running plane win over the environment, so that `down`,
  # `status` and `env` talk to what `up` started.
  if [[ -f "$RUN/ports.env" ]]; then
    # shellcheck disable=SC1091
    source "$RUN/ports.env"
  else
    ETCD_PORT=${TW_CP_ETCD_PORT:-22379}
    ETCD_PEER_PORT=${TW_CP_ETCD_PEER_PORT:-22380}
    APISERVER_PORT=${TW_CP_APISERVER_PORT:-26443}
    KCM_PORT=${TW_CP_KCM_PORT:-20257}
    SCHEDULER_PORT=${TW_CP_SCHEDULER_PORT:-20259}
    KWOK_PORT=${TW_CP_KWOK_PORT:-20247}
    node_ports_defaults
  fi
  node_addresses
  COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
  real_node_enabled && COMPONENTS+=("${REAL_COMPONENTS[@]}")
  return 0
}

save_ports() {
  cat >"$RUN/ports.env" <<EOF
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
APISERVER_PORT=$APISERVER_PORT
KCM_PORT=$KCM_PORT
SCHEDULER_PORT=$SCHEDULER_PORT
KWOK_PORT=$KWOK_PORT
EOF
  node_ports_save >>"$RUN/ports.env"
}

port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

check_ports_free() {
  local name port
  for name in ETCD_PORT ETCD_PEER_PORT APISERVER_PORT KCM_PORT SCHEDULER_PORT KWOK_PORT $(node_port_names); do
    port=${!name}
    if port_busy "$port"; then
      die "port $HOST:$port ($name) is already in use by another process; pick another with TW_CP_$name=<port>"
    fi
  done
}

# ---------------------------------------------------------------- tools ------

ensure_go() {
  command -v go >/dev/null 2>&1 || die "the Go toolchain (>= 1.26) is needed to build the control plane; install Go and retry"
  export GOWORK=off CGO_ENABLED=0
  export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly"
}

ensure_deb() { # ensure_deb <command> <package>
  command -v "$1" >/dev/null 2>&1 && return 0
  log "installing Debian package $2 (for $1)"
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo -n)
  "${sudo[@]}" apt-get update -qq >/dev/null || die "apt-get update failed; install $2 by hand"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$2" >/dev/null || die "apt-get install $2 failed"
}

gomod_version() { # gomod_version <go.mod> <module>
  sed -n "s#^[[:space:]]*\\(require[[:space:]]\\+\\)\\?$2[[:space:]]\\+\\(v[^[:space:]]*\\).*#\\2#p" "$1" | head -n1
}

# ---------------------------------------------------------------- build ------

versions() {
  K8S_VERSION=$(gomod_version "$SRC/go.mod" k8s.io/kubernetes)
  ETCD_VERSION=$(gomod_version "$SRC/etcd/go.mod" go.etcd.io/etcd/server/v3)
  KWOK_VERSION=$(gomod_version "$SRC/kwok/go.mod" sigs.k8s.io/kwok)
  HELM_VERSION=$(gomod_version "$SRC/helm/go.mod" helm.sh/helm/v3)
  STAGING_VERSION=$(gomod_version "$SRC/go.mod" "k8s.io/api => k8s.io/api")
  CONTAINERD_VERSION=$(gomod_version "$SRC/containerd/go.mod" github.com/containerd/containerd/v2)
  COREDNS_VERSION=$(gomod_version "$SRC/coredns/go.mod" github.com/coredns/coredns)
  [[ -n $K8S_VERSION && -n $ETCD_VERSION && -n $KWOK_VERSION && -n $HELM_VERSION && -n $CONTAINERD_VERSION && -n $COREDNS_VERSION ]] ||
    die "cannot read the pinned versions from $SRC/*/go.mod"
}

version_key() {
  # Every input of the build: the module files, the sources, the recipe, the Go version.
  local goversion sum
  goversion=$(go env GOVERSION)
  sum=$(
    cd "$SRC" &&
      { cat go.mod go.sum main.go cri_reset.go etcd/go.mod etcd/go.sum etcd/main.go kwok/go.mod kwok/go.sum \
          helm/go.mod helm/go.sum containerd/go.mod containerd/go.sum coredns/go.mod coredns/go.sum coredns/main.go
        echo "recipe=$BUILD_RECIPE go=$goversion"; } | sha256sum | cut -c1-12
  )
  KEY="k8s-${K8S_VERSION}_${sum}"
  BIN="$BINROOT/$KEY"
}

go_build() { # go_build <module dir> <output> <ldflags> <package> [<build tags>]
  local dir=$1 out=$2 ldflags=$3 pkg=$4 tags=${5:-} logf
  logf="$BINROOT/build-$(basename "$out").log"
  log "building $(basename "$out") (log: $logf)"
  local start=$SECONDS
  if ! (cd "$dir" && go build -p "${TW_CP_BUILD_JOBS:-2}" -trimpath -tags "$tags" -ldflags "$ldflags" -o "$out.tmp" "$pkg") >"$logf" 2>&1; then
    tail -n 40 "$logf" >&2
    die "building $(basename "$out") failed (full log: $logf)"
  fi
  mv -f "$out.tmp" "$out"
  log "built $(basename "$out") in $((SECONDS - start))s"
}

build() {
  ensure_go
  versions
  version_key
  mkdir -p "$BIN"
  local k8s_minor=${K8S_VERSION#v1.}
  k8s_minor=${k8s_minor%%.*}

  if [[ ! -x "$BIN/controlplane" ]]; then
    local pkgver kf="" date
    date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    for pkgver in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      kf+=" -X $pkgver.gitVersion=$K8S_VERSION -X $pkgver.gitMajor=1 -X $pkgver.gitMinor=$k8s_minor"
      kf+=" -X $pkgver.gitTreeState=clean -X $pkgver.buildDate=$date"
    done
    go_build "$SRC" "$BIN/controlplane" "-s -w$kf" .
  fi
  local c
  for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl cri-reset; do
    [[ -L "$BIN/$c" ]] || ln -sfn controlplane "$BIN/$c" # never recreated: kubectl may be in use
  done

  if [[ ! -x "$BIN/etcd" ]]; then
    go_build "$SRC/etcd" "$BIN/etcd" "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=module-proxy" .
  fi

  if [[ ! -x "$BIN/kwok" ]]; then
    go_build "$SRC/kwok" "$BIN/kwok" \
      "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${K8S_VERSION#v}" \
      sigs.k8s.io/kwok/cmd/kwok
  fi
  if [[ ! -s "$BIN/kwok-stages.yaml" ]]; then
    # The stock stages ship inside the kwok module: node-initialize + heartbeat
    # with lease (node stays Ready), pod ready/complete/delete ("fast").
    local kdir
    kdir=$(cd "$SRC/kwok" && go mod download -json sigs.k8s.io/kwok | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -d "$kdir/kustomize/stage" ]] || die "kwok stages not found in the module cache ($kdir)"
    local f first=1
    : >"$BIN/kwok-stages.yaml.tmp"
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
      pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      [[ $first ]] || echo '---' >>"$BIN/kwok-stages.yaml.tmp"
      first=
      echo "# sigs.k8s.io/kwok@$KWOK_VERSION kustomize/stage/$f" >>"$BIN/kwok-stages.yaml.tmp"
      cat "$kdir/kustomize/stage/$f" >>"$BIN/kwok-stages.yaml.tmp"
    done
    mv -f "$BIN/kwok-stages.yaml.tmp" "$BIN/kwok-stages.yaml"
  fi

  if [[ ! -x "$BIN/helm" ]]; then
    go_build "$SRC/helm" "$BIN/helm" \
      "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean
       -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor
       -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor" \
      helm.sh/helm/v3/cmd/helm
  fi

  # The real node's runtime: containerd, its runc shim and ctr (no btrfs/devmapper/zfs
  # snapshotters: overlayfs only), and CoreDNS with only the plugins the cluster uses.
  local ctrd="github.com/containerd/containerd/v2"
  for c in containerd containerd-shim-runc-v2 ctr; do
    [[ -x "$BIN/$c" ]] && continue
    go_build "$SRC/containerd" "$BIN/$c" \
      "-s -w -X $ctrd/version.Version=$CONTAINERD_VERSION -X $ctrd/version.Revision=module-proxy" \
      "$ctrd/cmd/$c" "no_btrfs no_devmapper no_zfs"
  done
  if [[ ! -x "$BIN/coredns" ]]; then
    go_build "$SRC/coredns" "$BIN/coredns" \
      "-s -w -X github.com/coredns/coredns/coremain.GitCommit=module-proxy" .
  fi

  [[ -s "$BIN/VERSIONS" ]] || cat >"$BIN/VERSIONS" <<EOF
kubernetes=$K8S_VERSION (k8s.io/kubernetes, staging modules $STAGING_VERSION)
etcd=$ETCD_VERSION (go.etcd.io/etcd/server/v3)
kwok=$KWOK_VERSION (sigs.k8s.io/kwok)
helm=$HELM_VERSION (helm.sh/helm/v3)
containerd=$CONTAINERD_VERSION (github.com/containerd/containerd/v2)
coredns=$COREDNS_VERSION (github.com/coredns/coredns)
go=$(go env GOVERSION)
EOF
  [[ $(readlink "$BINROOT/current" 2>/dev/null) == "$KEY" ]] || ln -sfn "$KEY" "$BINROOT/current"
  # Binaries of older keys are ~300 MB each; keep only the current one.
  local d
  for d in "$BINROOT"/*/; do
    d=${d%/}
    [[ -L $d || $(basename "$d") == "$KEY" ]] || rm -rf "$d"
  done
}

# Resolve the binaries without building (for status/env/down).
current_bin() {
  if command -v go >/dev/null 2>&1; then
    versions
    version_key
  else
    BIN="$BINROOT/current"
    KEY=$(readlink "$BIN" 2>/dev/null || echo unknown)
  fi
}

# ---------------------------------------------------------------- certificates

gen_pki() {
  ensure_deb openssl openssl
  local pki="$RUN/pki"
  mkdir -p "$pki"
  (
    cd "$pki"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout ca.key -out ca.crt \
      -subj "/CN=threadweaver-controlplane-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    # Serving certificate of kube-apiserver (KCM and the scheduler self-sign their own).
    cat >apiserver.ext <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$BRIDGE_IP,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
    issue apiserver "/CN=kube-apiserver" apiserver.ext
    # Client certificates: CN = user, O = group.
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >client.ext
    issue admin "/O=system:masters/CN=admin" client.ext
    issue kube-controller-manager "/CN=system:kube-controller-manager" client.ext
    issue kube-scheduler "/CN=system:kube-scheduler" client.ext
    issue kwok "/O=system:masters/CN=kwok" client.ext
    if real_node_enabled; then node_pki; fi
    # Front proxy (aggregation layer): its own CA and the client certificate the apiserver
    # presents to aggregated API servers; it also gives KCM/scheduler a requestheader CA.
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout front-proxy-ca.key -out front-proxy-ca.crt \
      -subj "/CN=threadweaver-front-proxy-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    issue front-proxy-client "/CN=front-proxy-client" client.ext front-proxy-ca
    # Service-account token signing key pair.
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
    openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
  ) || die "creating certificates with openssl failed"
}

issue() { # issue <name> <subject> <extfile> [<ca name>]  (in the pki dir)
  local ca=${4:-ca}
  openssl req -new -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -sha256 -days 3650 \
    -extfile "$3" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr"
}

b64() { base64 -w0 <"$1"; }

write_kubeconfig() { # write_kubeconfig <file> <client cert name>
  local pki="$RUN/pki" tmp="$1.tmp"
  (
    umask 077
    cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: threadweaver
  cluster:
    server: https://$API_HOST:$APISERVER_PORT
    certificate-authority-data: $(b64 "$pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$pki/$2.crt")
    client-key-data: $(b64 "$pki/$2.key")
contexts:
- name: threadweaver
  context:
    cluster: threadweaver
    user: $2
current-context: threadweaver
EOF
  )
  mv -f "$tmp" "$1"
}

# ---------------------------------------------------------------- processes --

start() { # start <name> <binary> <args...>
  local name=$1
  shift
  mkdir -p "$RUN/logs" "$RUN/pids"
  # Own session (no terminal signals), no inherited stdio (pipes of callers
  # close), and fd 9 (our lock) closed in the child.
  setsid "$@" </dev/null >"$RUN/logs/$name.log" 2>&1 9>&- &
  local pid=$!
  printf '%s %s\n' "$pid" "$1" >"$RUN/pids/$name.pid"
}

# Whether a pid is a live process (a zombie left to a non-reaping init counts as gone).
pid_running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# The pid of a component if it is alive and still the process we started.
alive_pid() {
  local f="$RUN/pids/$1.pid" pid exe argv0
  [[ -f $f ]] || return 1
  read -r pid exe <"$f" || return 1
  [[ -n $pid ]] && pid_running "$pid" || return 1
  argv0=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n1) || return 1
  [[ $argv0 == "$exe" ]] || return 1
  echo "$pid"
}

fail_with_log() { # fail_with_log <component> <message>
  log "ERROR: $2"
  if [[ -f "$RUN/logs/$1.log" ]]; then
    log "last lines of $RUN/logs/$1.log:"
    tail -n 40 "$RUN/logs/$1.log" >&2
  fi
  exit 1
}

wait_for() { # wait_for <component> <description> <command...>
  local comp=$1 what=$2 deadline=$((SECONDS + UP_TIMEOUT))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [[ $comp != - ]] && ! alive_pid "$comp" >/dev/null; then
      fail_with_log "$comp" "$comp exited while waiting for $what"
    fi
    if ((SECONDS >= deadline)); then
      fail_with_log "$comp" "timed out after ${UP_TIMEOUT}s waiting for $what"
    fi
    sleep 0.3
  done
}

kc() { "$BIN/kubectl" --kubeconfig "$RUN/admin.kubeconfig" "$@"; }

https_ok() { # https_ok <port> <path>   (KCM and the scheduler serve self-signed certificates)
  curl -fsSk --max-time 3 "https://$HOST:$1$2" >/dev/null
}

readyz() { kc get --raw /readyz --request-timeout=5s; }

node_ready() {
  local out
  out=$(kc get node "$NODE_NAME" --request-timeout=5s \
    -o jsonpath='{range .status.conditions[?(@.type=="Ready")]}{.status}{end} {.spec.taints}') || return 1
  # Ready, and no taints (node.kubernetes.io/not-ready is gone) but ours when a real node runs.
  [[ $out == "True " || $out == "True [{\"effect\":\"NoSchedule\",\"key\":\"kwok.x-k8s.io/node\",\"value\":\"fake\"}]" ]]
}

default_sa() { kc get serviceaccount default -n default --request-timeout=5s; }

healthy() {
  [[ -f "$RUN/key" && $(cat "$RUN/key") == "$KEY" && -f $KUBECONFIG_OUT ]] || return 1
  local c
  for c in "${COMPONENTS[@]}"; do alive_pid "$c" >/dev/null || return 1; done
  readyz >/dev/null 2>&1 && node_ready && node_healthy
}

stop_all() {
  local c pid i
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    c=${COMPONENTS[i]}
    pid=$(alive_pid "$c") || continue
    [[ $c == containerd ]] && node_down # pods first, while containerd still runs them
    log "stopping $c (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      pid_running "$pid" || break
      sleep 0.1
    done
    if pid_running "$pid"; then
      log "$c did not stop in 10s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  node_cleanup
  if [[ -d $RUN ]]; then
    # Keep the logs of the last run for post-mortems.
    if [[ -d "$RUN/logs" ]]; then
      rm -rf "$CACHE/logs.previous"
      cp -r "$RUN/logs" "$CACHE/logs.previous" 2>/dev/null || true
    fi
    rm -rf "$RUN"
  fi
  rm -f "$KUBECONFIG_OUT"
}

fake_node() {
  cat <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $NODE_NAME
  annotations:
    node.alpha.kubernetes.io/ttl: "0"
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: $NODE_NAME
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    type: kwok
spec:
  taints: $(real_node_enabled && echo '[{key: kwok.x-k8s.io/node, value: fake, effect: NoSchedule}]' || echo '[]')
status:
  allocatable: {cpu: "64", memory: 256Gi, pods: "500", ephemeral-storage: 1Ti}
  capacity: {cpu: "64", memory: 256Gi, pods: "500", ephemeral-storage: 1Ti}
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    kubeletVersion: fake
    kubeProxyVersion: fake
EOF
}

# ---------------------------------------------------------------- commands ---

lock() {
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock -w 1800 9 || die "could not lock $CACHE/.lock (another controlplane.sh running?)"
}

cmd_build() {
  lock
  local start=$SECONDS
  build
  log "binaries in $BIN ($((SECONDS - start))s)"
  sed 's/^/  /' "$BIN/VERSIONS" >&2
}

cmd_up() {
  lock
  local start=$SECONDS
  ensure_deb curl curl
  build
  load_ports
  if healthy; then
    log "already up (${SECONDS}s): $KUBECONFIG_OUT"
    echo "$KUBECONFIG_OUT"
    return 0
  fi
  if [[ -d $RUN ]]; then
    log "stale or unhealthy control plane found; restarting it"
    stop_all
  fi
  load_ports # the environment again, now that the old ports.env is gone
  node_claim
  check_ports_free
  mkdir -p "$RUN"
  save_ports
  echo "$KEY" >"$RUN/key"
  node_prepare_network
  gen_pki
  local pki="$RUN/pki"
  write_kubeconfig "$RUN/admin.kubeconfig" admin
  write_kubeconfig "$RUN/kube-controller-manager.kubeconfig" kube-controller-manager
  write_kubeconfig "$RUN/kube-scheduler.kubeconfig" kube-scheduler
  write_kubeconfig "$RUN/kwok.kubeconfig" kwok

  log "starting etcd on $HOST:$ETCD_PORT"
  start etcd "$BIN/etcd" --name default --data-dir "$RUN/etcd" \
    --listen-client-urls "http://$HOST:$ETCD_PORT" --advertise-client-urls "http://$HOST:$ETCD_PORT" \
    --listen-peer-urls "http://$HOST:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://$HOST:$ETCD_PEER_PORT" \
    --initial-cluster "default=http://$HOST:$ETCD_PEER_PORT" --initial-cluster-state new \
    --unsafe-no-fsync --auto-compaction-mode=periodic --auto-compaction-retention=1h \
    --quota-backend-bytes=8589934592 --log-level=warn
  wait_for etcd "etcd /health" curl -fsS --max-time 2 "http://$HOST:$ETCD_PORT/health"

  log "starting kube-apiserver on https://$API_HOST:$APISERVER_PORT"
  local reconciler=none # a loopback address cannot be an Endpoints address
  real_node_enabled && reconciler=lease
  local node_args
  mapfile -t node_args < <(node_apiserver_args)
  start kube-apiserver "$BIN/kube-apiserver" \
    --advertise-address="$API_HOST" --bind-address="$API_HOST" --secure-port="$APISERVER_PORT" \
    --etcd-servers="http://$HOST:$ETCD_PORT" --etcd-prefix=/registry \
    --cert-dir="$pki" --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" "${node_args[@]}" \
    --service-account-issuer="https://$HOST:$APISERVER_PORT" \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --requestheader-client-ca-file="$pki/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$pki/front-proxy-client.crt" --proxy-client-key-file="$pki/front-proxy-client.key" \
    --service-cluster-ip-range=10.0.0.0/24 --allow-privileged=true \
    --endpoint-reconciler-type="$reconciler" --profiling=false
  wait_for kube-apiserver "kube-apiserver /readyz" readyz
  cp -f "$RUN/admin.kubeconfig" "$KUBECONFIG_OUT"

  log "starting kube-controller-manager and kube-scheduler"
  local kcmkc="$RUN/kube-controller-manager.kubeconfig" schkc="$RUN/kube-scheduler.kubeconfig"
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$kcmkc" --authentication-kubeconfig="$kcmkc" --authorization-kubeconfig="$kcmkc" \
    --bind-address="$HOST" --secure-port="$KCM_PORT" --leader-elect=false --use-service-account-credentials=true \
    --root-ca-file="$pki/ca.crt" --service-account-private-key-file="$pki/sa.key" \
    --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
    --kube-api-qps=200 --kube-api-burst=400 --profiling=false
  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$schkc" --authentication-kubeconfig="$schkc" --authorization-kubeconfig="$schkc" \
    --bind-address="$HOST" --secure-port="$SCHEDULER_PORT" --leader-elect=false --profiling=false

  log "starting kwok"
  start kwok "$BIN/kwok" --kubeconfig="$RUN/kwok.kubeconfig" --config="$BIN/kwok-stages.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-lease-duration-seconds=40 --cidr=10.244.0.0/16 --node-ip="$HOST" \
    --server-address="$HOST:$KWOK_PORT"

  wait_for kube-controller-manager "kube-controller-manager /healthz" https_ok "$KCM_PORT" /healthz
  wait_for kube-scheduler "kube-scheduler /healthz" https_ok "$SCHEDULER_PORT" /healthz
  wait_for kwok "kwok /healthz" curl -fsS --max-time 2 "http://$HOST:$KWOK_PORT/healthz"
  fake_node | kc apply -f - >/dev/null || fail_with_log kwok "creating the fake node failed"
  wait_for kwok "node $NODE_NAME to be Ready and untainted" node_ready
  wait_for kube-controller-manager "the default ServiceAccount (made by kube-controller-manager)" default_sa
  node_start

  log "up in $((SECONDS - start))s: kube-apiserver https://$API_HOST:$APISERVER_PORT, kubeconfig:"
  echo "$KUBECONFIG_OUT"
}

cmd_down() {
  lock
  [[ -d $RUN ]] || { log "not running"; rm -f "$KUBECONFIG_OUT"; return 0; }
  load_ports
  current_bin
  stop_all
  log "down"
}

cmd_status() {
  load_ports
  current_bin
  local c pid rc=0
  if [[ ! -d $RUN ]]; then
    log "not running (no $RUN)"
    return 1
  fi
  for c in "${COMPONENTS[@]}"; do
    if pid=$(alive_pid "$c"); then
      printf '%-24s running (pid %s), log %s\n' "$c" "$pid" "$RUN/logs/$c.log"
    else
      printf '%-24s NOT running, log %s\n' "$c" "$RUN/logs/$c.log"
      rc=1
    fi
  done
  printf '%-24s https://%s:%s, etcd http://%s:%s\n' "endpoints" "$API_HOST" "$APISERVER_PORT" "$HOST" "$ETCD_PORT"
  if [[ -x "$BIN/kubectl" ]] && readyz >/dev/null 2>&1; then
    printf '%-24s ok\n' "/readyz"
  else
    printf '%-24s FAILING\n' "/readyz"
    rc=1
  fi
  if [[ -x "$BIN/kubectl" ]] && node_ready 2>/dev/null; then
    printf '%-24s Ready\n' "node $NODE_NAME"
  else
    printf '%-24s not Ready\n' "node $NODE_NAME"
    rc=1
  fi
  if real_node_enabled; then
    if [[ -x "$BIN/kubectl" ]] && real_node_ready 2>/dev/null; then
      printf '%-24s Ready (kubelet https://%s:%s, pods %s on %s)\n' "node $REAL_NODE_NAME" "$BRIDGE_IP" "$KUBELET_PORT" "$POD_CIDR" "$BRIDGE"
    else
      printf '%-24s not Ready\n' "node $REAL_NODE_NAME"
      rc=1
    fi
  fi
  if [[ -f "$RUN/key" && $(cat "$RUN/key") != "$KEY" ]]; then
    printf '%-24s running binaries %s, built ones are %s (run up to restart)\n' "version" "$(cat "$RUN/key")" "$KEY"
  fi
  printf '%-24s %s\n' "kubeconfig" "$KUBECONFIG_OUT"
  return $rc
}

cmd_import_images() {
  lock
  load_ports
  current_bin
  real_node_enabled && alive_pid containerd >/dev/null || die "no real node runs (hack/controlplane.sh up)"
  CONTAINERD_SOCK="$NODE_DIR/containerd/containerd.sock"
  node_import_images
}

cmd_env() {
  current_bin
  printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_OUT"
  printf 'export THREADWEAVER_CP_BIN=%q\n' "$BIN"
  # shellcheck disable=SC2016 # $PATH is expanded by the shell that evals this
  printf 'export PATH=%q:"$PATH"\n' "$BIN"
}

main() {
  local cmd=${1:-}
  case $cmd in
  build) cmd_build ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  import-images) cmd_import_images ;;
  *)
    sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
  esac
}

main "$@"
