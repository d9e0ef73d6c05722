"""The ring page in a real headless Chromium (Debian's), served by the operator on its metrics
port against the real control plane: the index lists the rings of a namespace, a ring's page
shows each member's shards exactly as its ConfigMap's member files do, and a screenshot of it is
saved by the run."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.operator_helpers import quick, service_name, tool, wait_for

pytestmark = pytest.mark.controlplane


@pytest.fixture(scope="session")
def chromium() -> Path:
    return tool("chromium.sh")


def browse(chromium: Path, profile: Path, url: str, *action: str) -> str:
    """Chromium, headless and offline (its background connections off), on one page."""
    result = subprocess.run(
        [str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", *action, url],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_ring_page_in_chromium_shows_what_the_configmap_holds(
        operator, rings, consul_helper, namespace, chromium, tmp_path, report):
    service = service_name()
    for i in range(3):
        consul_helper.register(service, f"{service}-{i}", port=9400 + i)
    rings.create("scrapers", quick(service, shards=64, replicationFactor=2))
    rings.create("lonely", quick(service_name()))  # nobody registered: not Ready
    ring = rings.wait_ring("scrapers-ring", lambda r: len(r.assignment.members) == 3, "ring")
    wait_for(lambda: (rings.condition("lonely", "Ready") or {}).get("reason") ==
             "NotEnoughMembers", "lonely degraded")
    base = f"http://127.0.0.1:{os.environ['SHARDRING_METRICS_PORT']}"

    listing = browse(chromium, tmp_path / "profile", f"{base}/rings?namespace={namespace}",
                     "--dump-dom")
    assert re.findall(r'<a href="rings/([^"]+)">', listing) == \
        [f"{namespace}/lonely", f"{namespace}/scrapers"]
    assert "NotEnoughMembers" in listing and "Published" in listing

    page = browse(chromium, tmp_path / "profile", f"{base}/rings/{namespace}/scrapers",
                  "--dump-dom")
    shown = {member: int(count) for member, count in re.findall(
        r'<tr data-member="([^"]+)">.*?<td class="n shards">(\d+)</td>', page)}
    data = rings.configmap("scrapers-ring").data
    keys = ring.keys()
    from_configmap = {member: len(data[f"member.{keys[member]}"].split())
                      for member in ring.assignment.ids}
    assert shown == from_configmap and sum(shown.values()) == 64 * 2
    assert f'<span id="version">{ring.version}</span>' in page

    screenshot = tmp_path / "ring-page.png"
    browse(chromium, tmp_path / "profile", f"{base}/rings/{namespace}/scrapers",
           f"--screenshot={screenshot}", "--window-size=1280,1000")
    assert screenshot.stat().st_size > 10_000 and screenshot.read_bytes()[:4] == b"\x89PNG"
    report(f"ring page screenshot: {screenshot}")
