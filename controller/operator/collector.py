"""Python's cycle collector, set for a process that holds many long-lived objects.

A full collection walks every object the process holds. At a cold start of 1,000 rings it ran nine
times, about 220 ms each (2 of the start's 20 s of CPU, each a pause for every ring), and most of
what it walked was what the imports made, which never becomes garbage: frozen once the operator
has started (``gc.freeze``), it is not walked again. A young generation ten times Python's default
makes the collections that find nothing rarer; cycles are still collected, a little later.
"""

from __future__ import annotations

import gc

YOUNG = 7_000  # allocations between young collections (Python's default: 700)


def settle() -> None:
    """Once started: collect what start-up left behind, then freeze what is left."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)
