#!/bin/sh
# Container entrypoint for a sharded scraper. The ShardRing's ConfigMap is mounted at /etc/ring and
# MEMBER_KEY is this scraper's key (ring.json maps Consul identities to keys; for plain ids they are
# equal). Prometheus re-reads its config on SIGHUP; re-run this when kubelet swaps /etc/ring.
set -eu
{ cat /etc/prometheus/base.yml; sed 's/^/      /' "/etc/ring/relabel.${MEMBER_KEY}.yaml"; } \
  > /tmp/prometheus.yml
exec prometheus --config.file=/tmp/prometheus.yml "$@"
