"""Replay: recorded inputs of every source kind (tests/testdata/replay/scenarios.json) go through
the source's own decoding, the planner and the renderer, pass after pass, as the worker carries
them; every ConfigMap, status and event must be byte-identical to what the code wrote when they
were recorded (expected.json). A redesign that changes one byte of a published ring fails here.

To record again, on purpose (a deliberate change of output, said in CHANGELOG.md):
``SHARDRING_RECORD_REPLAY=1 pytest tests/unit/test_replay.py``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from controller.core import ringfile
from controller.core.acks import Ack
from controller.core.limits import Access
from controller.core.memory import RingMemory
from controller.core.planner import Gathered, plan_pass, prepare
from controller.core.source_state import Snapshot, SourceState
from controller.core.views import RingObject, view_from_dict
from controller.sources.consul.decode import instances_from_reply
from controller.sources.registration import from_registration
from controller.sources.specs import read_spec

HERE = Path(__file__).parent / "testdata" / "replay"
SCENARIOS = json.loads((HERE / "scenarios.json").read_text())
EXPECTED_PATH = HERE / "expected.json"
NAMESPACE, UID, NOW_TEXT = "replay", "uid-replay", "2026-01-01T00:00:00Z"
# Passes after each input: at once, after any stabilization window, while a handover waits,
# after any handover timeout.
PASS_TIMES = (0.0, 700.0, 730.0, 1400.0)


def source_entries(kind: str, spec: dict[str, Any], raw: Any) -> Any:
    """A registry's raw data as that source's watcher hands it to the rings."""
    if kind == "consul":
        return instances_from_reply(json.dumps(raw).encode())
    if kind == "etcd":
        prefix = spec["etcd"]["prefix"].rstrip("/") + "/"
        return tuple(from_registration(f"etcd key {key!r}", key[len(prefix):],
                                       raw[key].encode("utf-8", "surrogateescape"))
                     for key in sorted(raw) if key[len(prefix):])
    path = spec["zookeeper"]["path"].rstrip("/")
    return tuple(from_registration(f"ZooKeeper node {path + '/' + child!r}", child,
                                   raw[child].encode("utf-8", "surrogateescape"),
                                   spec["zookeeper"].get("addressField", "address"))
                 for child in sorted(raw))


def acknowledgements(name: str, ring: ringfile.RingFile | None, lagging: int
                     ) -> tuple[Ack, ...]:
    """Every member's ring agent has applied the published version, but ``lagging`` of them
    (the first, by id), who still run the version before."""
    if ring is None:
        return ()
    members = sorted({*ring.assignment.ids, *ring.draining})
    return tuple(Ack(f"ack-{member}", name, member, ring.version - (i < lagging),
                     ring.hash if i >= lagging else "sha256:older", "ok", NOW_TEXT)
                 for i, member in enumerate(members))


def replay(scenario: dict[str, Any]) -> list[dict[str, Any]]:
    """Every pass's output, as the worker would write it."""
    name, kind, spec = scenario["name"], scenario["kind"], scenario["spec"]
    connections = {(k, "default"): Access() for k in ("consul", "etcd", "zookeeper")}
    status: dict[str, Any] = {}
    configmap: dict[str, Any] | None = None
    memory = RingMemory()  # carried from pass to pass as the worker carries it
    outputs, now, version = [], 10_000.0, 0
    for index, raw in enumerate(scenario["steps"], start=1):
        entries = source_entries(kind, spec, raw)
        for offset in PASS_TIMES:
            at = now + offset
            ring = RingObject(NAMESPACE, name, UID, 1, spec, status)
            intent = prepare(ring, connections, NOW_TEXT, read_spec)
            assert intent.config is not None, intent.plan
            source = SourceState(snapshot=Snapshot(index, entries, at))
            view = view_from_dict(configmap) if configmap is not None else None
            acks = acknowledgements(name, memory.last_published_ring, scenario.get("lagging", 0)) \
                if scenario.get("agents") else ()
            plan = plan_pass(ring, intent.config,
                             Gathered(view, source, acks=acks, memory=memory), at, NOW_TEXT)
            if plan.configmap is not None:
                version += 1
                configmap = {"metadata": {"name": plan.configmap.name,
                                          "resourceVersion": str(version),
                                          "labels": dict(plan.configmap.labels),
                                          "ownerReferences": [dict(plan.configmap.owner)]},
                             "data": dict(plan.configmap.data)}
            memory = plan.memory or memory
            status = plan.status
            outputs.append({"step": index, "at": offset, "status": plan.status,
                            "configmap": dict(plan.configmap.data) if plan.configmap else None,
                            "events": [[e.type, e.reason, e.message] for e in plan.events],
                            "requeueAfter": plan.requeue_after})
        now += 10_000.0
    return outputs


def test_the_scenarios_cover_every_source_kind() -> None:
    assert {s["kind"] for s in SCENARIOS} == {"consul", "etcd", "zookeeper"}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_replayed_inputs_give_the_recorded_configmaps_and_statuses(scenario: dict[str, Any]
                                                                   ) -> None:
    got = json.loads(json.dumps(replay(scenario)))  # as it would be sent: JSON
    if os.environ.get("SHARDRING_RECORD_REPLAY"):
        recorded = json.loads(EXPECTED_PATH.read_text()) if EXPECTED_PATH.exists() else {}
        recorded[scenario["name"]] = got
        EXPECTED_PATH.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    expected = json.loads(EXPECTED_PATH.read_text())[scenario["name"]]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        where = f"step {e['step']} at +{e['at']}"
        assert g["configmap"] == e["configmap"], where  # the bytes of every key, ring.json first
        assert g["status"] == e["status"], where
        assert g["events"] == e["events"], where
        assert g["requeueAfter"] == e["requeueAfter"], where
