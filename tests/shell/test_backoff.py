"""The one backoff every source's watcher uses after a failure."""

from __future__ import annotations

from controller.sources.base import Backoff


def test_waits_double_up_to_the_cap_with_jitter_and_start_again_after_a_success():
    backoff = Backoff(start=0.25, cap=2.0)
    waits = [backoff.wait() for _ in range(7)]
    for wait, nominal in zip(waits, (0.25, 0.5, 1, 2, 2, 2, 2), strict=True):
        assert 0.75 * nominal <= wait <= 1.25 * nominal
    backoff.reset()
    assert backoff.wait() <= 1.25 * 0.25


def test_a_failure_only_a_spec_change_fixes_may_wait_longer_than_the_usual_cap():
    backoff = Backoff(start=0.25, cap=1.0)
    waits = [backoff.wait(cap=60.0) for _ in range(10)]
    assert max(waits) > 1.25 * 1.0  # past the usual cap
    assert waits[-1] <= 1.25 * 60.0
