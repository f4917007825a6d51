#!/usr/bin/env bash
# The project's container images, built with podman and no container registry.
#
#   hack/images.sh build [NAME...]   build images (default: all); NAME in: runtime pause mariadb dynalite
#   hack/images.sh smoke             run the runtime image read-only as its non-root user, wait for /ready
#   hack/images.sh archive NAME      print the path of an OCI archive of the image (cached per image id),
#                                    for `ctr images import` (hack/controlplane.sh imports them)
#   hack/images.sh ref NAME          print the image reference (e.g. localhost/thread-weaver:dev)
#   hack/images.sh names             print the image names
#
# Images (all from Dockerfiles of this repository; the same ones build with Docker for kind):
#   runtime   localhost/thread-weaver:dev           Dockerfile (runtime + operator)
#   pause     localhost/thread-weaver-pause:dev     hack/images/pause/pause.c (the pod sandbox)
#   mariadb   localhost/thread-weaver-mariadb:dev   hack/images/mariadb/Dockerfile (Debian's MariaDB)
#   dynalite  localhost/thread-weaver-dynalite:dev  hack/images/dynalite/Dockerfile (Debian's nodejs + npm)
#
# Base image: instead of python:3.11-slim / debian:bookworm-slim from a registry, a Debian
# bookworm root filesystem made with mmdebstrap from Debian's packages (python3, python3-venv,
# python-is-python3, ca-certificates), imported as localhost/thread-weaver-base:<key> and
# passed as BASE_IMAGE. Its tarball is cached in .cache/images/. Builds use the host network
# and read-only mounts of the host's CA bundle and pip.conf (the package registries are
# reached through them). Podman settings for this kind of host: .cache/images/containers.conf
# (runc and cgroupfs: hybrid cgroups; open-files limit within the host's hard limit).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
CACHE="$ROOT/.cache/images"
TAG=${TW_IMAGE_TAG:-dev}
SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,python-is-python3,ca-certificates
BASE_RECIPE=1 # bump when the base's recipe changes
SMOKE_PORT=${TW_IMAGE_SMOKE_PORT:-28181}
ALL=(runtime pause mariadb dynalite)

log() { printf 'images: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

ref() {
  case $1 in
  runtime) echo "localhost/thread-weaver:$TAG" ;;
  pause | mariadb | dynalite) echo "localhost/thread-weaver-$1:$TAG" ;;
  *) die "unknown image $1 (one of: ${ALL[*]})" ;;
  esac
}

ensure_tools() {
  local missing=() c
  for c in podman:podman mmdebstrap:mmdebstrap runc:runc gcc:gcc curl:curl; do
    command -v "${c%%:*}" >/dev/null 2>&1 || missing+=("${c#*:}")
  done
  [[ -e /usr/lib/x86_64-linux-gnu/libc.a || -e /usr/lib/aarch64-linux-gnu/libc.a ]] || missing+=(libc6-dev)
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo -n)
    "${sudo[@]}" apt-get update -qq >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null ||
      die "apt-get install ${missing[*]} failed"
  fi
  mkdir -p "$CACHE"
  cat >"$CACHE/containers.conf.tmp" <<'EOF'
# Written by hack/images.sh (CONTAINERS_CONF): settings this kind of host needs.
[containers]
# No CAP_SYS_RESOURCE: the defaults (1048576 open files) exceed the hard limit.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
# Hybrid cgroups (v1 controllers + a v2 mount): crun refuses them, runc works; no systemd.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  mv -f "$CACHE/containers.conf.tmp" "$CACHE/containers.conf"
  export CONTAINERS_CONF="$CACHE/containers.conf"
}

have_image() { podman image exists "$1" 2>/dev/null; }

build_mounts() {
  MOUNTS=()
  local f
  for f in /etc/ssl/certs/ca-certificates.crt /etc/pip.conf; do
    [[ -f $f ]] && MOUNTS+=(-v "$f:$f:ro")
  done
  return 0
}

base_ref() {
  local key
  key=$(printf '%s\n' "$SUITE" "$BASE_PACKAGES" "recipe=$BASE_RECIPE" | sha256sum | cut -c1-12)
  echo "localhost/thread-weaver-base:$SUITE-$key"
}

build_base() {
  BASE=$(base_ref)
  have_image "$BASE" && return 0
  local tar="$CACHE/base-${BASE##*:}.tar" start=$SECONDS
  if [[ ! -s $tar ]]; then
    log "making the base root filesystem from Debian packages ($SUITE: $BASE_PACKAGES)"
    rm -f "$CACHE"/base-*.tar
    # mmdebstrap picks the output format from the extension: keep .tar.
    rm -rf "$tar.partial.tar"
    mmdebstrap --quiet --variant=apt --include="$BASE_PACKAGES" "$SUITE" "$tar.partial.tar" \
      >"$CACHE/mmdebstrap.log" 2>&1 || { tail -n 30 "$CACHE/mmdebstrap.log" >&2; die "mmdebstrap failed"; }
    mv -f "$tar.partial.tar" "$tar"
  fi
  podman import --quiet "$tar" "$BASE" >/dev/null || die "podman import of the base failed"
  log "base image $BASE ($((SECONDS - start))s)"
}

podman_build() { # podman_build <name> <context dir> [<Dockerfile>]
  local name=$1 ctx=$2 file=${3:-$2/Dockerfile} r start=$SECONDS
  r=$(ref "$name")
  build_mounts
  log "building $r from ${file#"$ROOT"/}"
  if ! podman build --quiet --pull=never --network=host "${MOUNTS[@]}" \
    --build-arg "BASE_IMAGE=$BASE" -f "$file" -t "$r" "$ctx" >"$CACHE/build-$name.log" 2>&1; then
    tail -n 40 "$CACHE/build-$name.log" >&2
    die "building $r failed (log: $CACHE/build-$name.log)"
  fi
  log "built $r ($((SECONDS - start))s)"
}

build_pause() {
  local r sum start=$SECONDS
  r=$(ref pause)
  sum=$(sha256sum "$ROOT/hack/images/pause/pause.c" | cut -c1-12)
  if have_image "$r" &&
    [[ $(podman image inspect --format '{{index .Labels "io.threadweaver.source"}}' "$r") == "$sum" ]]; then
    return 0
  fi
  local dir="$CACHE/pause"
  rm -rf "$dir" && mkdir -p "$dir/rootfs"
  gcc -Os -static -s -o "$dir/rootfs/pause" "$ROOT/hack/images/pause/pause.c" || die "compiling pause.c failed"
  tar -C "$dir/rootfs" -cf "$dir/pause.tar" pause
  podman import --quiet --change 'ENTRYPOINT ["/pause"]' --change "LABEL io.threadweaver.source=$sum" \
    "$dir/pause.tar" "$r" >/dev/null || die "podman import of the pause image failed"
  log "built $r ($((SECONDS - start))s)"
}

cmd_build() {
  ensure_tools
  local names=("$@") n
  ((${#names[@]})) || names=("${ALL[@]}")
  for n in "${names[@]}"; do
    case $n in
    pause) build_pause ;;
    runtime) build_base && podman_build runtime "$ROOT" "$ROOT/Dockerfile" ;;
    mariadb | dynalite) build_base && podman_build "$n" "$ROOT/hack/images/$n" ;;
    *) die "unknown image $n (one of: ${ALL[*]})" ;;
    esac
  done
}

cmd_smoke() {
  ensure_tools
  local r name="tw-image-smoke-$$" uid ok=
  r=$(ref runtime)
  have_image "$r" || die "$r is not built (hack/images.sh build runtime)"
  if (exec 3<>"/dev/tcp/127.0.0.1/$SMOKE_PORT") 2>/dev/null; then
    die "port 127.0.0.1:$SMOKE_PORT is in use; set TW_IMAGE_SMOKE_PORT"
  fi
  log "smoke run of $r: read-only root, its own user, /ready on 127.0.0.1:$SMOKE_PORT"
  podman run -d --rm --name "$name" --read-only --network=host --cap-drop=ALL \
    "$r" threadweaver serve --host 127.0.0.1 --port "$SMOKE_PORT" --data-dir /tmp/threadweaver >/dev/null ||
    die "podman run failed"
  # shellcheck disable=SC2064
  trap "podman rm -f -t 5 $name >/dev/null 2>&1 || true" EXIT
  for _ in $(seq 1 150); do
    if curl -fsS --max-time 2 "http://127.0.0.1:$SMOKE_PORT/ready" >/dev/null 2>&1; then ok=1 && break; fi
    podman container exists "$name" || break
    sleep 0.2
  done
  if [[ -z $ok ]]; then
    podman logs "$name" 2>&1 | tail -n 30 >&2 || true
    die "$r did not answer /ready"
  fi
  uid=$(podman exec "$name" id -u)
  [[ $uid != 0 ]] || die "$r runs as root"
  if podman exec "$name" sh -c 'touch /opt/threadweaver/x' 2>/dev/null; then die "the root filesystem is writable"; fi
  log "ok: /ready answered $(curl -fsS "http://127.0.0.1:$SMOKE_PORT/ready"), uid $uid, root filesystem read-only"
}

cmd_archive() {
  ensure_tools
  local r id out
  r=$(ref "$1")
  id=$(podman image inspect --format '{{.Id}}' "$r" 2>/dev/null) || die "$r is not built (hack/images.sh build $1)"
  out="$CACHE/archive-$1-${id:0:12}.tar"
  if [[ ! -s $out ]]; then
    rm -f "$CACHE/archive-$1-"*.tar
    podman save --quiet --format oci-archive -o "$out.tmp" "$r" || die "podman save $r failed"
    mv -f "$out.tmp" "$out"
  fi
  echo "$out"
}

case ${1:-} in
build) shift && cmd_build "$@" ;;
smoke) cmd_smoke ;;
archive) [[ -n ${2:-} ]] || die "usage: $0 archive NAME" && cmd_archive "$2" ;;
ref) ref "${2:?usage: $0 ref NAME}" ;;
names) printf '%s\n' "${ALL[@]}" ;;
*)
  sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
