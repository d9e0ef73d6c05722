"""The operator as a real process: `python -m controller run`, graceful SIGTERM, examples apply."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from tests.operator_helpers import Rings, subprocess_env

pytestmark = pytest.mark.controlplane
REPO = Path(__file__).resolve().parents[2]


def example_rings() -> list[tuple[Path, dict]]:
    """Every ShardRing document under examples/ (.yaml or .yml, any depth)."""
    found = []
    for path in sorted((REPO / "examples").rglob("*")):
        if path.suffix in (".yaml", ".yml"):
            found += [(path, doc) for doc in yaml.safe_load_all(path.read_text())
                      if isinstance(doc, dict) and doc.get("kind") == "ShardRing"]
    return found


def kept(wanted, got) -> bool:
    """Everything in ``wanted`` is in ``got`` with the same value (the server may add defaults)."""
    if isinstance(wanted, dict):
        return isinstance(got, dict) and \
            all(k in got and kept(v, got[k]) for k, v in wanted.items())
    return wanted == got


def test_examples_apply_cleanly(api_client, crd, namespace):
    from controller.sources.specs import parse_spec
    custom = k8s.CustomObjectsApi(api_client)
    examples = example_rings()
    assert examples, "no ShardRing found under examples/"
    assert (REPO / "examples" / "shardring.yaml") in [path for path, _ in examples]
    for path, body in examples:
        body["metadata"]["namespace"] = namespace
        created = custom.create_namespaced_custom_object(
            "shardring.io", "v1alpha1", namespace, "shardrings", body, dry_run="All")
        # A misspelt field would be pruned silently by the structural schema.
        assert kept(body["spec"], created["spec"]), (path, created["spec"])
        # ... and the operator itself must accept what the API server accepted.
        query = parse_spec(body["metadata"]["name"], created["spec"], namespace).query
        kind = next(k for k in ("service", "etcd", "zookeeper", "kubernetes")
                    if k in body["spec"])
        assert query.kind == {"service": "consul"}.get(kind, kind), path
        source = body["spec"][kind]
        assert query.target in (source.get("name"), source.get("prefix"), source.get("path"),
                                f"{namespace}/{source.get('service')}"), path


def test_operator_process_publishes_and_exits_quickly_on_sigterm(
        control_plane, crd, api_client, namespace, consul_helper, tmp_path):
    service = f"svc-{uuid.uuid4().hex[:8]}"
    for i in range(3):
        consul_helper.register(service, f"{service}-{i}", port=9000 + i)
    env = subprocess_env(control_plane)
    log = tmp_path / "operator.log"
    process = subprocess.Popen([sys.executable, "-m", "controller", "run", "--standalone",
                                "--log-format", "json", "--namespace", namespace],
                               cwd=REPO, env=env,
                               stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        rings = Rings(api_client, namespace)
        rings.create("proc", {"service": {"name": service}, "shards": 32,
                              "stabilization": {"window": "0s", "maxDelay": "0s"}})
        rings.wait_ring("proc-ring", lambda r: len(r.assignment.members) == 3, "a ring",
                        timeout=60)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
        elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert elapsed < 15, f"took {elapsed:.1f} s to stop"
    assert "Traceback" not in text, text[-3000:]
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    about_ring = [r for r in records if "proc-ring" in r.get("message", "")]
    assert about_ring and all(f"[{namespace}/proc]" in r["message"] for r in about_ring)
