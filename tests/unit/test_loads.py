"""Load reports (controller/core/loads.py, issue #26): the annotation's text both ways, bounded,
never failing on somebody else's writing; smoothing; stale reports expire; unknown shards count
as the mean."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from controller.core import loads

per_shard = st.dictionaries(st.integers(0, 65535),
                            st.floats(0, 1e9, allow_nan=False, allow_infinity=False),
                            max_size=300)


@given(per_shard)
def test_a_report_reads_back_to_three_significant_digits(measured):
    text = loads.encode(measured)
    back = loads.decode(text, 65536)
    assert set(back) == set(measured)
    for shard, load in measured.items():
        assert math.isclose(back[shard], load, rel_tol=5e-3, abs_tol=1e-9) or load < 1e-3
    assert loads.encode(measured) == text  # deterministic


def test_a_report_over_the_limit_leaves_the_lightest_shards_out():
    measured = {shard: float(shard) for shard in range(20_000)}
    text = loads.encode(measured, limit=4096)
    back = loads.decode(text, 20_000)
    assert len(text) <= 4096 and len(back) < 20_000
    dropped = set(measured) - set(back)
    # The heaviest are kept (as rounded: equal loads, the lower shard number first).
    assert min(back.values()) >= max(float(f"{measured[s]:.3g}") for s in dropped)


def test_what_cannot_be_read_is_left_out():
    assert loads.decode(None, 8) == {} and loads.decode("v2 1=3", 8) == {}
    assert loads.decode("v1 1=3 x=2 2=nan 3=-1 4=inf 9=1 5=2.5 6=", 8) == {1: 3.0, 5: 2.5}
    # Past a weight's limit, the limit: 1e308 loads summed to infinity (and every fair share
    # with them).
    assert loads.decode("v1 0=1e15 1=1.1e15 2=1e308", 8) == {0: 1e15, 1: 1e15, 2: 1e15}


def test_smoothing_weighs_a_report_by_the_time_since_the_last():
    first = loads.smooth(None, [loads.Report("a", {0: 100.0, 1: 10.0}, at=0.0)], half_life=60)
    assert first.value == {0: 100.0, 1: 10.0}
    second = loads.smooth(first, [loads.Report("a", {0: 200.0}, at=60.0)], half_life=60)
    assert second.value[0] == 150.0 and second.value[1] == 10.0  # one half-life: half way
    again = loads.smooth(second, [loads.Report("a", {0: 1000.0}, at=60.0)], half_life=60)
    assert again == second  # the same Lease seen twice changes nothing


def test_stale_reports_expire_and_unknown_shards_count_as_the_mean():
    smoothed = loads.smooth(None, [loads.Report("a", {0: 30.0}, at=0.0),
                                   loads.Report("b", {1: 10.0}, at=100.0)], half_life=60)
    fresh = loads.shard_loads(smoothed, 4, now=110.0, stale_after=60)
    assert np.array_equal(fresh, np.array([10.0, 10.0, 10.0, 10.0]))  # shard 0's is stale
    both = loads.shard_loads(smoothed, 4, now=50.0, stale_after=600)
    assert np.array_equal(both, np.array([30.0, 10.0, 20.0, 20.0]))
    assert loads.shard_loads(smoothed, 4, now=1000.0, stale_after=60) is None
    assert loads.shard_loads(None, 4, now=0.0, stale_after=60) is None
