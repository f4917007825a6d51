#!/usr/bin/env bash
# Installs what a target needs, idempotently. Usage: hack/bootstrap.sh python PYTHON VENV
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt() {  # need_apt PKG... : install Debian packages that are missing
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}

case "${1:-}" in
  python)
    py="${2:-python3}"; venv="${3:-.venv}"
    command -v "$py" >/dev/null || need_apt python3
    if [ ! -x "$venv/bin/python" ]; then
      "$py" -m venv "$venv" 2>/dev/null || { need_apt python3-venv; rm -rf "$venv"; "$py" -m venv "$venv"; }
    fi
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e '.[operator,test,bench,lint]'
    ;;
  apt)
    shift; need_apt "$@" ;;
  *)
    echo "usage: $0 python PYTHON VENV | apt PKG..." >&2; exit 2 ;;
esac
