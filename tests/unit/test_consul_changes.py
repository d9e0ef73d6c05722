"""Which services a change of Consul's non-passing checks concerns (the hub's listing diff)."""

from __future__ import annotations

from controller.sources.consul.changes import changed, disagrees, unhealthy


def check(node: str, service: str, status: str, check_id: str = "c") -> dict:
    return {"Node": node, "ServiceName": service, "ServiceID": f"{service}-{node}",
            "CheckID": check_id, "Status": status}


def test_a_service_check_that_fails_or_recovers_names_its_service_only():
    healthy = unhealthy([])
    failing = unhealthy([check("n1", "web", "critical")])
    assert changed(healthy, failing) == ({"web"}, set())
    assert changed(failing, healthy) == ({"web"}, set())
    assert changed(failing, unhealthy([check("n1", "web", "critical")])) == (set(), set())


def test_a_status_moving_between_warning_and_critical_is_a_change():
    warning = unhealthy([check("n1", "web", "warning"), check("n2", "api", "critical")])
    critical = unhealthy([check("n1", "web", "critical"), check("n2", "api", "critical")])
    assert changed(warning, critical) == ({"web"}, set())


def test_a_node_check_names_the_node_not_a_service():
    down = unhealthy([{"Node": "n3", "CheckID": "serfHealth", "Status": "critical",
                       "ServiceName": "", "ServiceID": ""}])
    assert changed(unhealthy([]), down) == (set(), {"n3"})


def test_an_instance_read_critical_that_passed_since_disagrees_with_the_listing():
    # Registered critical (a TTL check), read at once, passing a moment later: the listings
    # before and after never showed it, so only the disagreement says to read again.
    listing = unhealthy([check("n2", "api", "critical")])
    assert disagrees(listing, "web", {("n1", "web-n1"): "critical"})
    assert not disagrees(unhealthy([check("n1", "web", "critical")]), "web",
                         {("n1", "web-n1"): "critical"})
    # A node check counts for every instance on the node.
    node_down = unhealthy([{"Node": "n1", "CheckID": "serfHealth", "Status": "critical"}])
    assert not disagrees(node_down, "web", {("n1", "web-n1"): "critical"})
    assert disagrees(node_down, "web", {("n1", "web-n1"): "warning"})
