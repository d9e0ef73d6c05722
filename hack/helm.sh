#!/usr/bin/env bash
# Builds helm from its pinned Go module into the same cache as the other binaries and prints its
# path (the chart's tests: lint, template, install/upgrade/uninstall on the real API server).
set -euo pipefail

VERSION="${HELM_VERSION:-v3.22.0}"
CACHE_ROOT="${SHARDRING_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shardring}"
BIN="$CACHE_ROOT/bin/helm-$VERSION"

if [[ -x "$BIN/helm" ]]; then echo "$BIN/helm"; exit 0; fi
command -v go >/dev/null || { echo "helm: Go is required to build it" >&2; exit 1; }
echo "helm: building $VERSION (a few minutes, once)" >&2
mkdir -p "$BIN"
GOFLAGS="-buildvcs=false" CGO_ENABLED=0 GOBIN="$BIN" \
  go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$VERSION" \
  "helm.sh/helm/v3/cmd/helm@$VERSION" >&2
echo "$BIN/helm"
