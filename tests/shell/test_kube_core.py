"""The adapter's core requests (ConfigMaps, Secrets, Events) go through the API client itself:
what it sends, and how each kind of answer comes back (the integration tests run them against a
real API server; these pin the answers that are hard to provoke there)."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client import rest

from controller.core.views import CREDENTIALS_LABEL, Conflict, SecretMissing
from controller.kube.api import REQUEST_TIMEOUT, Kube


@dataclass
class Answer:
    status: int
    data: bytes
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class Server:
    """Stands in for the client's REST layer: records each request, answers from a list."""

    def __init__(self, *answers: tuple[int, Any]) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, str, Any, dict[str, str]]] = []
        self.timeouts: list[Any] = []

    def request(self, method, url, headers=None, body=None, post_params=None,
                _request_timeout=None):
        self.sent.append((method, url, body, dict(headers or {})))
        self.timeouts.append(_request_timeout)
        status, payload = self.answers.pop(0)
        return rest.RESTResponse(Answer(status, json.dumps(payload).encode()))


def kube(server: Server) -> Kube:
    api = k8s.ApiClient(k8s.Configuration(host="https://api.test"))
    api.rest_client = server  # type: ignore[assignment]
    return Kube(api=api)


def status(code: int, reason: str, message: str = "") -> dict[str, Any]:
    return {"kind": "Status", "code": code, "reason": reason, "message": message}


def test_configmaps_are_read_created_and_replaced_at_their_paths():
    written = {"metadata": {"name": "r-ring", "resourceVersion": "7"}, "data": {"a": "1"}}
    server = Server((404, status(404, "NotFound")), (201, written), (200, written),
                    (409, status(409, "Conflict")))
    adapter = kube(server)

    async def scenario():
        assert await adapter.read_configmap("ns", "r ring") is None  # 404: not there
        view = await adapter.write_configmap("ns", "r-ring", {"a": "1"}, {"l": "v"},
                                             {"uid": "u"}, None)
        assert view.resource_version == "7"
        await adapter.write_configmap("ns", "r-ring", {"a": "1"}, {}, {"uid": "u"}, "6")
        with pytest.raises(Conflict):
            await adapter.write_configmap("ns", "r-ring", {"a": "1"}, {}, {"uid": "u"}, "6")
    asyncio.run(scenario())
    methods_and_urls = [(method, url) for method, url, _, _ in server.sent]
    assert methods_and_urls == [
        ("GET", "https://api.test/api/v1/namespaces/ns/configmaps/r%20ring"),
        # (every write names the operator as its field manager)
        ("POST", "https://api.test/api/v1/namespaces/ns/configmaps?fieldManager=shardring-operator"),
        ("PUT", "https://api.test/api/v1/namespaces/ns/configmaps/r-ring?fieldManager="
                "shardring-operator"),
        ("PUT", "https://api.test/api/v1/namespaces/ns/configmaps/r-ring?fieldManager="
                "shardring-operator")]
    _, _, body, headers = server.sent[2]
    assert body["metadata"]["resourceVersion"] == "6" and body["data"] == {"a": "1"}
    assert headers["Content-Type"] == "application/json"


def test_a_marked_secret_is_read_and_an_unmarked_or_forbidden_one_is_refused():
    marked = {"metadata": {"labels": {CREDENTIALS_LABEL: "true"}},
              "data": {"token": base64.b64encode(b"s3cret\n").decode()}}
    unmarked = {"metadata": {"labels": {}}, "data": {"token": "eA=="}}
    server = Server((200, marked), (200, unmarked), (403, status(403, "Forbidden")))
    adapter = kube(server)

    async def scenario():
        assert await adapter.read_secret_key("ns", "tok", "token") == "s3cret"
        for name in ("other", "hidden"):
            with pytest.raises(SecretMissing) as refused:
                await adapter.read_secret_key("ns", name, "token")
            assert "eA==" not in str(refused.value)
    asyncio.run(scenario())
    assert [url.rsplit("/", 2)[-2:] for _, url, _, _ in server.sent] == \
        [["secrets", "tok"], ["secrets", "other"], ["secrets", "hidden"]]


def test_an_event_into_a_terminating_namespace_is_dropped_quietly():
    terminating = status(403, "Forbidden", 'events "r.x" is forbidden: unable to create new '
                         'content in namespace ns because it is being terminated')
    terminating["details"] = {"causes": [{"reason": "NamespaceTerminating"}]}
    server = Server((403, terminating), (201, {"metadata": {"name": "r.y"}}))
    adapter = kube(server)
    ring = {"metadata": {"namespace": "ns", "name": "r", "uid": "u"}}

    async def scenario():
        await adapter.post_event(ring, "Normal", "Resharded", "ring version 2")
        await adapter.post_event(ring, "Warning", "NoMembers", "none")
    asyncio.run(scenario())
    method, url, body, _ = server.sent[1]
    assert (method, url) == ("POST", "https://api.test/api/v1/namespaces/ns/events"
                                     "?fieldManager=shardring-operator")
    assert (body["reason"], body["count"], body["involvedObject"]["uid"]) == \
        ("NoMembers", 1, "u")


def test_every_request_of_a_pass_has_a_timeout():
    ring = {"metadata": {"name": "r", "resourceVersion": "3"}, "status": {}}
    cm = {"metadata": {"name": "r-ring", "resourceVersion": "7"}, "data": {}}
    server = Server((200, cm), (200, cm), (200, ring), (200, ring))
    adapter = kube(server)

    async def scenario():
        await adapter.read_configmap("ns", "r-ring")
        await adapter.write_configmap("ns", "r-ring", {}, {}, {}, "7")
        await adapter.patch_status("ns", "r", {"members": 1}, "3")
        await adapter.read_ring("ns", "r")
    asyncio.run(scenario())
    assert server.timeouts == [REQUEST_TIMEOUT] * 4


def test_an_api_server_that_never_answers_is_an_outage_not_a_hang(monkeypatch):
    import socket

    from controller.kube import api as api_module
    from controller.kube.apihealth import ApiUnreachable
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts (the kernel does), never answers: a stopped API server
    monkeypatch.setattr(api_module, "REQUEST_TIMEOUT", (1.0, 0.3))
    adapter = Kube(api=k8s.ApiClient(k8s.Configuration(
        host=f"http://127.0.0.1:{listener.getsockname()[1]}")))

    async def scenario():
        with pytest.raises(ApiUnreachable):
            await asyncio.wait_for(adapter.read_ring("ns", "r"), 5)
        with pytest.raises(ApiUnreachable):
            await asyncio.wait_for(adapter.read_configmap("ns", "r-ring"), 5)
    try:
        asyncio.run(scenario())
    finally:
        listener.close()


def test_a_namespace_where_the_operator_may_list_but_not_watch_is_refused():
    review = {"kind": "SelfSubjectAccessReview", "status": {"allowed": False}}
    server = Server((200, {"items": []}), (201, review),  # listed, may not watch
                    (403, status(403, "Forbidden")),  # may not list
                    (200, {"items": []}), (403, status(403, "Forbidden")),  # no review: list
                    (200, {"items": []}), (201, {"status": {"allowed": True}}))
    adapter = kube(server)

    async def scenario():
        return [await adapter.may_list("shardring.io", "v1alpha1", "shardrings", "team-a")
                for _ in range(4)]
    assert asyncio.run(scenario()) == [False, False, True, True]
    (method, url, _, _), (method2, url2, body, _) = server.sent[:2]
    assert (method, url.split("?")[0]) == (
        "GET", "https://api.test/apis/shardring.io/v1alpha1/namespaces/team-a/shardrings")
    assert "limit=1" in url
    assert (method2, url2) == (
        "POST", "https://api.test/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
        "?fieldManager=shardring-operator")
    assert body["spec"]["resourceAttributes"] == {"namespace": "team-a", "verb": "watch",
                                                  "group": "shardring.io",
                                                  "resource": "shardrings"}
