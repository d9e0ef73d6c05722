"""The ring page's shell (controller/operator/ringpages.py): routes, the namespace filter, a
404 for what is not there, and a paused replica (peering) showing nothing of its old state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.core import ringfile
from controller.core.memory import RingMemory
from controller.core.ring import Member, RingSpec, plan
from controller.operator.ringpages import pages


@dataclass
class Worker:  # what the page reads of a RingWorker
    namespace: str
    name: str
    serving: bool = True
    body: dict[str, Any] | None = field(default_factory=lambda: {"status": {"members": 2}})
    memory: RingMemory = RingMemory(last_published_ring=ringfile.RingFile(
        plan([Member("a"), Member("b")], RingSpec(8, 1)), version=1))


def test_routes_filter_and_a_paused_replica_shows_nothing():
    workers = {("ns", "web"): Worker("ns", "web"), ("other", "db"): Worker("other", "db")}
    respond = pages(lambda: workers)
    code, page = respond("/rings", "namespace=ns")
    assert code == 200 and "rings/ns/web" in page and "rings/other/db" not in page
    code, page = respond("/rings/ns/web", "")
    assert code == 200 and 'data-member="a"' in page  # parsed from the published text
    assert respond("/rings/ns/absent", "")[0] == 404
    assert respond("/nothing/here", "")[0] == 404
    workers[("ns", "web")].serving = False  # peering paused this replica
    assert "rings/ns/web" not in respond("/rings", "")[1]
    assert respond("/rings/ns/web", "")[0] == 404


def test_a_trailing_slash_is_sent_to_the_page_its_relative_links_work_from():
    from urllib.parse import urljoin

    from controller.metrics import _Endpoint
    endpoint = _Endpoint()
    endpoint.pages = pages(lambda: {("ns", "web"): Worker("ns", "web")})

    def get(path: str, query: str = "") -> tuple[str, dict[str, str], bytes]:
        answer: dict[str, Any] = {}
        body = b"".join(endpoint({"PATH_INFO": path, "QUERY_STRING": query},
                                 lambda status, headers: answer.update(s=status, h=headers)))
        return answer["s"], dict(answer["h"]), body
    for path, query, lands in (("/rings/", "namespace=ns", "/rings?namespace=ns"),
                               ("/rings//", "", "/rings"),
                               ("/rings/ns/web/", "", "/rings/ns/web")):
        status, headers, _ = get(path, query)
        assert status.startswith("308")
        assert urljoin(f"http://h{path}", headers["Location"]) == f"http://h{lands}"
    status, _, body = get("/rings", "namespace=ns")
    assert status.startswith("200") and b"rings/ns/web" in body
