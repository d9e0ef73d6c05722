#!/usr/bin/env bash
# The Prometheus Operator's CRDs (ServiceMonitor, PodMonitor, PrometheusRule) from its pinned Go
# module, so the chart's and manifests/monitoring's objects are validated by a real API server.
# Prints the directory that holds them.
set -euo pipefail

VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
CACHE_ROOT="${SHARDRING_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shardring}"
OUT="$CACHE_ROOT/monitoring-crds-$VERSION"
KINDS=(servicemonitors podmonitors prometheusrules)

if [[ -f "$OUT/.complete" ]]; then echo "$OUT"; exit 0; fi
command -v go >/dev/null || { echo "monitoring-crds: Go is required to fetch them" >&2; exit 1; }
dir="$(cd "$CACHE_ROOT" && GOFLAGS=-mod=mod go mod download -json \
  "github.com/prometheus-operator/prometheus-operator@$VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')"
mkdir -p "$OUT"
for kind in "${KINDS[@]}"; do
  install -m 0644 "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$OUT/"
done
touch "$OUT/.complete"
echo "$OUT"
