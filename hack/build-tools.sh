#!/usr/bin/env bash
# Builds the real control-plane binaries (etcd, kube-apiserver, kube-controller-manager, kubectl,
# consul, prometheus, promtool) from pinned Go modules into a cache outside the repository, and prints the directory.
#
# Upstream modules use `replace X => ./local/path` for their own sub-modules; replace directives only
# apply in the main module, so each binary is built from a tiny wrapper module that repeats them with
# the published versions (and repeats upstream's exclude directives).
#
# A second run finds the cached binaries and returns at once. SHARDRING_ASSETS (or envtest's
# KUBEBUILDER_ASSETS) pointing at a directory that already holds the binaries skips the build.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.36.3}"
CONSUL_VERSION="${CONSUL_VERSION:-v1.21.0}"  # newest whose own and sub-module zips the proxy serves
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
# Prometheus' Go module versions are v0.3MM.P for Prometheus 3.MM.P.
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
CACHE_ROOT="${SHARDRING_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shardring}"
# One directory per component and version (a version bump rebuilds only that component), and one
# directory of links that holds them all, which is what callers use.
ASSETS="$CACHE_ROOT/assets/k8s-$KUBE_VERSION-consul-$CONSUL_VERSION-etcd-$ETCD_VERSION-prometheus-$PROMETHEUS_VERSION"

log() { echo "build-tools: $*" >&2; }

have_all() {
  local dir="$1"
  for b in etcd kube-apiserver consul prometheus promtool; do [[ -x "$dir/$b" ]] || return 1; done
}

for override in "${SHARDRING_ASSETS:-}" "${KUBEBUILDER_ASSETS:-}"; do
  if [[ -n "$override" ]] && have_all "$override"; then echo "$override"; exit 0; fi
done

command -v go >/dev/null || { log "Go is required to build the control-plane binaries"; exit 1; }
export GOFLAGS="-buildvcs=false -mod=mod" CGO_ENABLED=0
# The module proxy serves consul-awsauth's pinned pseudo-version, but the checksum database has no
# entry for it (404), so that one module is taken from the proxy unverified.
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/hashicorp/consul-awsauth"

# mod_file MODULE VERSION -> path of the upstream go.mod in the module cache
mod_file() {
  (cd "$CACHE_ROOT" && go mod download -json "$1@$2" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
}

# wrapper DIR MODULE VERSION STAGING_VERSION: go.mod requiring MODULE@VERSION, replacing each locally
# replaced upstream module by STAGING_VERSION (or, if empty, the version upstream requires).
wrapper() {
  local dir="$1" module="$2" version="$3" staged="$4" upstream
  upstream="$(mod_file "$module" "$version")"
  mkdir -p "$dir"
  {
    echo "module shardring.local/tools"
    echo
    grep -m1 '^go ' "$upstream"
    grep -m1 '^godebug ' "$upstream" || true
    echo
    echo "require $module $version"
    echo
    awk -v staged="$staged" '
      /^require[ \t]*\(/ {inreq=1; next}
      inreq && /^\)/ {inreq=0; next}
      inreq && NF>=2 {req[$1]=$2}
      /^require[ \t]+[^(]/ {req[$2]=$3}
      /=>[ \t]*\.\.?\// {local[++n]=$1=="replace"?$2:$1}
      /^exclude[ \t]*\(/ {inex=1; print "exclude ("; next}
      inex {print; if ($0 ~ /^\)/) inex=0; next}
      /^exclude[ \t]+[^(]/ {print}
      END {
        for (i=1;i<=n;i++) {
          m=local[i]; if (m ~ /FORBIDDEN/ || !(m in req)) continue
          v = staged != "" ? staged : req[m]
          print "replace " m " => " m " " v
        }
      }' "$upstream"
  } >"$dir/go.mod"
}

build() {  # build NAME MODULE VERSION STAGED LDFLAGS PKG...
  local name="$1" module="$2" version="$3" staged="$4" ldflags="$5"; shift 5
  local missing=0 BIN_DIR="$CACHE_ROOT/bin/$name-$version"
  mkdir -p "$BIN_DIR" "$ASSETS"
  for pkg in "$@"; do
    local binary="$(basename "$pkg")"; [[ "$name" == etcd ]] && binary=etcd
    ln -sfn "$BIN_DIR/$binary" "$ASSETS/$binary"
    [[ -x "$ASSETS/$binary" ]] || missing=1
  done
  ((missing)) || return 0
  local work="$CACHE_ROOT/src/$name-$version"
  wrapper "$work" "$module" "$version" "$staged"
  log "building $name $version (first run only; this takes several minutes)"
  local start=$SECONDS
  (cd "$work" && go build -trimpath -ldflags "-s -w $ldflags" -o "$work/out/" "$@")
  for f in "$work"/out/*; do
    local target="$(basename "$f")"
    [[ "$name" == etcd ]] && target=etcd
    mv "$f" "$BIN_DIR/$target"
  done
  log "built $name in $((SECONDS - start)) s"
}

kv="${KUBE_VERSION#v}"; kmajor="${kv%%.*}"; krest="${kv#*.}"; kminor="${krest%%.*}"
build kubernetes k8s.io/kubernetes "$KUBE_VERSION" "v0.${kv#*.}" \
  "-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=$kmajor -X k8s.io/component-base/version.gitMinor=$kminor -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
build etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "" "" go.etcd.io/etcd/server/v3
build consul github.com/hashicorp/consul "$CONSUL_VERSION" "" \
  "-X github.com/hashicorp/consul/version.GitDescribe=$CONSUL_VERSION" github.com/hashicorp/consul

pv="${PROMETHEUS_VERSION#v0.}"; pminor="${pv%%.*}"
build prometheus github.com/prometheus/prometheus "$PROMETHEUS_VERSION" "" \
  "-X github.com/prometheus/common/version.Version=3.$((10#${pminor#3})).${pv#*.}" \
  github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool

have_all "$ASSETS" || { log "binaries missing in $ASSETS after build"; exit 1; }
echo "$ASSETS"
