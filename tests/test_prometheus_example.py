"""The Prometheus example composes into a valid config whose keep rules select the member's
targets (hashmod computed independently here)."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import yaml

from controller import ringfile
from controller.render import configmap_data
from controller.ring import Member, RingSpec, plan

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "prometheus"


def test_composed_config_keeps_exactly_this_members_targets(tmp_path):
    ring = ringfile.RingFile(plan([Member(f"scraper-{i}") for i in range(4)], RingSpec(256)))
    data = configmap_data(ring, prometheus_relabel=True)
    (tmp_path / "relabel.scraper-2.yaml").write_text(data["relabel.scraper-2.yaml"])
    script = (EXAMPLE / "start.sh").read_text()
    compose = re.search(r"^\{ (.*); \} \\$", script, re.M).group(1)
    compose = compose.replace("/etc/prometheus/base.yml", str(EXAMPLE / "base.yml")) \
        .replace("/etc/ring", str(tmp_path)).replace("${MEMBER_KEY}", "scraper-2")
    composed = subprocess.run(["sh", "-c", compose], capture_output=True, text=True, check=True)
    config = yaml.safe_load(composed.stdout)
    rules = config["scrape_configs"][0]["relabel_configs"]
    assert [r["action"] for r in rules] == ["hashmod", "keep"]
    assert rules[0]["modulus"] == 256 and rules[0]["source_labels"] == ["__address__"]
    keep = re.compile(f"^(?:{rules[1]['regex']})$")  # Prometheus anchors relabel regexes
    mine = set(ring.assignment.shards_of("scraper-2"))
    for i in range(3000):
        address = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:9100"
        shard = int.from_bytes(hashlib.md5(address.encode()).digest()[8:16], "big") % 256
        assert bool(keep.match(str(shard))) == (shard in mine)
