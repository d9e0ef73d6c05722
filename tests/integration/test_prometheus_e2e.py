"""Prometheus scrape sharding end to end, with real Prometheus servers: three scrapers in Consul
(an HTTP check on their /-/ready), each with a ring agent, split 60 targets discovered through
consul_sd_configs. Every target is scraped by exactly one server; a killed scraper's targets, and
only those, move to the survivors; when it comes back, each target is again scraped exactly once."""

from __future__ import annotations

import time

import pytest

from controller.testing.scrapers import ScraperFleet, Targets
from tests.operator_helpers import quick, service_name, subprocess_env, wait_for

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]
TARGETS = 60


def split_exactly_once(fleet: ScraperFleet, targets: list[str]) -> dict[str, str] | None:
    found = fleet.scraped_by(targets)
    if found is None or any(len(names) != 1 for names in found.values()):
        return None
    return {target: names[0] for target, names in found.items()}


def test_prometheus_servers_split_the_targets_exactly_once_through_kills_and_returns(
        operator, rings, consul_helper, consul_client, control_plane, namespace, tmp_path,
        report):
    target_service, scraper_service = service_name(), service_name()
    targets = Targets(TARGETS)
    for i, address in enumerate(targets.addresses):
        consul_helper.register(target_service, f"{target_service}-{i}", address="127.0.0.1",
                               port=int(address.rsplit(":", 1)[1]))
    rings.create("scrapers", quick(scraper_service, shards=64))
    fleet = ScraperFleet(control_plane.assets, tmp_path, consul_client,
                         control_plane.consul_addr, scraper_service, target_service,
                         f"{namespace}/scrapers-ring", subprocess_env(control_plane))
    try:
        scrapers = [fleet.add(f"prometheus-{i}") for i in range(3)]
        for scraper in scrapers:
            # The agent renders a configuration before the ring exists (it keeps nothing), so
            # Prometheus can start, become ready, and join the ring.
            wait_for(scraper.prometheus.config.exists, f"{scraper.name}'s configuration")
            scraper.prometheus.start()
        everyone = {s.name for s in scrapers}
        split = wait_for(lambda: (s := split_exactly_once(fleet, targets.addresses)) and
                         set(s.values()) == everyone and s,
                         "every target scraped by exactly one of the three", timeout=60)

        # A scraper dies: its targets, and only those, go to the survivors.
        victim = scrapers[1]
        started = time.monotonic()
        victim.prometheus.kill()
        after = wait_for(lambda: split_exactly_once(fleet, targets.addresses),
                         "the dead server's targets taken over", timeout=60)
        report(f"prometheus e2e: a killed scraper's targets scraped again in "
               f"{time.monotonic() - started:.1f} s (1 s Consul check)")
        moved = {t for t in targets.addresses if after[t] != split[t]}
        assert moved == {t for t, name in split.items() if name == victim.name}
        assert victim.name not in after.values()

        # It comes back (same address): the three split the targets exactly once again.
        victim.prometheus.start()
        wait_for(lambda: (s := split_exactly_once(fleet, targets.addresses)) and
                 victim.name in s.values(), "the returned server scraping again", timeout=60)
        for scraper in scrapers:
            assert scraper.agent is not None
            assert "Traceback" not in scraper.agent.output()
    finally:
        fleet.stop()
        targets.stop()
