#!/usr/bin/env bash
# Builds hack/gitops-health (kstatus and Argo CD's Lua health, with their own libraries; see its
# main.go) into the same cache as the other binaries and prints its path. The build is keyed by
# the source's digest, so an edit rebuilds it and an unchanged checkout finds it at once.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/gitops-health" && pwd)"
CACHE_ROOT="${SHARDRING_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shardring}"
DIGEST="$(cat "$HERE/go.mod" "$HERE/go.sum" "$HERE"/*.go | sha256sum | cut -c1-12)"
BIN="$CACHE_ROOT/bin/gitops-health-$DIGEST"

if [[ -x "$BIN/gitops-health" ]]; then echo "$BIN/gitops-health"; exit 0; fi
command -v go >/dev/null || { echo "gitops-health: Go is required to build it" >&2; exit 1; }
echo "gitops-health: building (about half a minute, once)" >&2
mkdir -p "$BIN"
(cd "$HERE" && GOFLAGS="-buildvcs=false -mod=readonly" CGO_ENABLED=0 \
  go build -trimpath -o "$BIN/gitops-health.tmp" . && mv "$BIN/gitops-health.tmp" "$BIN/gitops-health")
echo "$BIN/gitops-health"
