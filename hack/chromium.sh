#!/usr/bin/env bash
# Debian's Chromium for the ring page's browser test: installed from the distribution's packages
# when missing (as root, as CI runs), and its path printed.
set -euo pipefail

for candidate in "${CHROMIUM:-}" /usr/bin/chromium; do
  if [[ -n "$candidate" && -x "$candidate" ]]; then echo "$candidate"; exit 0; fi
done
if [[ "$(id -u)" != 0 ]]; then
  echo "chromium: not installed; as root: apt-get install chromium (or set CHROMIUM)" >&2
  exit 1
fi
echo "chromium: installing Debian's chromium (once)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends chromium >&2
echo /usr/bin/chromium
