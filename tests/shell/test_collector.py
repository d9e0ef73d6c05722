"""The cycle collector once the operator has started: start-up's objects frozen, fewer young
collections, and cycles still collected."""

from __future__ import annotations

import gc
import weakref

from controller.operator import collector


def test_settle_freezes_what_start_up_made_and_cycles_are_still_collected():
    threshold = gc.get_threshold()
    gc.set_threshold(700, *threshold[1:])  # Python's default (an operator run in-process set it)
    try:
        made_at_start = [object() for _ in range(10)] + [{"a": []}]
        collector.settle()
        assert gc.get_freeze_count() >= len(made_at_start)
        assert gc.get_threshold()[0] == collector.YOUNG > 700 and gc.isenabled()

        class Node:
            pass
        cycle = Node()
        cycle.self = cycle  # type: ignore[attr-defined]
        gone = weakref.ref(cycle)
        del cycle
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
