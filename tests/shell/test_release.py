"""Watchers released at once (rings deleted together, the operator stopping): what they shared
stops once, and a failure to end a subscription never fails the ring's worker."""

from __future__ import annotations

import asyncio
import logging

from controller.sources.consul.watch import WatcherRegistry
from tests.shell.fakes import setup, spec


class Hub:
    readers: frozenset = frozenset()

    def __init__(self) -> None:
        self.stops = 0

    async def stop(self) -> None:
        self.stops += 1
        await asyncio.sleep(0)  # (the other release runs meanwhile)


def test_watchers_released_at_once_stop_each_hub_once():
    # The second release lists the hubs while the first stops one: both then reach the next.
    registry = WatcherRegistry(connections={})
    hubs = [Hub() for _ in range(3)]
    for index, hub in enumerate(hubs):
        registry.hubs[("default", None, f"token-{index}")] = hub  # type: ignore[assignment]

    async def together() -> None:
        await asyncio.gather(*(registry.released(None) for _ in range(3)))  # type: ignore
    asyncio.run(together())
    assert [hub.stops for hub in hubs] == [1, 1, 1] and registry.hubs == {}


class Running:
    """kopf's DaemonStopped for a daemon that is never told to stop."""

    def __bool__(self) -> bool:
        return False

    async def wait(self) -> None:
        await asyncio.Event().wait()


def test_a_subscription_that_fails_to_end_is_one_warning_and_the_worker_ends(caplog):
    s = setup(spec())

    async def failing(subscription) -> None:
        raise KeyError(("default", None, "digest"))

    async def deleted_while_serving() -> None:
        await s.step()  # published, subscribed
        assert s.sources.active()
        s.sources.unsubscribe = failing  # type: ignore[method-assign]
        s.worker.retire()
        await asyncio.wait_for(s.worker.serve(Running()), 1)  # returns: no exception
    with caplog.at_level(logging.WARNING):
        asyncio.run(deleted_while_serving())
    warnings = [r for r in caplog.records if "did not end cleanly" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].exc_info is None
    assert "KeyError" in warnings[0].getMessage()


def test_an_outage_seen_by_the_hubs_of_several_tokens_is_one_line_and_its_end_one(caplog):
    from controller.sources.consul.failures import Failure
    from controller.sources.consul.hub import Hub as ConsulHub

    async def outage() -> None:
        said: dict = {}
        reads = asyncio.Semaphore(1)
        anonymous, token, other = (ConsulHub("connection 'default'", None, t, None, reads, said)
                                   for t in (None, "secret", "third"))  # type: ignore[arg-type]
        down = Failure("Consul query failed: TimeoutError", "unreachable")
        for hub in (anonymous, token, anonymous, other):
            hub._failed(down)
        await other.stop()  # (a ring gone while Consul is down: its hub says nothing)
        anonymous._reached()
        token._reached()
        anonymous._failed(down)  # a new outage is said again
    with caplog.at_level(logging.INFO, logger="shardring.consul"):
        asyncio.run(outage())
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["Consul query failed: TimeoutError (connection 'default')",
                     "Consul answers again (connection 'default')",
                     "Consul query failed: TimeoutError (connection 'default')"]
    assert not any("secret" in line for line in lines)


def test_a_tokens_denial_does_not_hide_the_end_of_an_outage(caplog):
    from controller.sources.consul.failures import Failure
    from controller.sources.consul.hub import Hub as ConsulHub

    async def outage() -> None:
        said: dict = {}
        reads = asyncio.Semaphore(1)
        anonymous, denied = (ConsulHub("connection 'default'", None, t, None, reads, said)
                             for t in (None, "revoked"))  # type: ignore[arg-type]
        denied._failed(Failure("Consul refused the token (HTTP 403)", "permission_denied",
                               denied=True))
        anonymous._failed(Failure("Consul query failed: TimeoutError", "unreachable"))
        anonymous._reached()
    with caplog.at_level(logging.INFO, logger="shardring.consul"):
        asyncio.run(outage())
    assert [r.getMessage() for r in caplog.records][-1] == \
        "Consul answers again (connection 'default')"
