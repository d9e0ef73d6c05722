"""The memory trimmer: one trim a little after a burst of passes, off the event loop, never two
at once, nothing without glibc."""

from __future__ import annotations

import asyncio
import threading

from controller.operator.trim import Trimmer, glibc_trim


async def until(condition, timeout: float = 5.0) -> None:
    """(Polled: a busy machine may run the trim's thread late.)"""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_a_burst_of_passes_is_followed_by_one_trim_off_the_loop():
    async def scenario() -> None:
        threads: list[threading.Thread] = []
        trimmer = Trimmer(quiet=0.05, trim=lambda: threads.append(threading.current_thread()))
        for _ in range(20):  # a burst
            trimmer.worked()
        await until(lambda: threads)
        await asyncio.sleep(0.2)
        assert len(threads) == 1 and threads[0] is not threading.main_thread()
        trimmer.worked()  # later work: later, one more
        await until(lambda: len(threads) == 2)
        assert trimmer.trims == 2
        trimmer.worked()
        trimmer.stop()  # the operator stops: nothing pending runs
        await asyncio.sleep(0.2)
        assert len(threads) == 2
    asyncio.run(scenario())


def test_a_slow_trim_is_never_run_twice_at_once():
    async def scenario() -> None:
        release, started = threading.Event(), []
        trimmer = Trimmer(quiet=0.01, trim=lambda: started.append(1) or release.wait(5))
        trimmer.worked()
        await until(lambda: started)
        trimmer.worked()  # due while the first still runs: skipped
        await asyncio.sleep(0.1)
        release.set()
        await asyncio.sleep(0.05)
        assert started == [1] and trimmer.trims == 1
    asyncio.run(scenario())


def test_glibc_trim_runs_here_and_nothing_is_trimmed_without_it():
    trim = glibc_trim()
    assert trim is not None and trim() in (0, 1)  # this machine has glibc
    async def scenario() -> None:
        trimmer = Trimmer(quiet=0.01, trim=None)
        trimmer.worked()
        await asyncio.sleep(0.05)
        assert trimmer.trims == 0
    asyncio.run(scenario())


def test_every_pass_of_the_operators_workers_tells_its_trimmer():
    from controller.operator.handlers import Operator
    from controller.operator.settings import OperatorConfig
    from tests.shell.fakes import NAME, NAMESPACE, FakeClock, FakeKube, FakeSources, spec

    async def scenario() -> None:
        kube = FakeKube(spec())
        operator = Operator(OperatorConfig(), kube=kube, sources=FakeSources(FakeClock()),
                            trimmer=Trimmer(quiet=0.01, trim=lambda: None))
        worker = operator.worker(NAMESPACE, NAME, "uid-1")
        worker.observe(kube.ring)
        await worker.step()
        await until(lambda: operator.trimmer.trims == 1)
    asyncio.run(scenario())
