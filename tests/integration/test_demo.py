"""`make demo` runs to completion (smoke test): its own control plane, the operator, a reshard."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.controlplane


def test_demo_runs_and_only_the_failed_scrapers_shards_move():
    # Not the metrics port the in-process operator of other tests already serves.
    env = {k: v for k, v in os.environ.items() if k != "SHARDRING_METRICS_PORT"}
    result = subprocess.run([sys.executable, "-m", "controller.testing.demo"],
                            cwd=Path(__file__).resolve().parents[2], capture_output=True,
                            text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    moved = re.search(r"5 -> 4 members, (\d+) of 256 shards moved \(only scraper-2's (\d+)\)",
                      result.stdout)
    assert moved and moved.group(1) == moved.group(2), result.stdout
    assert "Resharded" in result.stdout and "Traceback" not in result.stdout
