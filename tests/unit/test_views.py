"""The ConfigMap data digest: equal exactly when the data is."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.views import data_digest


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=4),
       st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=4))
def test_data_digests_are_equal_exactly_when_the_data_is(first, second):
    assert (data_digest(first) == data_digest(second)) == (first == second)
    assert data_digest(dict(reversed(list(first.items())))) == data_digest(first)


def test_data_digests_tell_apart_data_that_concatenates_alike():
    alike = [{"a": "b:c"}, {"a:b": "c"}, {"a": "b", "c": ""}, {"ab": "c"}, {"a": "bc"},
             {"1:a": "b"}, {"": "1:ab"}]
    assert len({data_digest(data) for data in alike}) == len(alike)
