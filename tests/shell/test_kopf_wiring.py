"""What the kopf wiring (controller/operator/handlers.py) relies on, checked on kopf's own
registry: a kopf upgrade or a new handler that breaks an assumption fails here."""

from __future__ import annotations

import kopf

from controller.operator import handlers


def test_no_handler_compares_essences_so_none_is_built():
    """NoEssence builds no essence: right only while no handler detects changes (on.create,
    on.update, on.resume, on.field...). One that needs them must bring the essence back."""
    registry = kopf.get_default_registry()
    assert registry._changing._handlers == []
    assert registry._watching._handlers and registry._spawning._handlers  # it does see ours
    body = kopf.Body({"metadata": {"name": "r", "annotations": {"a": "b"}}, "spec": {"x": 1}})
    assert handlers.NoEssence(prefix="shardring.io").build(body=body) == {}


def test_daemons_guard_their_rings_with_no_finalizer():
    registry = kopf.get_default_registry()
    assert [h.requires_finalizer for h in registry._spawning._handlers] == [False]


def test_the_body_kopf_keeps_for_a_rings_daemon_is_only_its_metadata():
    """kopf keeps each ring's last event body (the very dict) for its daemon: the ring handler
    drops its managedFields, which nothing reads, and its spec and status, which the worker has
    copied, so a thousand rings do not keep them twice."""
    import asyncio

    from controller.operator.settings import OperatorConfig
    from tests.shell.fakes import FakeClock, FakeKube, FakeSources, spec

    raw = {"apiVersion": "shardring.io/v1alpha1", "kind": "ShardRing",
           "metadata": {"namespace": "ns", "name": "r", "uid": "u1", "resourceVersion": "7",
                        "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]},
           "spec": spec(), "status": {"ringVersion": 3}}
    kept = kopf.Body(raw)  # what kopf hands the daemon: a view of the same dict
    operator = handlers.Operator(OperatorConfig(), kube=FakeKube(spec()),
                                 sources=FakeSources(FakeClock()))
    asyncio.run(handlers._ring_event(event={"type": "ADDED", "object": raw}, body=kept,
                                     namespace="ns", name="r", memo=operator))
    assert "managedFields" not in kept["metadata"] and kept["metadata"]["uid"] == "u1"
    assert "spec" not in raw and "status" not in raw
    assert operator.workers[("ns", "r")].body["spec"] == spec()
    assert operator.workers[("ns", "r")].body["status"] == {"ringVersion": 3}


def test_a_daemon_whose_worker_has_no_body_reads_the_ring_when_kopfs_lost_its_spec():
    """kopf's kept body is only metadata once a worker copied it: a worker made later (the old
    one retired) starts from the ring as the API server has it, never from a spec-less body."""
    import asyncio

    from controller.operator.settings import OperatorConfig
    from tests.shell.fakes import FakeClock, FakeKube, FakeSources, spec

    kube = FakeKube(spec())
    kube.ring["metadata"]["uid"] = "u1"
    operator = handlers.Operator(OperatorConfig(), kube=kube, sources=FakeSources(FakeClock()))
    kept = kopf.Body({"metadata": {"namespace": kube.ring["metadata"]["namespace"],
                                   "name": kube.ring["metadata"]["name"], "uid": "u1"}})

    class Stopped:
        def __bool__(self) -> bool:
            return True

        async def wait(self) -> None:
            return None
    namespace, name = kept["metadata"]["namespace"], kept["metadata"]["name"]
    asyncio.run(handlers._ring_daemon(stopped=Stopped(), body=kept, namespace=namespace,
                                      name=name, memo=operator))
    assert operator.workers[(namespace, name)].body["spec"] == spec()


def test_an_exit_waits_a_moment_for_events_still_being_posted():
    import asyncio

    from controller.operator.settings import OperatorConfig
    from tests.shell.fakes import FakeClock, FakeKube, FakeSources, spec

    async def scenario() -> list[str]:
        operator = handlers.Operator(OperatorConfig(), kube=FakeKube(spec()),
                                     sources=FakeSources(FakeClock()))
        posted: list[str] = []

        async def post() -> None:
            await asyncio.sleep(0.05)
            posted.append("Resharded")
        operator.background.add(asyncio.create_task(post()))
        await operator.close()
        return posted
    assert asyncio.run(scenario()) == ["Resharded"]
