"""The rings' requests to the API server: the ConfigMaps before the statuses, a status never
starved, Events only when nothing else is in flight (or their patience ran out)."""

from __future__ import annotations

import asyncio

from controller.kube.lanes import REPORT, URGENT, Lanes
from tests.shell.fakes import FakeClock


def test_a_waiting_configmap_goes_before_a_waiting_status_and_an_old_status_before_both():
    async def scenario():
        clock = FakeClock()
        lanes = Lanes(width=1, patience=5.0, clock=clock.monotonic)
        order: list[str] = []
        release = asyncio.Event()

        async def request(name: str, lane: int, hold: asyncio.Event | None = None) -> None:
            async with lanes.slot(lane):
                order.append(name)
                if hold is not None:
                    await hold.wait()

        first = asyncio.create_task(request("first", URGENT, release))
        await asyncio.sleep(0)
        waiting = [asyncio.create_task(request("status a", REPORT)),
                   asyncio.create_task(request("configmap", URGENT)),
                   asyncio.create_task(request("status b", REPORT))]
        await asyncio.sleep(0)
        assert lanes.in_flight == 1 and lanes.waiting == 3
        release.set()
        await asyncio.gather(first, *waiting)
        assert order == ["first", "configmap", "status a", "status b"]
        # A status that waited its patience goes before a ConfigMap that came after it.
        order.clear()
        release = asyncio.Event()
        first = asyncio.create_task(request("first", URGENT, release))
        await asyncio.sleep(0)
        old = asyncio.create_task(request("old status", REPORT))
        await asyncio.sleep(0)
        clock.now += 5.0
        later = asyncio.create_task(request("configmap", URGENT))
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(first, old, later)
        assert order == ["first", "old status", "configmap"] and lanes.in_flight == 0
    asyncio.run(scenario())


def test_a_cancelled_waiter_passes_its_turn_on():
    async def scenario():
        lanes = Lanes(width=1)
        release = asyncio.Event()

        async def holding() -> None:
            async with lanes.slot():
                await release.wait()

        async def quick() -> str:
            async with lanes.slot(REPORT):
                return "done"
        first = asyncio.create_task(holding())
        await asyncio.sleep(0)
        cancelled = asyncio.create_task(quick())
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.sleep(0)
        release.set()
        await first
        assert lanes.in_flight == 0
        assert await asyncio.wait_for(quick(), 1) == "done"
        # Cancelled just as the slot was handed over to it: it hands it on.
        release = asyncio.Event()
        first = asyncio.create_task(holding())
        await asyncio.sleep(0)
        unlucky = asyncio.create_task(quick())
        await asyncio.sleep(0)
        release.set()
        await asyncio.sleep(0)  # the first request ends and hands its slot over
        unlucky.cancel()
        await asyncio.gather(first, unlucky, return_exceptions=True)
        assert unlucky.cancelled() and lanes.in_flight == 0
        assert await asyncio.wait_for(quick(), 1) == "done"
    asyncio.run(scenario())


def test_an_event_waits_until_nothing_is_in_flight_or_its_patience_runs_out():
    async def scenario():
        lanes = Lanes(width=2)
        order: list[str] = []
        await asyncio.wait_for(lanes.quiet(60), 1)  # nothing in flight: at once

        async def event() -> None:
            await lanes.quiet(60)
            order.append("event")

        async with lanes.slot():
            waiting = asyncio.create_task(event())
            async with lanes.slot(REPORT):
                await asyncio.sleep(0.01)
                order.append("status done")
            await asyncio.sleep(0.01)  # one still in flight: the event still waits
            order.append("configmap done")
        await asyncio.wait_for(waiting, 1)
        assert order == ["status done", "configmap done", "event"]
        async with lanes.slot():
            await asyncio.wait_for(lanes.quiet(0.01), 1)  # busy all along: it goes anyway
        try:
            async with lanes.slot():
                raise OSError("the API server went away")
        except OSError:
            pass
        assert lanes.in_flight == 0
        await asyncio.wait_for(lanes.quiet(60), 1)
    asyncio.run(scenario())
