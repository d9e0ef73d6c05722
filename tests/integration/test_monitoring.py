"""The operator's alerts and dashboard (issue #24) hold up against real tools and the real
operator: promtool checks and unit-tests the rules, the PrometheusRule carries the same groups,
every runbook names a section that exists, every metric the alerts and the dashboard use is
exported by the running operator, and every dashboard query returns data from a real Prometheus
scraping it — so a renamed metric cannot silently break an alert or a panel."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from controller.core import loads
from controller.core.acks import Ack, build_lease, lease_name
from controller.core.rfc3339 import rfc3339
from controller.testing.controlplane import free_port
from controller.testing.processes import find_assets
from controller.testing.scrapers import PrometheusServer
from tests.operator_helpers import REPO, quick, service_name, wait_for

MONITORING = REPO / "manifests" / "monitoring"
RULES = MONITORING / "shardring.rules.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
# Grafana's variables, as the dashboard is opened with its defaults.
GRAFANA = {"$__rate_interval": "1m", "$namespace": ".+", "$job": ".+"}
# Series Prometheus makes itself, not the operator.
FROM_PROMETHEUS = {"up"}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(find_assets() / "promtool"), *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def alert_exprs() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard_exprs() -> dict[str, str]:
    exprs = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA.items():
                expr = expr.replace(variable, value)
            exprs[f"{panel['title']} ({target['refId']})"] = expr
    return exprs


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (words before a ``{`` selector)."""
    return set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr))


def test_promtool_checks_and_unit_tests_the_rules():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "shardring.rules.test.yaml",
                      cwd=REPO / "tests" / "monitoring")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_prometheus_rule_carries_the_same_groups_and_every_runbook_exists():
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    plain = yaml.safe_load(RULES.read_text())
    assert rule["kind"] == "PrometheusRule" and rule["spec"] == plain
    headings = re.findall(r"^#{2,4} (.+)$", (REPO / "docs" / "operations.md").read_text(), re.M)
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
    rules = [r for group in plain["groups"] for r in group["rules"]]
    for alert in rules:
        url = alert["annotations"]["runbook_url"]
        assert url.startswith("docs/operations.md#"), url
        assert url.partition("#")[2] in anchors, f"{alert['alert']}: no section {url}"
    named = {r["alert"] for r in rules}  # what issue #24 asks the alerts to cover
    assert {"ShardRingOperatorAbsent", "ShardRingDegraded", "ShardRingSourceUnreachable",
            "ShardRingNotConverged", "ShardRingHandoverTimedOut", "ShardRingPublishLatencyHigh",
            "ShardRingReconcileErrors", "ShardRingLimitExceeded"} <= named


def test_every_dashboard_query_parses(tmp_path):
    """promtool parses each panel's query (as a recording rule: the parser Prometheus uses)."""
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel_{n}", "expr": expr}
        for n, expr in enumerate(dashboard_exprs().values())]}]}
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def query(prometheus: PrometheusServer, expr: str) -> list:
    url = f"{prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as reply:
        answer = json.load(reply)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def report_load(api_client, namespace: str, published, ring: str) -> None:
    """A load report for the first member's shards, in the Lease its ring agent would write
    (built by the agent's own code), so that the ring shows a measured load."""
    now = rfc3339(datetime.datetime.now(datetime.UTC), micro=True)
    member = published.assignment.members[0].id
    report = loads.encode({s: float(s + 1) for s in published.assignment.shards_of(member)})
    ack = Ack(lease_name(f"{ring}-ring", "load-reporter"), ring, member, published.version,
              published.hash, "none", now, report, now)
    k8s.CoordinationV1Api(api_client).create_namespaced_lease(
        namespace, build_lease(namespace, ack, None))


@pytest.mark.controlplane
def test_what_alerts_and_panels_use_is_exported_and_every_panel_has_data(
        operator, rings, consul_helper, core_v1, namespace, tmp_path):
    service = service_name()
    for i in range(2):
        consul_helper.register(service, f"{service}-{i}", port=9300 + i)
    rings.create("watched", quick(service))
    refused = quick(service)
    refused["service"]["filter"] = "Service.Meta.x =="
    rings.create("refused", refused)
    rings.create("stuck", quick(service, consul={"tokenSecretRef": {"name": "absent"}}))
    wait_for(lambda: rings.ring("watched-ring").version >= 1, "the first ring")
    wait_for(lambda: (c := rings.condition("stuck", "Stalled")) and c["status"] == "True",
             "stuck")
    report_load(core_v1.api_client, namespace, rings.ring("watched-ring"), "watched")

    port = operator.config.metrics_port
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "shardring-operator",
                            "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]}))
    prometheus = PrometheusServer(find_assets(), tmp_path / "prometheus", config,
                                  port=free_port())
    prometheus.start()
    try:
        wait_for(prometheus.ready, "Prometheus ready")
        wait_for(lambda: query(prometheus, 'up{job="shardring-operator"} == 1'),
                 "the operator scraped", timeout=30)
        time.sleep(3)  # a few samples before the second change, so rates see it
        consul_helper.register(service, f"{service}-2", port=9302)
        wait_for(lambda: len(rings.ring("watched-ring").assignment.members) == 3, "resharded")

        exposed = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                         timeout=5).read().decode()
        samples = {line.split("{")[0].split(" ")[0] for line in exposed.splitlines()
                   if line and not line.startswith("#")}
        declared = set(re.findall(r"^# TYPE (\S+) ", exposed, re.M))
        used = set().union(*map(metric_names, [*alert_exprs().values(),
                                               *dashboard_exprs().values()]))
        assert used - FROM_PROMETHEUS, "no metric found in the expressions"
        for name in used - FROM_PROMETHEUS:
            family = re.sub(r"_(total|bucket|sum|count)$", "", name)
            # A labelled counter has samples only once counted; its family is declared anyway.
            assert name in samples or family in declared, f"{name} is not exported"

        for title, expr in dashboard_exprs().items():
            wait_for(lambda expr=expr: query(prometheus, expr), f"data for {title}: {expr}",
                     timeout=30, interval=1)
        # The alerts' selectors find the rings they are about (their `for:` aside).
        stalled = query(prometheus, alert_exprs()["ShardRingStalled"])
        assert {(s["metric"]["ring"], s["metric"]["reason"]) for s in stalled
                if s["metric"]["namespace"] == namespace} == {("stuck", "SecretMissing"),
                                                               ("refused", "InvalidFilter")}
        assert not query(prometheus, alert_exprs()["ShardRingOperatorAbsent"])
    finally:
        prometheus.stop()
