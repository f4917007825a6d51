#!/usr/bin/env bash
# A demo thread-weaver cluster on kind (needs Docker, kind, kubectl and helm on PATH):
#   1. creates the kind cluster $KIND_CLUSTER (default thread-weaver) unless it exists;
#   2. builds the project image (Dockerfile) as thread-weaver:dev and loads it into kind;
#   3. installs the operator with the Helm chart (charts/thread-weaver-operator) using that image;
#   4. in namespace $DEMO_NAMESPACE (default demo): MariaDB and dynalite for the demo
#      (config/samples/local-services.yaml; with EXTERNAL_SERVICES=1 they are skipped and you
#      edit config/samples/threadweavercluster-local.yaml to point at your own MySQL/DynamoDB),
#      then the sample ThreadWeaverCluster chat-local;
#   5. waits until `kubectl get twc` shows it Running and prints how to reach the API.
# Usage: hack/kind-up.sh [up|down]
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KIND_CLUSTER="${KIND_CLUSTER:-thread-weaver}"
DEMO_NAMESPACE="${DEMO_NAMESPACE:-demo}"
IMAGE="${IMAGE:-thread-weaver:dev}"
EXTERNAL_SERVICES="${EXTERNAL_SERVICES:-0}"
OPERATOR_NAMESPACE="${OPERATOR_NAMESPACE:-threadweaver-system}"

log() { printf 'kind-up: %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || { log "$1 is required on PATH"; exit 1; }; }

down() {
  need kind
  kind delete cluster --name "$KIND_CLUSTER"
}

up() {
  need docker; need kind; need kubectl; need helm
  if ! kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
    log "creating kind cluster $KIND_CLUSTER"
    kind create cluster --name "$KIND_CLUSTER" --wait 120s
  fi
  kubectl config use-context "kind-$KIND_CLUSTER" >/dev/null

  log "building $IMAGE"
  docker build -t "$IMAGE" "$ROOT"
  kind load docker-image "$IMAGE" --name "$KIND_CLUSTER"
  if [ "$EXTERNAL_SERVICES" != 1 ]; then
    local svc
    for svc in mariadb dynalite; do
      log "building thread-weaver-$svc:dev (hack/images/$svc)"
      docker build -t "thread-weaver-$svc:dev" "$ROOT/hack/images/$svc"
      kind load docker-image "thread-weaver-$svc:dev" --name "$KIND_CLUSTER"
    done
  fi

  log "installing the operator (helm release threadweaver-operator in $OPERATOR_NAMESPACE)"
  helm upgrade --install threadweaver-operator "$ROOT/charts/thread-weaver-operator" \
    --namespace "$OPERATOR_NAMESPACE" --create-namespace \
    --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=IfNotPresent \
    --wait --timeout 180s
  # Helm never upgrades CRDs: keep the cluster's CRD current on re-runs.
  kubectl apply -f "$ROOT/crds/threadweavercluster.yaml"

  kubectl get namespace "$DEMO_NAMESPACE" >/dev/null 2>&1 || kubectl create namespace "$DEMO_NAMESPACE"
  if [ "$EXTERNAL_SERVICES" != 1 ]; then
    log "starting demo MariaDB and dynalite in $DEMO_NAMESPACE"
    kubectl -n "$DEMO_NAMESPACE" apply -f "$ROOT/config/samples/local-services.yaml"
    kubectl -n "$DEMO_NAMESPACE" rollout status deploy/mariadb --timeout 300s
    kubectl -n "$DEMO_NAMESPACE" rollout status deploy/dynalite --timeout 300s
  fi

  log "applying the sample ThreadWeaverCluster"
  sed "s#image: thread-weaver:dev#image: $IMAGE#" "$ROOT/config/samples/threadweavercluster-local.yaml" \
    | kubectl -n "$DEMO_NAMESPACE" apply -f -
  for _ in $(seq 1 120); do
    phase="$(kubectl -n "$DEMO_NAMESPACE" get twc chat-local -o jsonpath='{.status.phase}' 2>/dev/null || true)"
    [ "$phase" = Running ] && break
    sleep 5
  done
  kubectl -n "$DEMO_NAMESPACE" get twc chat-local
  log "API: kubectl -n $DEMO_NAMESPACE port-forward svc/chat-local 8080:8080, then curl localhost:8080/ready"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 [up|down]" >&2; exit 2 ;;
esac
