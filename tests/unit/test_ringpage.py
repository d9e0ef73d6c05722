"""The ring page (controller/core/ringpage.py): every ring with its condition, a namespace
filter, one page per ring whose numbers are the published ring's, and nothing a name could
inject. tests/integration/test_ringpage.py renders it in a real Chromium."""

from __future__ import annotations

import re

from controller.core import ringfile
from controller.core.ring import Member, RingSpec, plan
from controller.core.ringfile import Endpoint
from controller.core.ringpage import RingView, _ranges, index, ring_page


def status(ready: str = "True", **extra) -> dict:
    return {"source": "consul:web", "members": 3, "shards": 64, "ringVersion": 4,
            "conditions": [{"type": "Ready", "status": ready, "reason": "Published",
                            "message": "the ConfigMap holds the current ring"}], **extra}


def published() -> ringfile.RingFile:
    members = [Member("a", zone="z1"), Member("b", weight=2.0, zone="z2"), Member("c")]
    assignment = plan(members, RingSpec(64, 2))
    return ringfile.RingFile(assignment, version=4, endpoints={
        "a": Endpoint("10.0.0.1", 9100)}, draining=("old",), handover={"c": (1, 2)})


def test_the_index_lists_every_ring_and_filters_by_namespace():
    rings = [RingView("team-b", "z", status()), RingView("team-a", "y", status("False")),
             RingView("team-a", "x", status())]
    page = index(rings)
    assert re.findall(r'<a href="rings/([^"]+)">', page) == \
        ["team-a/x", "team-a/y", "team-b/z"]
    assert '<p id="count">3 rings</p>' in page and 'class="bad"' in page
    only = index(rings, "team-b")
    assert re.findall(r'<a href="rings/([^"]+)">', only) == ["team-b/z"]
    assert 'value="team-b"' in only


def test_a_ring_page_shows_each_members_share_of_the_published_ring():
    ring = published()
    page = ring_page(RingView("ns", "web", status(convergence={"lagging": ["b"]}), ring))
    rows = dict(re.findall(r'<tr data-member="([^"]+)">.*?<td class="n shards">(\d+)</td>',
                           page))
    owned = {m: {s for s, owners in enumerate(ring.assignment.owners) if m in owners}
             for m in ("a", "b", "c")}
    owned["c"] |= {1, 2}  # still serving what it hands over
    assert {m: int(n) for m, n in rows.items() if m != "old"} == \
        {m: len(shards) for m, shards in owned.items()}
    assert rows["old"] == "0" and ">draining<" in page
    assert "lagging acknowledgement" in page and "handing over" in page
    assert "10.0.0.1:9100" in page and ">z2<" in page
    assert f'<span id="version">{ring.version}</span>' in page


def test_names_cannot_inject_markup():
    page = index([RingView("ns", "<script>alert(1)</script>", status())])
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_shards_are_shown_as_ranges():
    assert _ranges([0, 1, 2, 3, 7, 9, 10]) == "0-3, 7, 9-10"
    assert _ranges([]) == ""


def test_the_page_can_be_turned_off():
    from controller.operator.settings import OperatorConfig
    assert OperatorConfig.from_env({}).ring_page is True
    assert OperatorConfig.from_env({"SHARDRING_RING_PAGE": "false"}).ring_page is False
