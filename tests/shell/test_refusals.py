"""A served namespace the API server refuses: kopf's watch there waits (said once) instead of
retrying until the operator stops, the index does not wait for it, and it starts once allowed.
On a real API server under the shipped RBAC: tests/integration/test_install.py."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import pytest

from controller.operator.refusals import Refusals


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str


CONFIGMAPS, RINGS = Resource("", "v1", "configmaps"), Resource("shardring.io", "v1alpha1",
                                                               "shardrings")


class Toggles:
    def __init__(self) -> None:
        self.dropped: list[str] = []

    async def drop_toggle(self, toggle: str) -> None:
        self.dropped.append(toggle)


class Forbidden(Exception):
    status = 403


def test_a_refused_namespace_is_said_once_lets_the_index_go_and_is_watched_once_allowed(caplog):
    async def scenario():
        answers = {("team-c", "configmaps"): [False, False, True], ("team-c", "shardrings"):
                   [False, True]}
        asked: list[tuple[str, str]] = []

        async def may_list(group: str, version: str, plural: str, namespace: str) -> bool:
            asked.append((namespace, plural))
            queue = answers.get((namespace, plural))
            return queue.pop(0) if queue else True
        watched: list[tuple[str | None, str, object]] = []

        async def watcher(*, namespace, resource, resource_indexed=None, **_):
            watched.append((namespace, resource.plural, resource_indexed))
        toggles = Toggles()
        watch = Refusals(may_list, recheck=0.001).wrap(watcher)
        await asyncio.gather(
            watch(namespace="team-c", resource=CONFIGMAPS, operator_indexed=toggles,
                  resource_indexed="configmaps@team-c"),
            watch(namespace="team-c", resource=RINGS, operator_indexed=toggles,
                  resource_indexed=None),
            watch(namespace="team-a", resource=CONFIGMAPS, operator_indexed=toggles,
                  resource_indexed="configmaps@team-a"),
            watch(namespace=None, resource=Resource("", "v1", "namespaces")))
        assert sorted(watched, key=str) == sorted([
            ("team-c", "configmaps", None), ("team-c", "shardrings", None),
            ("team-a", "configmaps", "configmaps@team-a"), (None, "namespaces", None)], key=str)
        assert toggles.dropped == ["configmaps@team-c"]  # once, and only the refused one's
        assert asked.count(("team-c", "configmaps")) == 3 and ("", "namespaces") not in asked
    with caplog.at_level(logging.INFO, logger="shardring"):
        asyncio.run(scenario())
    said = [r.getMessage() for r in caplog.records]
    assert len([m for m in said if "team-c is to be served" in m]) == 1, said
    assert "RoleBinding" in said[0] and "shardring-operator-namespace" in said[0]
    assert [m for m in said if "allowed there now" in m] == \
        ["namespace team-c: the operator is allowed there now; serving it"]


def test_a_watch_refused_later_waits_again_and_other_failures_are_kopfs():
    async def scenario():
        allowed = [True, False, True]

        async def may_list(*_: str) -> bool:
            return allowed.pop(0)
        failures: list[Exception] = [Forbidden("its RoleBinding was deleted")]
        runs = []

        async def watcher(**_):
            runs.append(len(failures))
            if failures:
                raise failures.pop()
        await Refusals(may_list, recheck=0.001).wrap(watcher)(namespace="team-a",
                                                              resource=CONFIGMAPS)
        assert runs == [1, 0] and not allowed  # asked again, refused once, then watched

        async def broken(**_):
            raise RuntimeError("a bug")

        async def yes(*_: str) -> bool:
            return True
        with pytest.raises(RuntimeError):
            await Refusals(yes).wrap(broken)(namespace="team-a", resource=CONFIGMAPS)

        async def unreachable(*_: str) -> bool:
            raise OSError("connection refused")
        await Refusals(unreachable).wrap(watcher)(namespace="team-a", resource=CONFIGMAPS)
        assert runs == [1, 0, 0]  # an outage is not a refusal: kopf's watch retries it
    asyncio.run(scenario())


def test_a_watch_whose_resource_is_gone_waits_for_kopf_to_end_it():
    async def scenario():
        failures: list[Exception] = [type("NotFound", (Exception,), {"status": 404})()]
        runs: list[str | None] = []

        async def watcher(*, namespace, **_):
            runs.append(namespace)
            if failures:
                raise failures.pop()

        async def yes(*_: str) -> bool:
            return True
        watch = Refusals(yes, recheck=0.001).wrap(watcher)
        await watch(namespace=None, resource=RINGS)  # (cluster-wide: namespace None)
        assert runs == [None, None]  # not found once, watched again (not a crash)

        async def ended_by_kopf(**_):
            raise type("NotFound", (Exception,), {"status": 404})()
        waiting = asyncio.create_task(Refusals(yes, recheck=60).wrap(ended_by_kopf)(
            namespace="team-a", resource=RINGS))
        await asyncio.sleep(0.01)
        assert not waiting.done()  # waiting, until kopf cancels it as the CRD goes
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    asyncio.run(scenario())
