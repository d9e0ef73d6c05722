"""Thin Kubernetes adapter: the official (synchronous) client, run in worker threads so kopf's event
loop never blocks. Every write is conditional on resourceVersion."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client import rest

from controller.core.rfc3339 import now_rfc3339
from controller.core.views import (
    CREDENTIALS_LABEL,
    GROUP,
    LEGACY_CREDENTIALS_LABEL,
    PLURAL,
    VERSION,
    ConfigMapView,
    Conflict,
    NamespaceTerminating,
    RingGone,
    SecretMissing,
    view_from_dict,
)
from controller.kube.apihealth import ApiHealth, ApiUnreachable
from controller.kube.eventqueue import EventQueue, Waiting
from controller.kube.inflight import InFlight

_HOSTNAME = os.environ.get("HOSTNAME", "")
# How long a marked Secret's data, as its watch events showed it, is used without a read: a
# relisting watch does not report what was deleted meanwhile, so a revoked Secret goes within this.
SECRET_CONFIRMED_FOR = 300.0
REQUESTS = 8  # requests in flight at once (the operator's PARALLEL_PASSES)
# Seconds to connect and to wait for an answer. Without them a request to an API server that
# hangs (a stopped process, a dead peer without a reset) waited for ever, holding its pass slot,
# and nothing was said; after them the outage is said once (apihealth) and the pass backs off.
# A write that timed out may still have been applied: the next one, conditional on what the
# pass saw, finds out (409) and reads again.
REQUEST_TIMEOUT = (5.0, 30.0)
FIELD_MANAGER = "shardring-operator"  # who wrote what, in every object's managedFields
# How long an Event waits for a moment with none of the rings' requests in flight (eventqueue.py).
EVENT_PATIENCE = 30.0
log = logging.getLogger("shardring.kube")


def new_api_client() -> k8s.ApiClient:
    """The official client, without urllib3's own retries: they retried each failed request at
    once, three times, with a warning each (three lines a second while the API server was down),
    and stretched every timeout up to fourfold. The operator's passes and the agent back off by
    themselves and say once that the API is unreachable."""
    try:
        k8s_config.load_incluster_config()
        api = k8s.ApiClient()
    except k8s_config.ConfigException:
        # Read KUBECONFIG now: the client library reads it once, at import time.
        api = k8s_config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))
    api.configuration.retries = False  # the request's own error, not urllib3's MaxRetryError
    api.rest_client = rest.RESTClientObject(api.configuration)
    return api


def ensure_cluster_peering(name: str) -> bool:
    """Create the ClusterKopfPeering ``name`` unless it exists; True if this call created it.

    Shipping the object in the manifests would make a first ``kubectl apply -k`` fail (kubectl
    cannot map its kind while the CRD applied beside it is not served yet); without it, kopf
    would find no peers and every replica would be active. Called before kopf's peering starts.
    """
    custom = k8s.CustomObjectsApi(new_api_client())
    body = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}}
    try:
        custom.create_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", body,
                                            _request_timeout=(5, 10))
        log.info("created ClusterKopfPeering %s", name)
        return True
    except k8s.ApiException as error:
        if error.status == 409:
            return False
        if error.status == 403:
            # RBAC of an older install (no create): fine as long as the object is there; if it
            # is not, kopf says so (and the replica waits) when its peering starts.
            log.warning("may not create ClusterKopfPeering %s (HTTP 403); it must exist", name)
            return False
        if error.status == 404:
            log.warning("the ClusterKopfPeering CRD is not installed (kubectl apply -k crds/)")
            return False
        raise
    except (urllib3.exceptions.HTTPError, OSError) as error:
        log.warning("could not make sure ClusterKopfPeering %s exists (%s)", name,
                    type(error).__name__)
        return False


class Kube:
    def __init__(self, api: k8s.ApiClient | None = None, health: ApiHealth | None = None):
        self.api = api or new_api_client()
        self.health = health or ApiHealth()
        # Core objects (ConfigMaps, Secrets, Events) go through ``_core``: the client's CoreV1Api
        # took 0.67 s of every start to import (its models and their validators), for four calls.
        self.custom = k8s.CustomObjectsApi(self.api)
        # Requests block a thread each for their round trip: as many as passes run at once
        # (the default executor has 6 on 2 cores, and others share it).
        self._requests = ThreadPoolExecutor(max_workers=REQUESTS, thread_name_prefix="kube")
        self._events = ThreadPoolExecutor(max_workers=1, thread_name_prefix="events")
        self.in_flight = InFlight()  # the rings' requests (Events are not counted: they wait)
        self.event_queue = EventQueue(self.in_flight, self._post_event, EVENT_PATIENCE)
        # The marked Secrets' data (base64, as the API gives it) and when it was last confirmed,
        # from their watch events (or a read).
        self.secrets: dict[tuple[str, str], tuple[dict[str, str], float]] = {}
        self.secret_reads = 0  # GETs of a Secret: only before its first event

    async def _call(self, fn, *args, **kwargs) -> Any:
        return await self._in(None, fn, *args, **kwargs)

    async def _in(self, executor: ThreadPoolExecutor | None, fn, *args, **kwargs) -> Any:
        loop = asyncio.get_running_loop()
        sent = self.health.now()
        try:
            with self.in_flight.request() if executor is not self._events else \
                    contextlib.nullcontext():
                answer = await loop.run_in_executor(executor or self._requests,
                                                    functools.partial(fn, *args, **kwargs))
        except (urllib3.exceptions.HTTPError, OSError) as error:
            self.health.failed(type(error).__name__)
            raise ApiUnreachable(type(error).__name__) from None
        except k8s.ApiException as error:
            if error.status in (502, 503, 504):  # a gateway or a server still starting
                self.health.failed(f"HTTP {error.status}")
                raise ApiUnreachable(f"HTTP {error.status}") from None
            self.health.answered(sent)
            if error.status == 409:
                raise Conflict(str(error.reason)) from None
            if error.status == 403 and "NamespaceTerminating" in str(error.body or ""):
                raise NamespaceTerminating(str(error.reason)) from None
            raise
        self.health.answered(sent)
        return answer

    async def _json(self, fn: Any, *args: Any, executor: ThreadPoolExecutor | None = None,
                    **options: Any) -> Any:
        """The reply as plain JSON: the client's models would be built only to be turned back
        into dicts (for a ConfigMap of a big ring, most of a write's CPU time)."""
        def call() -> Any:
            reply = fn(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT,
                       **options)
            return json.loads(reply.data) if reply.data else None
        return await self._in(executor, call)

    async def _core(self, method: str, path: str, namespace: str, name: str | None = None,
                    body: Any = None, executor: ThreadPoolExecutor | None = None) -> Any:
        """A request for a core (v1) object in ``namespace``: ``path`` below it, with ``{name}``
        for ``name``. The reply as plain JSON; an error answer raises the client's
        ApiException, as its own calls do."""
        params = {"namespace": namespace} if name is None else \
            {"namespace": namespace, "name": name}
        return await self._request(method, "/api/v1/namespaces/{namespace}/" + path, params,
                                   body=body, executor=executor)

    async def _request(self, method: str, path: str, params: Mapping[str, str],
                       query: list[tuple[str, Any]] | None = None, body: Any = None,
                       executor: ThreadPoolExecutor | None = None) -> Any:
        """One request through the API client itself (``path`` with ``{...}`` for ``params``);
        the reply as plain JSON; an error answer raises the client's ApiException."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if method in ("POST", "PUT", "PATCH"):  # (managedFields name us, not the client library)
            query = [*(query or []), ("fieldManager", FIELD_MANAGER)]

        def call() -> Any:  # (all of it in the request thread: the body's encoding, the token)
            request = self.api.param_serialize(
                method=method, resource_path=path, path_params=dict(params),
                query_params=query, header_params=headers, body=body,
                auth_settings=["BearerToken"])
            reply = self.api.call_api(*request, _request_timeout=REQUEST_TIMEOUT)
            reply.read()
            if not 200 <= reply.status <= 299:
                k8s.ApiException.from_response(http_resp=reply, body=None, data=None)
            return json.loads(reply.data) if reply.data else None
        return await self._in(executor, call)

    async def may_list(self, group: str, version: str, plural: str, namespace: str) -> bool:
        """Whether the API server lets the operator list (and watch) these objects in
        ``namespace``: one list of at most one object (False when it answers 403), then
        ``_may_watch``. (On the Events' thread: not one of the rings' requests.)"""
        prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            await self._request("GET", prefix + "/namespaces/{namespace}/" + plural,
                                {"namespace": namespace}, query=[("limit", 1)],
                                executor=self._events)
        except k8s.ApiException as error:
            if error.status == 403:
                return False
            raise
        return await self._may_watch(group, plural, namespace)

    async def _may_watch(self, group: str, plural: str, namespace: str) -> bool:
        """A list allowed says nothing of a watch: the API server is asked (a
        SelfSubjectAccessReview, which every authenticated user may make; if it cannot be
        made, the list's answer stands)."""
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": {"namespace": namespace, "verb": "watch",
                                                  "group": group, "resource": plural}}}
        try:
            answer = await self._request(
                "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {},
                body=review, executor=self._events)
        except k8s.ApiException:
            return True
        return bool(((answer or {}).get("status") or {}).get("allowed", True))

    async def api_answers(self) -> bool:
        """GET /version, for ApiHealth's probe while the API is down."""
        version = k8s.VersionApi(self.api)
        await self._call(version.get_code, _request_timeout=(2, 3))
        return True

    async def read_configmap(self, namespace: str, name: str) -> ConfigMapView | None:
        try:
            found = await self._core("GET", "configmaps/{name}", namespace, name)
        except k8s.ApiException as error:
            if error.status == 404:
                return None
            raise
        return view_from_dict(found)

    async def write_configmap(self, namespace: str, name: str, data: Mapping[str, str],
                              labels: Mapping[str, str], owner: Mapping[str, Any],
                              resource_version: str | None) -> ConfigMapView:
        """Create (no resourceVersion) or replace (only if still at ``resource_version``)."""
        metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels),
                                    "ownerReferences": [dict(owner)]}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": dict(data)}
        if resource_version is None:
            written = await self._core("POST", "configmaps", namespace, body=body)
        else:
            written = await self._core("PUT", "configmaps/{name}", namespace, name, body)
        return view_from_dict(written)

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any],
                           resource_version: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            return await self._json(self.custom.patch_namespaced_custom_object_status, GROUP,
                                    VERSION, namespace, PLURAL, name, body,
                                    field_manager=FIELD_MANAGER)
        except k8s.ApiException as error:
            if error.status == 404:
                raise RingGone(name) from None
            raise

    async def read_ring(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._json(self.custom.get_namespaced_custom_object, GROUP, VERSION,
                                    namespace, PLURAL, name)
        except k8s.ApiException as error:
            if error.status == 404:
                return None
            raise

    async def post_event(self, ring: Mapping[str, Any], kind: str, reason: str,
                         message: str) -> None:
        """One Event about the ring, tried once: an Event is information, and its namespace may
        be going away (then nothing is posted, quietly). It waits its turn (eventqueue.py)."""
        metadata = ring.get("metadata") or {}
        reference = {k: metadata.get(k) for k in ("namespace", "name", "uid")}
        # Stamped when it happened, not when it is posted.
        await self.event_queue.post(reference, kind, reason, message, now_rfc3339())

    async def _post_event(self, waiting: Waiting) -> None:
        ring = waiting.ring
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{ring['name']}.", "namespace": ring["namespace"]},
            "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ShardRing",
                               "name": ring["name"], "namespace": ring["namespace"],
                               "uid": ring["uid"]},
            "type": waiting.type, "reason": waiting.reason, "message": waiting.message,
            "count": waiting.count, "firstTimestamp": waiting.first,
            "lastTimestamp": waiting.last,
            "source": {"component": "shardring-operator"},
            "reportingComponent": "shardring-operator", "reportingInstance": _HOSTNAME,
        }
        try:
            # One thread of their own: Events never queue ahead of the rings' writes.
            await self._core("POST", "events", ring["namespace"], body=event,
                             executor=self._events)
        except NamespaceTerminating:
            pass

    def secret_seen(self, namespace: str, name: str, data: Mapping[str, str] | None) -> None:
        """A marked Secret as its watch event showed it (None: deleted, or no longer marked).
        Rings read their credentials from here: no GET per pass."""
        if data is None:
            self.secrets.pop((namespace, name), None)
        else:
            self.secrets[(namespace, name)] = (dict(data), time.monotonic())

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        """The decoded value (never logged) of a Secret marked for this use
        (``CREDENTIALS_LABEL``): from its last watch event, or, before any event showed it, read
        from the API. A Secret marked with the older label is accepted too; only the new one is
        watched, so such a Secret is read on every pass and a change to it is seen at the next.

        Whatever is wrong (no such Secret, not marked, no such key, not readable), the message is
        the same, so a ring's author learns nothing about Secrets they may not read."""
        refused = SecretMissing(
            f"Secret {name!r} cannot serve as this ring's source credentials: it must exist in "
            f"namespace {namespace!r}, carry the label {CREDENTIALS_LABEL}=true and hold the key "
            f"{key!r}")
        seen = self.secrets.get((namespace, name))
        if seen is not None and time.monotonic() - seen[1] < SECRET_CONFIRMED_FOR:
            raw = seen[0].get(key)
        else:
            # Never seen, or not confirmed for a while: a watch that resumed after a gap does
            # not say what was deleted or unmarked meanwhile, so the cache is no authority.
            self.secrets.pop((namespace, name), None)
            raw = await self._read_marked_secret(namespace, name, key, refused)
        if raw is None:
            raise refused
        try:
            return base64.b64decode(raw).decode().strip()
        except ValueError:  # not UTF-8 text: the message must not quote any of it
            raise refused from None

    async def _read_marked_secret(self, namespace: str, name: str, key: str,
                                  refused: SecretMissing) -> str | None:
        try:
            secret = await self._core("GET", "secrets/{name}", namespace, name)
        except k8s.ApiException as error:
            if error.status == 403:
                # The ring's author sees only ``refused``; the operator's admin, the real cause.
                log.warning("reading Secret %s/%s is forbidden to the operator (RBAC): its "
                            "ServiceAccount needs get on secrets there", namespace, name)
            if error.status in (403, 404):
                raise refused from None
            raise
        self.secret_reads += 1
        labels = (secret.get("metadata") or {}).get("labels") or {}
        if "true" not in (labels.get(CREDENTIALS_LABEL), labels.get(LEGACY_CREDENTIALS_LABEL)):
            raise refused
        data = secret.get("data") or {}
        if labels.get(CREDENTIALS_LABEL) == "true":  # watched: its events keep it from here
            self.secret_seen(namespace, name, data)
        raw = data.get(key)
        return str(raw) if raw is not None else None
