"""Events wait for a moment when none of the rings' requests is in flight (or their patience)."""

from __future__ import annotations

import asyncio

from controller.kube.inflight import InFlight


def test_an_event_waits_until_no_rings_request_is_in_flight():
    async def scenario():
        in_flight = InFlight()
        order: list[str] = []
        await asyncio.wait_for(in_flight.quiet(60), 1)  # nothing in flight: at once

        async def event() -> None:
            await in_flight.quiet(60)
            order.append("event")

        with in_flight.request():
            waiting = asyncio.create_task(event())
            with in_flight.request():
                await asyncio.sleep(0.01)
                order.append("first done")
            await asyncio.sleep(0.01)  # one still in flight: the event still waits
            order.append("second done")
        await asyncio.wait_for(waiting, 1)
        assert order == ["first done", "second done", "event"] and in_flight.count == 0
    asyncio.run(scenario())


def test_an_event_goes_when_its_patience_runs_out_and_a_failed_request_counts_as_done():
    async def scenario():
        in_flight = InFlight()
        with in_flight.request():
            await asyncio.wait_for(in_flight.quiet(0.01), 1)  # busy all along: it goes anyway
        try:
            with in_flight.request():
                raise OSError("the API server went away")
        except OSError:
            pass
        assert in_flight.count == 0
        await asyncio.wait_for(in_flight.quiet(60), 1)
    asyncio.run(scenario())


def test_once_the_operator_exits_nothing_waits():
    async def scenario():
        in_flight = InFlight()
        with in_flight.request():
            in_flight.stop_waiting()
            await asyncio.wait_for(in_flight.quiet(60), 1)
            with in_flight.request():
                await asyncio.wait_for(in_flight.quiet(60), 1)
    asyncio.run(scenario())


def test_a_moment_with_none_in_flight_that_has_passed_does_not_count():
    async def scenario():
        in_flight, order = InFlight(), []

        async def event() -> None:
            await in_flight.quiet(60)
            order.append("event")

        first = in_flight.request()
        first.__enter__()
        waiting = asyncio.create_task(event())
        await asyncio.sleep(0.01)
        first.__exit__(None, None, None)  # none in flight for a moment ...
        with in_flight.request():  # ... but another began before the event's turn came
            await asyncio.sleep(0.01)
            order.append("second done")
        await asyncio.wait_for(waiting, 1)
        assert order == ["second done", "event"]
    asyncio.run(scenario())
