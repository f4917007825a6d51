#!/usr/bin/env bash
# Prometheus and promtool for the monitoring tests, built offline from the Go module proxy
# (github.com/prometheus/prometheus, pinned in hack/prometheus/go.mod) and cached version-keyed,
# like hack/controlplane.sh does for the control plane.
#
#   hack/prometheus.sh build   build whatever binary is missing (cached, version-keyed)
#   hack/prometheus.sh bin     build if needed, print the directory holding prometheus + promtool
#   hack/prometheus.sh path    print that directory without building (exit 1 if not built)
#   hack/prometheus.sh env     print `export PATH=...` with that directory first; eval it
#
# Binaries: .cache/prometheus/bin/<version-key>/  (bin/current -> the newest)
# The build uses the tag remove_all_sd: only static, file and HTTP service discovery, which is
# all the tests need, and fewer packages to compile. The web UI is not embedded (no npm build); the
# HTTP API, rule evaluation and `promtool test rules` are complete.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SRC="$ROOT/hack/prometheus"
CACHE="$ROOT/.cache/prometheus"
BINROOT="$CACHE/bin"

BUILD_RECIPE=1 # bump when the build commands below change, to invalidate cached binaries
BUILD_TAGS=remove_all_sd,netgo
BINARIES=(prometheus promtool)

log() { printf 'prometheus: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

ensure_go() {
  command -v go >/dev/null 2>&1 || die "the Go toolchain (>= 1.26) is needed to build Prometheus; install Go and retry"
  export GOWORK=off CGO_ENABLED=0
  export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly -buildvcs=false"
}

versions() {
  PROM_MODULE_VERSION=$(sed -n 's#^[[:space:]]*\(require[[:space:]]\+\)\?github.com/prometheus/prometheus[[:space:]]\+\(v[^[:space:]]*\).*#\2#p' "$SRC/go.mod" | head -n1)
  [[ -n $PROM_MODULE_VERSION ]] || die "cannot read the pinned version from $SRC/go.mod"
  # The module v0.X.Y is the release 3.X.Y (Prometheus 3 tags its Go module v0.3xx.y).
  local minor patch
  minor=${PROM_MODULE_VERSION#v0.}
  patch=${minor#*.}
  minor=${minor%%.*}
  PROM_RELEASE="$((minor / 100)).$((minor % 100)).${patch}"
}

version_key() {
  local goversion sum
  goversion=$(go env GOVERSION)
  sum=$( { cat "$SRC/go.mod" "$SRC/go.sum"; echo "recipe=$BUILD_RECIPE tags=$BUILD_TAGS go=$goversion"; } |
    sha256sum | cut -c1-12)
  KEY="prometheus-${PROM_RELEASE}_${sum}"
  BIN="$BINROOT/$KEY"
}

build_one() { # build_one <name>
  local name=$1 out="$BIN/$1" logf="$BINROOT/build-$1.log" ver=github.com/prometheus/common/version
  local ldflags="-s -w -X $ver.Version=$PROM_RELEASE -X $ver.Revision=module-proxy-$PROM_MODULE_VERSION"
  ldflags+=" -X $ver.Branch=module-proxy -X $ver.BuildUser=thread-weaver -X $ver.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)"
  log "building $name $PROM_RELEASE (log: $logf)"
  local start=$SECONDS
  if ! (cd "$SRC" && go build -p "${TW_PROM_BUILD_JOBS:-2}" -trimpath -tags "$BUILD_TAGS" \
    -ldflags "$ldflags" -o "$out.tmp" "github.com/prometheus/prometheus/cmd/$name") >"$logf" 2>&1; then
    tail -n 40 "$logf" >&2
    die "building $name failed (full log: $logf)"
  fi
  mv -f "$out.tmp" "$out"
  log "built $name in $((SECONDS - start))s"
}

build() {
  ensure_go
  versions
  version_key
  mkdir -p "$BIN"
  # One build at a time (two test sessions starting together must not both compile).
  exec 9>"$BINROOT/.lock"
  flock 9
  local b
  for b in "${BINARIES[@]}"; do
    [[ -x "$BIN/$b" ]] || build_one "$b"
  done
  [[ -s "$BIN/VERSIONS" ]] || cat >"$BIN/VERSIONS" <<EOF
prometheus=$PROM_RELEASE (github.com/prometheus/prometheus $PROM_MODULE_VERSION, tags $BUILD_TAGS)
go=$(go env GOVERSION)
EOF
  [[ $(readlink "$BINROOT/current" 2>/dev/null) == "$KEY" ]] || ln -sfn "$KEY" "$BINROOT/current"
  # Keep only the current key's binaries (about 100 MB a key).
  local d
  for d in "$BINROOT"/*/; do
    d=${d%/}
    [[ -L $d || $(basename "$d") == "$KEY" ]] || rm -rf "$d"
  done
  exec 9>&-
}

# The directory of the binaries for the pinned version, without building.
built_dir() {
  if command -v go >/dev/null 2>&1; then
    versions
    version_key
  else
    BIN="$BINROOT/current"
  fi
  local b
  for b in "${BINARIES[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done
  printf '%s\n' "$BIN"
}

cmd=${1:-}
case $cmd in
build) build ;;
bin)
  build
  printf '%s\n' "$BIN"
  ;;
path) built_dir || die "not built yet: run hack/prometheus.sh build" ;;
env)
  dir=$(built_dir) || die "not built yet: run hack/prometheus.sh build"
  printf 'export PATH=%q:"$PATH"\n' "$dir"
  ;;
*)
  sed -n '2,14s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
  ;;
esac
