"""Writes this agent's acknowledgement Lease (``controller.core.acks`` says what is in it)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubernetes import client as k8s

from controller.core.acks import Ack, build_lease

FIELD_MANAGER = "shardring-agent"  # who wrote the acknowledgements, in their managedFields


class LeaseWriter:
    def __init__(self, coordination: k8s.CoordinationV1Api, namespace: str):
        # Any: called with _preload_content=False, so replies are raw JSON, not the models.
        self.api: Any = coordination
        self.namespace = namespace
        self._version: str | None = None  # the Lease's resourceVersion after our last write

    def write(self, ack: Ack, owner: Mapping[str, Any] | None) -> None:
        """Create or replace the Lease; raises the client's ApiException when refused."""
        for _attempt in range(3):
            if self._version is None:
                self._version = self._read(ack.lease)
            body = build_lease(self.namespace, ack, owner, self._version)
            try:
                if self._version is None:
                    reply = self.api.create_namespaced_lease(
                        self.namespace, body, field_manager=FIELD_MANAGER,
                        _preload_content=False, _request_timeout=(5, 15))
                else:
                    reply = self.api.replace_namespaced_lease(
                        ack.lease, self.namespace, body, field_manager=FIELD_MANAGER,
                        _preload_content=False, _request_timeout=(5, 15))
            except k8s.ApiException as error:
                if error.status in (404, 409):  # deleted or changed meanwhile: read it again
                    self._version = None
                    continue
                raise
            self._version = str(json.loads(reply.data)["metadata"]["resourceVersion"])
            return
        raise RuntimeError(f"Lease {ack.lease} kept changing under this agent")

    def intact(self, name: str) -> bool:
        """Whether the Lease is still as this agent last wrote it (deleted, or written by someone
        else: not); raises the client's ApiException when the read is refused."""
        found = self._read(name)
        if found != self._version:
            self._version = found  # (the next write replaces, or creates, it)
            return False
        return True

    def _read(self, name: str) -> str | None:
        try:
            reply = self.api.read_namespaced_lease(name, self.namespace, _preload_content=False,
                                                   _request_timeout=(5, 15))
        except k8s.ApiException as error:
            if error.status == 404:
                return None
            raise
        return str(json.loads(reply.data)["metadata"]["resourceVersion"])
