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


class CatalogFleet:
    """Many instances on external nodes, written through the catalog in transactions.

    The agent registers one service per HTTP call (~35 ms each on this machine); a fleet of
    10 000 is written here in 64-operation transactions. Instances live on nodes the agent does not
    own, so anti-entropy leaves them alone, and their health is a catalog check we set directly.
    """

    BATCH = 64  # Consul's limit on operations per transaction

    def __init__(self, client: consul.Consul):
        self.client = client
        self.where: dict[str, tuple[str, str]] = {}  # instance id -> (node, service)

    def register(self, instances: list[tuple[str, str, str, str, int]]) -> list[str]:
        """Register (node, service, instance id, address, port) tuples, all passing."""
        nodes = {node: {"Node": {"Verb": "set", "Node": {"Node": node, "Address": "127.0.0.1"}}}
                 for node, *_ in instances}
        operations = list(nodes.values())
        for node, service, instance_id, address, port in instances:
            self.where[instance_id] = (node, service)
            operations.append({"Service": {"Verb": "set", "Node": node, "Service": {
                "ID": instance_id, "Service": service, "Address": address, "Port": port}}})
            operations.append(self._check(instance_id, passing=True))
        self._apply(operations)
        return [instance_id for _, _, instance_id, _, _ in instances]

    def set_health(self, changes: dict[str, bool]) -> None:
        """Set several instances passing (True) or critical (False) at once."""
        self._apply([self._check(i, passing) for i, passing in changes.items()])

    def _check(self, instance_id: str, passing: bool) -> dict:
        node, service = self.where[instance_id]
        return {"Check": {"Verb": "set", "Check": {
            "Node": node, "CheckID": f"health:{instance_id}", "Name": "health",
            "Status": "passing" if passing else "critical", "ServiceID": instance_id,
            "ServiceName": service}}}

    def _apply(self, operations: list[dict]) -> None:
        for start in range(0, len(operations), self.BATCH):
            self.client.txn.put(operations[start:start + self.BATCH])
