#!/usr/bin/env bash
# The quick start on this machine, no Docker (`make demo`, `make demo-down`):
#   up    the local cluster with its real node (hack/controlplane.sh up), the project's images
#         imported into it (built by `make images`), the operator installed with the Helm chart
#         (in the cluster, from localhost/thread-weaver:dev), MariaDB and dynalite
#         (config/samples/local-services.yaml) and the sample ThreadWeaverCluster chat-local
#         (config/samples/threadweavercluster-local.yaml) in namespace $DEMO_NAMESPACE; waits
#         until `kubectl get twc` shows it Ready with every replica ready and prints
#         `API: http://IP:PORT` (the Service's cluster IP, reachable from this machine).
#         Idempotent.
#   down  removes the sample, the services, the namespace and the operator release, and stops
#         the control plane if `up` started it.
# kind users: hack/kind-up.sh does the same on a kind cluster with Docker.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
DEMO_NAMESPACE=${DEMO_NAMESPACE:-demo}
OPERATOR_NAMESPACE=${OPERATOR_NAMESPACE:-threadweaver-system}
RELEASE=threadweaver-operator
STATE="$ROOT/.cache/demo"
TIMEOUT=${TW_DEMO_TIMEOUT:-600}

log() { printf 'demo: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

plane_env() {
  eval "$("$ROOT/hack/controlplane.sh" env)"
  export KUBECONFIG PATH
}

wait_until() { # wait_until <seconds> <description> <command...>
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 3
  done
  log "$what"
}

twc_ready() {
  local out
  out=$(kubectl -n "$DEMO_NAMESPACE" get twc chat-local -o \
    jsonpath='{.spec.replicas} {.status.readyReplicas} {.status.phase} {.status.conditions[?(@.type=="Ready")].status}')
  read -r want ready phase cond <<<"$out"
  [[ -n $want && $want == "$ready" && $phase == Running && $cond == True ]]
}

show_state() {
  kubectl -n "$DEMO_NAMESPACE" get twc,pods,jobs -o wide >&2 || true
  kubectl -n "$DEMO_NAMESPACE" get twc chat-local -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}' >&2 || true
  kubectl -n "$OPERATOR_NAMESPACE" logs deploy/"$RELEASE" --tail=30 >&2 || true
}

up() {
  local start=$SECONDS
  mkdir -p "$STATE"
  if ! "$ROOT/hack/controlplane.sh" status >/dev/null 2>&1; then
    touch "$STATE/started-controlplane"
  fi
  "$ROOT/hack/controlplane.sh" up >/dev/null
  "$ROOT/hack/controlplane.sh" import-images # images rebuilt since the node started
  plane_env

  local ns
  for ns in "$OPERATOR_NAMESPACE" "$DEMO_NAMESPACE"; do
    kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
    # Real containers even where a KWOK-only e2e policy is installed (tests/e2e/conftest.py).
    kubectl label namespace "$ns" threadweaver.io/real-pods=true --overwrite >/dev/null
  done

  log "installing the operator (Helm release $RELEASE in $OPERATOR_NAMESPACE, image localhost/thread-weaver:dev)"
  helm upgrade --install "$RELEASE" "$ROOT/charts/thread-weaver-operator" \
    --namespace "$OPERATOR_NAMESPACE" \
    --set fullnameOverride="$RELEASE" \
    --set image.repository=localhost/thread-weaver --set image.tag=dev --set image.pullPolicy=Never \
    --wait --timeout 300s >/dev/null || { show_state; die "helm install of the operator failed"; }
  # Helm never upgrades CRDs: keep the cluster's CRD current on re-runs.
  kubectl apply --server-side --force-conflicts -f "$ROOT/crds/threadweavercluster.yaml" >/dev/null
  # A rebuilt image keeps its tag: restart so the operator runs the current one.
  kubectl -n "$OPERATOR_NAMESPACE" rollout restart deploy/"$RELEASE" >/dev/null
  kubectl -n "$OPERATOR_NAMESPACE" rollout status deploy/"$RELEASE" --timeout 300s >/dev/null

  log "starting MariaDB and dynalite in $DEMO_NAMESPACE (config/samples/local-services.yaml)"
  kubectl -n "$DEMO_NAMESPACE" apply -f "$ROOT/config/samples/local-services.yaml" >/dev/null
  kubectl -n "$DEMO_NAMESPACE" rollout status deploy/mariadb --timeout 300s >/dev/null
  kubectl -n "$DEMO_NAMESPACE" rollout status deploy/dynalite --timeout 300s >/dev/null

  log "applying the sample ThreadWeaverCluster chat-local (config/samples/threadweavercluster-local.yaml)"
  kubectl -n "$DEMO_NAMESPACE" apply -f "$ROOT/config/samples/threadweavercluster-local.yaml" >/dev/null
  if ! wait_until "$TIMEOUT" "chat-local is Ready" twc_ready; then
    show_state
    die "chat-local did not become Ready in ${TIMEOUT}s"
  fi
  kubectl -n "$DEMO_NAMESPACE" get twc chat-local >&2

  local ip port
  ip=$(kubectl -n "$DEMO_NAMESPACE" get svc chat-local -o jsonpath='{.spec.clusterIP}')
  port=$(kubectl -n "$DEMO_NAMESPACE" get svc chat-local -o jsonpath='{.spec.ports[?(@.name=="http")].port}')
  [[ -n $port ]] || port=$(kubectl -n "$DEMO_NAMESPACE" get svc chat-local -o jsonpath='{.spec.ports[0].port}')
  wait_until 60 "the API answers through the Service" curl -fsS --max-time 3 "http://$ip:$port/ready" ||
    { show_state; die "http://$ip:$port/ready does not answer"; }
  log "ready in $((SECONDS - start))s; try: curl http://$ip:$port/ready"
  echo "API: http://$ip:$port"
}

down() {
  if "$ROOT/hack/controlplane.sh" status >/dev/null 2>&1; then
    plane_env
    kubectl -n "$DEMO_NAMESPACE" delete twc chat-local --ignore-not-found --wait=true --timeout=120s >/dev/null || true
    kubectl delete namespace "$DEMO_NAMESPACE" --ignore-not-found --wait=true --timeout=120s >/dev/null || true
    helm uninstall "$RELEASE" --namespace "$OPERATOR_NAMESPACE" --wait --timeout 120s >/dev/null 2>&1 || true
    kubectl delete namespace "$OPERATOR_NAMESPACE" --ignore-not-found --wait=true --timeout=120s >/dev/null || true
    log "removed the demo (namespaces $DEMO_NAMESPACE, $OPERATOR_NAMESPACE)"
  fi
  if [[ -f "$STATE/started-controlplane" ]]; then
    "$ROOT/hack/controlplane.sh" down
  fi
  rm -rf "$STATE"
}

case ${1:-up} in
up) up ;;
down) down ;;
*) echo "usage: $0 [up|down]" >&2 && exit 2 ;;
esac
