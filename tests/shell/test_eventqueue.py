"""Events go one at a time, each in a moment with none of the rings' requests in flight (or when
their patience runs out); a repeat of one still waiting joins it (count, first and last time)."""

from __future__ import annotations

import asyncio

import pytest

from controller.kube.eventqueue import MESSAGE_LIMIT, EventQueue, Waiting
from controller.kube.inflight import InFlight

A = {"namespace": "ns", "name": "a", "uid": "1"}
B = {"namespace": "ns", "name": "b", "uid": "2"}


def test_repeats_of_a_waiting_event_join_it_and_each_ring_keeps_its_own():
    async def scenario():
        in_flight, posted = InFlight(), []

        async def post(waiting: Waiting) -> None:
            posted.append(waiting)

        queue = EventQueue(in_flight, post, patience=60)
        with in_flight.request():  # a ring's write in flight: the Events wait
            first = asyncio.create_task(queue.post(A, "Normal", "Resharded", "v1", "t1"))
            other = asyncio.create_task(queue.post(B, "Normal", "Resharded", "b1", "t2"))
            warning = asyncio.create_task(queue.post(A, "Warning", "NoMembers", "w", "t3"))
            await asyncio.sleep(0.01)
            second = asyncio.create_task(queue.post(A, "Normal", "Resharded", "v2", "t4"))
            await asyncio.sleep(0.01)
            third = asyncio.create_task(queue.post(A, "Normal", "Resharded", "v3", "t5"))
            same = asyncio.create_task(queue.post(A, "Warning", "NoMembers", "w", "t6"))
            await asyncio.wait_for(first, 1)  # carried by the later ones: its poster goes on
            assert not posted and len(queue) == 3
        await asyncio.wait_for(asyncio.gather(second, third, other, warning, same), 1)
        # (Posted by when each is due: a repeat gives its Event more patience.)
        assert [(w.ring["name"], w.type, w.message, w.count, w.first, w.last)
                for w in posted] == [("b", "Normal", "b1", 1, "t2", "t2"),
                                     ("a", "Normal", "v3; before that: v2; before that: v1",
                                      3, "t1", "t5"),
                                     ("a", "Warning", "w", 2, "t3", "t6")]  # said once
    asyncio.run(scenario())


def test_a_message_is_cut_at_the_limit_however_many_join():
    async def scenario():
        posted = []

        async def post(waiting: Waiting) -> None:
            posted.append(waiting.message)

        in_flight = InFlight()
        queue = EventQueue(in_flight, post, patience=60)
        with in_flight.request():
            tasks = [asyncio.create_task(queue.post(A, "Normal", "Resharded", f"{i}" * 700, "t"))
                     for i in range(3)]
            await asyncio.sleep(0.01)
        await asyncio.wait_for(asyncio.gather(*tasks), 1)
        assert len(posted) == 1 and len(posted[0]) == MESSAGE_LIMIT
        assert posted[0].startswith("2" * 700 + "; before that: 1")
    asyncio.run(scenario())


def test_events_go_one_at_a_time_each_after_a_moment_with_no_request_in_flight():
    async def scenario():
        in_flight, order = InFlight(), []
        release = asyncio.Event()
        held: list[asyncio.Task[None]] = []

        async def ring_write() -> None:
            with in_flight.request():
                await release.wait()
            order.append("write done")

        async def post(waiting: Waiting) -> None:
            order.append(waiting.message)
            if waiting.message == "first":  # a ring's write starts while it is posted
                held.append(asyncio.create_task(ring_write()))
                await asyncio.sleep(0)

        queue = EventQueue(in_flight, post, patience=60)
        posts = asyncio.gather(queue.post(A, "Normal", "Resharded", "first", "t1"),
                               queue.post(B, "Normal", "Resharded", "second", "t2"))
        await asyncio.sleep(0.05)
        assert order == ["first"]  # the second waits for the write that began meanwhile
        release.set()
        await asyncio.wait_for(posts, 1)
        assert order == ["first", "write done", "second"]
    asyncio.run(scenario())


def test_an_event_goes_when_its_patience_runs_out_and_a_failed_post_is_its_posters():
    async def scenario():
        in_flight, posted = InFlight(), []

        async def post(waiting: Waiting) -> None:
            if waiting.reason == "Broken":
                raise OSError("refused")
            posted.append(waiting.reason)

        queue = EventQueue(in_flight, post, patience=0.05)
        with in_flight.request():  # busy all along
            with pytest.raises(OSError):
                await asyncio.wait_for(queue.post(A, "Warning", "Broken", "m", "t"), 1)
            await asyncio.wait_for(queue.post(A, "Normal", "Resharded", "m", "t"), 1)
        assert posted == ["Resharded"] and len(queue) == 0
    asyncio.run(scenario())


def test_a_repeat_gives_an_event_more_patience_up_to_twice_its_own():
    async def scenario():
        in_flight, posted, now = InFlight(), [], [0.0]

        async def post(waiting: Waiting) -> None:
            posted.append(waiting)

        queue = EventQueue(in_flight, post, patience=10, monotonic=lambda: now[0])
        with in_flight.request():
            tasks = [asyncio.create_task(queue.post(A, "Normal", "Resharded", "v1", "t1"))]
            await asyncio.sleep(0)
            now[0] = 8.0  # a repeat: due 10 s from now
            tasks.append(asyncio.create_task(queue.post(A, "Normal", "Resharded", "v2", "t2")))
            await asyncio.sleep(0)
            now[0] = 15.0  # another: due at 20, twice the patience after the first, not 25
            tasks.append(asyncio.create_task(queue.post(A, "Normal", "Resharded", "v3", "t3")))
            await asyncio.sleep(0.01)
            assert not posted
        await asyncio.wait_for(asyncio.gather(*tasks), 1)
        assert [(w.count, w.since, w.due) for w in posted] == [(3, 0.0, 20.0)]
    asyncio.run(scenario())


def test_while_the_rings_stay_busy_a_repeat_holds_its_event_back_until_its_new_due():
    async def scenario():
        loop = asyncio.get_running_loop()
        in_flight, posted = InFlight(), []

        async def post(waiting: Waiting) -> None:
            posted.append(loop.time())

        queue = EventQueue(in_flight, post, patience=0.3, monotonic=loop.time)
        start = loop.time()
        with in_flight.request():  # busy all along
            first = asyncio.create_task(queue.post(A, "Normal", "Resharded", "v1", "t1"))
            await asyncio.sleep(0.2)
            repeat = asyncio.create_task(queue.post(A, "Normal", "Resharded", "v2", "t2"))
            await asyncio.sleep(0.2)  # past the first one's due (0.3), short of the new (0.5)
            assert not posted
            await asyncio.wait_for(asyncio.gather(first, repeat), 5)
        assert len(posted) == 1 and posted[0] - start >= 0.5
    asyncio.run(scenario())


def test_an_exit_while_events_wait_leaves_none_of_their_posters_waiting():
    async def scenario():
        in_flight = InFlight()

        async def post(waiting: Waiting) -> None:
            await asyncio.sleep(60)

        queue = EventQueue(in_flight, post, patience=60)
        with in_flight.request():
            posters = [asyncio.create_task(queue.post(ring, "Normal", "Resharded", "m", "t"))
                       for ring in (A, B)]
            await asyncio.sleep(0.01)
            queue._poster.cancel()  # what the loop's end does to a task still running
            done, pending = await asyncio.wait(posters, timeout=1)
        assert not pending and all(task.cancelled() for task in done) and len(queue) == 0
    asyncio.run(scenario())
