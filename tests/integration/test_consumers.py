"""The consumer examples (examples/consumers: a Python cache node, a Go queue consumer) on the real
control plane, each beside a real ring agent: two instances split the keys exactly once, a third
joins, and while its shards are handed over no key is held by nobody; afterwards the split is
exact again, over three."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from controller.testing.controlplane import free_port
from controller.testing.scrapers import AgentProcess
from tests.operator_helpers import quick, service_name, subprocess_env, wait_for

pytestmark = pytest.mark.controlplane
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "consumers"
KEYS = [f"orders-{i}" for i in range(500)]


@pytest.fixture(scope="module")
def go_consumer(tmp_path_factory) -> Path:
    binary = tmp_path_factory.mktemp("go") / "queue-consumer"
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=EXAMPLES / "go", check=True,
                   timeout=300)
    return binary


class Instance:
    """One member: registered in Consul at 127.0.0.1:port, its agent, and its consumer."""

    def __init__(self, language: str, go_binary: Path, control_plane, consul_helper,
                 service: str, configmap: str, index: int, workdir: Path, keys: Path):
        self.port, listen = 9700 + index, f"127.0.0.1:{free_port()}"
        self.report = workdir / f"report-{index}.json"
        self.id = consul_helper.register(service, f"{service}-{index}", port=self.port)
        env = subprocess_env(control_plane)
        self.agent = AgentProcess(workdir / f"agent-{index}", env, configmap, f"node-{index}",
                                  "--address", "127.0.0.1", "--port", str(self.port),
                                  "--reload-url", f"http://{listen}/reload")
        if language == "python":
            command = [sys.executable, str(EXAMPLES / "python" / "cache_node.py"),
                       "--keys", str(keys), "--interval", "0.2"]
        else:
            command = [str(go_binary), "-partitions", str(keys), "-interval", "200ms"]
        dash = "--" if language == "python" else "-"
        command += [f"{dash}ring-dir", str(self.agent.dir), f"{dash}address", "127.0.0.1",
                    f"{dash}port", str(self.port), f"{dash}report", str(self.report),
                    f"{dash}listen", listen]
        self.log = workdir / f"consumer-{index}.log"
        self.consumer = subprocess.Popen(
            command, env={**env, "PYTHONPATH": str(REPO / "clients" / "python" / "src")},
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)

    def held(self) -> tuple[int, list[str]]:
        try:
            report = json.loads(self.report.read_text())
        except (OSError, ValueError):
            return 0, []
        return report["version"], report["keys"]

    def stop(self) -> None:
        self.consumer.terminate()
        try:
            self.consumer.wait(10)
        except subprocess.TimeoutExpired:
            self.consumer.kill()
        self.agent.stop()


def split_exactly_once(instances: list[Instance], version: int) -> bool:
    reports = [i.held() for i in instances]
    keys = [k for _, held in reports for k in held]
    return all(v == version for v, _ in reports) and sorted(keys) == sorted(KEYS)


@pytest.mark.parametrize("language", ["python", "go"])
def test_every_key_is_held_once_before_and_after_a_join_and_never_dropped_between(
        language, go_consumer, operator, rings, consul_helper, control_plane, tmp_path):
    service = service_name()
    keys = tmp_path / "keys.txt"
    keys.write_text("\n".join(KEYS) + "\n")
    configmap = f"{rings.namespace}/consumers-ring"

    def start(index: int) -> Instance:
        return Instance(language, go_consumer, control_plane, consul_helper, service, configmap,
                        index, tmp_path, keys)
    instances = [start(0), start(1)]
    dropped: list[tuple[int, list[int]]] = []
    stop = threading.Event()
    try:
        rings.create("consumers", quick(service, shards=64))
        two = rings.wait_ring("consumers-ring", lambda r: len(r.assignment.members) == 2,
                              "two members")
        wait_for(lambda: split_exactly_once(instances, two.version), "an exact split over two")

        def watch() -> None:  # from here on, every key must be held by someone at every moment
            while not stop.is_set():
                reports = [i.held() for i in instances]
                held = {k for _, keys_held in reports for k in keys_held}
                if len(held) != len(KEYS):
                    dropped.append((len(KEYS) - len(held), [v for v, _ in reports]))
                time.sleep(0.01)
        sampler = threading.Thread(target=watch)
        sampler.start()
        instances.append(start(2))
        three = rings.wait_ring(
            "consumers-ring", lambda r: len(r.assignment.members) == 3 and not r.handover,
            "three members, the handover done", timeout=60)
        wait_for(lambda: split_exactly_once(instances, three.version),
                 "an exact split over three")
        stop.set()
        sampler.join()
        handover = (rings.get("consumers").get("status") or {}).get("lastHandover") or {}
        # The new member's shards were handed over, and released once it had applied them.
        assert handover.get("completedBy") == "Acknowledged", handover
        assert dropped == []
        held = [set(i.held()[1]) for i in instances]
        assert all(held) and not (held[0] & held[1] or held[0] & held[2] or held[1] & held[2])
    finally:
        stop.set()
        for instance in instances:
            instance.stop()
