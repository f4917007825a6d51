#!/usr/bin/env bash
# Regenerate go.mod/go.sum for a Kubernetes release: pins k8s.io/kubernetes at
# $1 (e.g. v1.37.2) and replaces every staging module (required at v0.0.0 in the
# tag's go.mod) with its published v0.Y.Z tag. Needs only the Go module proxy.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
KVER=${1:?usage: deps.sh v1.Y.Z}
SVER="v0.${KVER#v1.}"
gomod=$(go mod download -json "k8s.io/kubernetes@${KVER}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
[ -f "$gomod" ] || { echo "cannot download k8s.io/kubernetes@${KVER}" >&2; exit 1; }
# Staging modules = requirements at the placeholder version v0.0.0.
mapfile -t staging < <(go mod edit -json "$gomod" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print("\n".join(sorted(r["Path"] for r in d["Require"] if r["Version"] == "v0.0.0")))')
# Drop the old replaces, add the new ones.
for r in $(go mod edit -json | python3 -c 'import json,sys; print(" ".join(x["Old"]["Path"] for x in (json.load(sys.stdin).get("Replace") or [])))'); do
  go mod edit -dropreplace="$r"
done
{
  echo
  echo "// Every Kubernetes staging module at the tag matching k8s.io/kubernetes ${KVER}"
  echo "// (k8s.io/kubernetes requires them at v0.0.0 and replaces them with ./staging)."
  echo "replace ("
  for m in "${staging[@]}"; do printf '\t%s => %s %s\n' "$m" "$m" "$SVER"; done
  echo ")"
} >> go.mod
go mod edit -require="k8s.io/kubernetes@${KVER}"
GOFLAGS=-mod=mod go get "k8s.io/kubernetes@${KVER}"
go mod tidy
echo "go.mod now pins k8s.io/kubernetes ${KVER} with ${#staging[@]} staging replaces at ${SVER}"
