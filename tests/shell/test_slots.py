"""The pass slots: passes before statuses, so when rings wait for the API server every ring's new
ConfigMap goes out before the statuses; the slots themselves, then rings' workers sharing them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from controller.operator import worker as worker_module
from controller.operator.slots import PassSlots
from tests.shell.fakes import Running, Setup, setup, spec, until
from tests.shell.test_worker import published_with

# ---- the slots --------------------------------------------------------------------------------

def test_a_freed_slot_goes_to_the_passes_waiting_first_then_to_a_status():
    async def scenario():
        slots, order = PassSlots(1), []
        never = asyncio.Event()

        async def status(name: str) -> None:
            assert await slots.for_status(never, None)
            order.append(name)
            slots.release()

        async def passing(name: str) -> None:
            async with slots.passing():
                order.append(name)
                await asyncio.sleep(0)

        async with slots.passing():
            tasks = [asyncio.create_task(status("status 1"))]
            await asyncio.sleep(0)
            tasks += [asyncio.create_task(passing(f"pass {n}")) for n in (1, 2)]
            await asyncio.sleep(0)
            assert slots.contended
        await asyncio.wait_for(asyncio.gather(*tasks), 1)
        assert order == ["pass 1", "pass 2", "status 1"] and not slots.contended
        # Free, with nobody waiting: both kinds at once.
        assert await slots.for_status(never, 0)
        slots.release()
        async with slots.passing():
            pass
    asyncio.run(scenario())


def test_a_status_gives_up_when_woken_or_timed_out_and_leaves_nothing_behind():
    async def scenario():
        slots, woken = PassSlots(1), asyncio.Event()
        async with slots.passing():
            assert not await slots.for_status(woken, 0.01)  # the slot stayed taken
            waiting = asyncio.create_task(slots.for_status(woken, None))
            await asyncio.sleep(0)
            woken.set()
            assert not await asyncio.wait_for(waiting, 1)
        # Neither took the slot when it came free: it is there for the next one at once.
        assert await asyncio.wait_for(slots.for_status(asyncio.Event(), 0), 1)
        slots.release()
    asyncio.run(scenario())


def test_a_waiter_cancelled_after_it_was_handed_the_slot_gives_it_back():
    async def scenario():
        slots = PassSlots(1)
        async with slots.passing():
            async def passing() -> None:
                async with slots.passing():
                    pass
            waiter = asyncio.create_task(passing())
            status = asyncio.create_task(slots.for_status(asyncio.Event(), None))
            await asyncio.sleep(0)
        waiter.cancel()  # handed the slot by the release above, cancelled before it ran
        status.cancel()
        await asyncio.gather(waiter, status, return_exceptions=True)
        async with asyncio.timeout(1):
            async with slots.passing():
                pass
    asyncio.run(scenario())


# ---- rings sharing them -----------------------------------------------------------------------

def record(s: Setup, name: str, order: list[str], gate: asyncio.Event | None = None) -> None:
    """The ring's writes in the order they reach the API server; each yields to the loop, as a
    request does (the ConfigMap's first waits for ``gate``)."""
    write_configmap, patch_status = s.kube.write_configmap, s.kube.patch_status

    async def configmap(*args: Any) -> Any:
        await asyncio.sleep(0)
        if gate is not None:
            await gate.wait()
        written = await write_configmap(*args)
        order.append(f"{name} configmap {s.kube.published().version}")
        return written

    async def status(*args: Any) -> Any:
        await asyncio.sleep(0)
        patched = await patch_status(*args)
        order.append(f"{name} status {patched['status'].get('ringVersion')}")
        return patched
    s.kube.write_configmap, s.kube.patch_status = configmap, status  # type: ignore[method-assign]


async def serving(*rings: Setup) -> tuple[Running, list[asyncio.Task[None]]]:
    running = Running()
    tasks = [asyncio.create_task(s.worker.serve(running)) for s in rings]
    await until(lambda: all(s.sources.active() for s in rings))  # subscribed, waiting
    return running, tasks


async def stopped(running: Running, tasks: list[asyncio.Task[None]]) -> None:
    running.stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 1)


@dataclass
class Held:
    """Rings ``a``, ``b`` (its ConfigMap write waits for ``gate``) and more sharing one slot, all
    served: ``a`` has written its ConfigMap and holds its status, as ``b``'s pass waits."""

    rings: list[Setup]
    order: list[str]
    gate: asyncio.Event
    running: Running
    tasks: list[asyncio.Task[None]]


async def a_status_held(count: int = 2) -> Held:
    slots, order, gate = PassSlots(1), [], asyncio.Event()
    rings = [setup(spec(), passes=slots) for _ in range(count)]
    for index, ring in enumerate(rings):
        record(ring, "abc"[index], order, gate if index == 1 else None)
    running, tasks = await serving(*rings)
    for ring in rings:
        ring.sources.members(3)
    await until(lambda: order == ["a configmap 1"] and rings[0].worker._held is not None)
    return Held(rings, order, gate, running, tasks)


def test_while_passes_wait_every_rings_configmap_goes_out_before_the_statuses():
    async def scenario():
        slots, order = PassSlots(1), []
        a, b = setup(spec(), passes=slots), setup(spec(), passes=slots)
        record(a, "a", order)
        record(b, "b", order)
        running, tasks = await serving(a, b)
        a.sources.members(3)
        b.sources.members(3)
        await until(lambda: len(order) == 4)
        # b's pass waited while a wrote its ConfigMap: a's status waited for b's ConfigMap.
        assert order == ["a configmap 1", "b configmap 1", "b status 1", "a status 1"]
        assert a.kube.condition("Ready") == ("True", "Published")
        await stopped(running, tasks)
    asyncio.run(scenario())


def test_a_held_status_is_replaced_by_the_next_passs_and_written_once():
    async def scenario():
        held = await a_status_held()
        a = held.rings[0]
        a.sources.members(4)  # while its status waits, a's membership moves on
        await asyncio.sleep(0.01)
        held.gate.set()
        await until(lambda: len(held.order) == 5)
        assert held.order == ["a configmap 1", "b configmap 1", "a configmap 2", "a status 2",
                              "b status 1"]
        assert a.kube.status_writes == 1 and a.kube.ring["status"]["members"] == 4
        await stopped(held.running, held.tasks)
    asyncio.run(scenario())


def test_a_status_that_waited_its_patience_takes_its_turn_with_the_passes(monkeypatch):
    async def scenario():
        held = await a_status_held(3)
        a = held.rings[0]
        a.clock.now += worker_module.STATUS_PATIENCE
        a.worker.wake()  # (its patience is kept by the stepping clock, not the loop's)
        await asyncio.sleep(0.01)
        held.gate.set()
        await until(lambda: len(held.order) == 6)
        # a queued as a pass behind c: its status went before b's and c's, held for a's.
        assert held.order[:4] == ["a configmap 1", "b configmap 1", "c configmap 1",
                                  "a status 1"]
        await stopped(held.running, held.tasks)
    asyncio.run(scenario())


def test_a_worker_stopped_with_a_status_held_runs_its_pass_again_when_it_serves_again():
    async def scenario():
        held = await a_status_held()
        a = held.rings[0]
        held.running.stop.set()  # paused (peering) or exiting, with a's status unwritten
        await until(lambda: held.tasks[0].done())
        held.gate.set()
        await asyncio.wait_for(asyncio.gather(*held.tasks), 1)
        assert a.kube.status_writes == 0 and a.worker._held is None
        running, tasks = await serving(a)
        a.sources.members(3)  # (the fake's watch ended with the subscription)
        await until(lambda: a.kube.status_writes == 1)
        assert a.kube.condition("Ready") == ("True", "Published") and a.kube.configmap_writes == 1
        await stopped(running, tasks)
    asyncio.run(scenario())


def test_a_held_status_that_fails_is_planned_again_after_the_backoff():
    async def scenario():
        held = await a_status_held()
        a = held.rings[0]
        patch_status = a.kube.patch_status
        failures = [OSError("connection reset")]

        async def failing(*args: Any) -> Any:
            if failures:
                raise failures.pop()
            return await patch_status(*args)
        a.kube.patch_status = failing  # type: ignore[method-assign]
        held.gate.set()
        await until(lambda: a.worker.failures == 1)
        assert a.worker.fingerprint is None  # its pass runs again (the backoff: 1 s)
        await until(lambda: a.kube.status_writes == 1)
        assert a.kube.condition("Ready") == ("True", "Published") and a.kube.configmap_writes == 1
        await stopped(held.running, held.tasks)
    asyncio.run(scenario())


def test_a_held_status_queued_with_the_passes_is_dropped_if_its_ring_went_meanwhile():
    async def scenario():
        held = await a_status_held(3)
        a, order = held.rings[0], held.order
        a.clock.now += worker_module.STATUS_PATIENCE
        a.worker.wake()  # its patience is over: it queues (and a confirming pass) with the passes
        await asyncio.sleep(0.01)
        a.worker.retire()  # deleted (or re-created under its name: another ring) meanwhile
        held.gate.set()
        await until(lambda: len([o for o in order if "status" in o]) == 2)
        await asyncio.sleep(0.01)
        assert a.kube.status_writes == 0 and "a status 1" not in order
        await stopped(held.running, held.tasks)
    asyncio.run(scenario())


def test_a_status_conflicting_with_a_ring_created_again_under_its_name_is_not_written():
    async def scenario():
        s = setup(spec())
        await published_with(s, 3)
        writes = s.kube.status_writes
        s.kube.conflicts.append("status")
        s.kube.ring["metadata"]["uid"] = "another-ring"  # deleted and created again
        s.sources.members(4)
        await s.step()
        assert s.worker.retired and s.kube.status_writes == writes
    asyncio.run(scenario())
