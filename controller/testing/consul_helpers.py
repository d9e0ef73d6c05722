"""Register demo/test service instances in a real Consul agent, with TTL checks we flip by hand."""

from __future__ import annotations

import consul


class ConsulHelper:
    def __init__(self, client: consul.Consul):
        self.client = client
        self.registered: list[str] = []

    def register(self, service: str, instance_id: str, address: str = "127.0.0.1", port: int = 0,
                 tags: list[str] | None = None, meta: dict[str, str] | None = None,
                 passing: bool = True, weight: int | None = None) -> str:
        """Register an instance with a TTL check; it starts passing (or critical)."""
        check = consul.Check.ttl("1h")
        weights = {"passing": weight, "warning": 1} if weight is not None else None
        self.client.agent.service.register(
            service, service_id=instance_id, address=address, port=port, tags=tags or [],
            meta=meta or {}, check=check, weights=weights)
        self.registered.append(instance_id)  # list.append is atomic: safe from threads
        self.set_health(instance_id, passing)
        return instance_id

    def set_health(self, instance_id: str, passing: bool) -> None:
        check_id = f"service:{instance_id}"
        if passing:
            self.client.agent.check.ttl_pass(check_id)
        else:
            self.client.agent.check.ttl_fail(check_id)

    def deregister(self, instance_id: str) -> None:
        self.client.agent.service.deregister(instance_id)
        if instance_id in self.registered:
            self.registered.remove(instance_id)

    def cleanup(self) -> None:
        for instance_id in list(self.registered):
            try:
                self.deregister(instance_id)
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
