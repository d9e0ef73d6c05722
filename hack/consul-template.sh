#!/usr/bin/env bash
# Builds HashiCorp's consul-template from its pinned Go module into the same cache as the other
# binaries and prints its path. Only `make bench-template` needs it (the propagation comparison of
# issue #23), so the test suite's cold build does not pay for it.
set -euo pipefail

VERSION="${CONSUL_TEMPLATE_VERSION:-v0.41.1}"
CACHE_ROOT="${SHARDRING_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shardring}"
BIN="$CACHE_ROOT/bin/consul-template-$VERSION"

if [[ -x "$BIN/consul-template" ]]; then echo "$BIN/consul-template"; exit 0; fi
command -v go >/dev/null || { echo "consul-template: Go is required to build it" >&2; exit 1; }
echo "consul-template: building $VERSION (a few minutes, once)" >&2
mkdir -p "$BIN"
GOFLAGS="-buildvcs=false" CGO_ENABLED=0 GOBIN="$BIN" \
  go install "github.com/hashicorp/consul-template@$VERSION" >&2
echo "$BIN/consul-template"
