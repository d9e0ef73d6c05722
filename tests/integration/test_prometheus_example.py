"""examples/prometheus: the agent's rendering of the example's base configuration keeps exactly
this member's targets (hashmod computed independently here) and passes the real promtool; the
example's objects pass the API server's validation."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from controller.agent.promconfig import render
from controller.core import ringfile
from controller.core.ring import Member, RingSpec, plan
from tests.operator_helpers import kubectl

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "prometheus"


def agent_args() -> list[str]:
    statefulset = yaml.safe_load((EXAMPLE / "statefulset.yaml").read_text())
    return statefulset["spec"]["template"]["spec"]["initContainers"][0]["args"]


def test_the_rendered_config_keeps_exactly_this_members_targets():
    ring = ringfile.RingFile(plan([Member(f"scraper-{i}") for i in range(4)], RingSpec(256)))
    jobs = [a.split("=", 1)[1] for a in agent_args() if a.startswith("--prometheus-job=")]
    mine = ring.assignment.shards_of("scraper-2")
    config = yaml.safe_load(render((EXAMPLE / "base.yml").read_text(), mine, 256, jobs))
    rules = config["scrape_configs"][0]["relabel_configs"]
    assert [r["action"] for r in rules] == ["hashmod", "keep"]
    assert rules[0]["modulus"] == 256 and rules[0]["source_labels"] == ["__address__"]
    keep = re.compile(f"^(?:{rules[1]['regex']})$")  # Prometheus anchors relabel regexes
    for i in range(3000):
        address = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:9100"
        shard = int.from_bytes(hashlib.md5(address.encode()).digest()[8:16], "big") % 256
        assert bool(keep.match(str(shard))) == (shard in set(mine))


@pytest.mark.controlplane
def test_promtool_accepts_the_rendered_config_and_the_objects_validate(control_plane, namespace,
                                                                        crd, tmp_path):
    rendered = tmp_path / "prometheus.yml"
    rendered.write_text(render((EXAMPLE / "base.yml").read_text(), [1, 7], 256,
                               ["node-exporter"]))
    checked = subprocess.run([str(control_plane.assets / "promtool"), "check", "config",
                              "--syntax-only", str(rendered)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    objects = kubectl(control_plane, "kustomize", str(EXAMPLE))
    assert "prometheus-base" in objects and "scrapers-ring" in objects
    kubectl(control_plane, "apply", "-k", str(EXAMPLE), "-n", namespace, "--dry-run=server")
