"""What the real API server says about a bad ShardRing, and what `kubectl explain` shows: the real
problem, in the schema's own words, and nothing else (no CEL evaluation noise)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.unit.test_crd_schema import normalized, spec_schema, stated_facts

pytestmark = pytest.mark.controlplane
# what the API server adds when a validation rule fails to evaluate (rather than to hold)
NOISE = ("type conversion error", "evaluating rule", "no such overload")


def schema_of(field: str) -> dict[str, Any]:
    node = spec_schema()
    for name in field.split("."):
        node = node["properties"][name]
    return node


def says(field: str, problem: str) -> str:
    """What the API server says about ``field`` (a spec field) for ``problem``, from the CRD."""
    node = schema_of(field)
    if problem == "pattern":
        return f"should match '{node['pattern']}'"
    if problem == "minimum":
        return f"should be greater than or equal to {node['minimum']}"
    if problem == "maximum":
        return f"should be less than or equal to {node['maximum']}"
    if problem == "minLength":
        return f"should be at least {node['minLength']} chars long"
    # the message of the field's validation rule that uses ``problem``
    rules = [r for r in node["x-kubernetes-validations"] if problem in r["rule"]]
    assert len(rules) == 1, rules
    return rules[0]["message"]


def refusal(rings, spec: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """Create a ring with ``spec`` (a Consul source added if it names none); the API server's
    message and its causes (field → message) when it refuses."""
    with pytest.raises(k8s.ApiException) as refused:
        source = {} if any(kind in spec for kind in ("etcd", "zookeeper", "kubernetes")) \
            else {"service": {"name": "svc"}}
        rings.create(f"bad-{uuid.uuid4().hex[:6]}", {**source, **spec})
    assert refused.value.status == 422, refused.value.body
    body = json.loads(refused.value.body)
    causes: dict[str, str] = {}
    for cause in body["details"]["causes"]:
        causes[cause["field"]] = f"{causes.get(cause['field'], '')}{cause['message']}"
    return body["message"], causes


def stabilization(window: str = "10s", max_delay: str = "60s", **more: Any) -> dict[str, Any]:
    return {"stabilization": {"window": window, "maxDelay": max_delay, **more}}


# Each: a spec, and per spec field the API server must name, the problem it must state there.
INVALID = [
    ("window", stabilization(window="ten seconds"), {"stabilization.window": "pattern"}),
    ("window-with-space", stabilization(window="10 s", max_delay="1m"),
     {"stabilization.window": "pattern"}),
    ("maxDelay", stabilization(max_delay="a minute"), {"stabilization.maxDelay": "pattern"}),
    ("window-and-maxDelay", stabilization(window="10", max_delay="1 m"),
     {"stabilization.window": "pattern", "stabilization.maxDelay": "pattern"}),
    ("handover-timeout", {"handover": {"timeout": "forever"}}, {"handover.timeout": "pattern"}),
    # beyond what duration() converts (Go's limit, 2562047h): refused by the pattern too
    ("beyond-duration-range", {"handover": {"timeout": "9999999h"},
                               **stabilization("2562048h", "2562048h")},
     {"handover.timeout": "pattern", "stabilization.window": "pattern",
      "stabilization.maxDelay": "pattern"}),
    ("every-duration", {"handover": {"timeout": "1 hour"}, **stabilization("1x", "-5s")},
     {"handover.timeout": "pattern", "stabilization.window": "pattern",
      "stabilization.maxDelay": "pattern"}),
    ("maxDelay-below-window", stabilization(window="1m", max_delay="10s"),
     {"stabilization": "duration("}),
    ("maxDelay-below-window-decimal", stabilization(window="1.5m", max_delay="89.9s"),
     {"stabilization": "duration("}),
    ("bad-window-and-out-of-range",
     {**stabilization(window="soon", minMembers=-1, maxMemberLossPercent=101), "shards": 0},
     {"stabilization.window": "pattern", "stabilization.minMembers": "minimum",
      "stabilization.maxMemberLossPercent": "maximum", "shards": "minimum"}),
    ("shards-above", {"shards": 65537}, {"shards": "maximum"}),
    # Names the API server would refuse only when the ConfigMap is written (HTTP 422).
    ("configMap-double-dot", {"configMap": {"name": "a..b"}}, {"configMap.name": "pattern"}),
    ("configMap-dot-dash", {"configMap": {"name": "a.-b"}}, {"configMap.name": "pattern"}),
    ("zookeeper-addressField-empty", {"zookeeper": {"path": "/svc", "addressField": ""}},
     {"zookeeper.addressField": "minLength"}),
    ("replicationFactor-and-virtualNodes",
     {"replicationFactor": 0, "algorithm": "consistent", "virtualNodes": 10001},
     {"replicationFactor": "minimum", "virtualNodes": "maximum"}),
]


@pytest.mark.parametrize("spec,expected", [(s, e) for _, s, e in INVALID],
                         ids=[name for name, _, _ in INVALID])
def test_an_invalid_spec_is_refused_with_the_real_problem_only(rings, crd, spec, expected):
    message, causes = refusal(rings, spec)
    assert set(causes) == {f"spec.{field}" for field in expected}, message
    for field, problem in expected.items():
        assert says(field, problem) in causes[f"spec.{field}"], message
    for noise in NOISE:
        assert noise not in message, message


SOURCES = {"service": {"name": "svc"}, "etcd": {"prefix": "/svc/"},
           "zookeeper": {"path": "/svc"}, "kubernetes": {"service": "svc"}}
READS = {"service": ("tag", "meta"), "etcd": ("meta", "field"), "zookeeper": ("meta", "field"),
         "kubernetes": ()}


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_a_drain_rule_is_admitted_only_where_the_source_has_it(rings, crd, source):
    # (tag: on an etcd ring was admitted, and never drained anyone; the operator refuses it as
    # InvalidSpec too, for rings stored without this CRD.)
    for kind in ("tag", "meta", "field"):
        spec = {source: SOURCES[source], "members": {"drainFrom": f"{kind}:draining"}}
        name = f"drain-{uuid.uuid4().hex[:6]}"
        if kind in READS[source]:
            assert rings.create(name, spec)["spec"]["members"]["drainFrom"] == f"{kind}:draining"
            continue
        with pytest.raises(k8s.ApiException) as refused:
            rings.create(name, spec)
        body = json.loads(refused.value.body)
        assert refused.value.status == 422, body
        causes = {c["field"]: c["message"] for c in body["details"]["causes"]}
        assert len(body["details"]["causes"]) == 1 and list(causes) == \
            ["spec.members.drainFrom"], body["message"]
        rule = next(r for r in spec_schema()["x-kubernetes-validations"]
                    if "drainFrom" in r["rule"] and
                    (f"'{kind}:'" in r["rule"] if source != "kubernetes" else
                     "startsWith" not in r["rule"]))
        assert normalized(rule["message"]) in normalized(causes["spec.members.drainFrom"])


def test_a_ring_admitted_before_the_drain_rules_still_takes_status_and_other_edits(
        rings, crd, api_client):
    # An upgrade: the rules must not stop the operator writing InvalidSpec into such a ring's
    # status, nor its labels from being edited (the API server ratchets rules over what an
    # update leaves unchanged); an edit of its spec must mend the rule too.
    import copy

    import yaml

    from tests.operator_helpers import CRD, apply_crd, wait_for
    current = yaml.safe_load(CRD.read_text())
    older = copy.deepcopy(current)
    for version in older["spec"]["versions"]:
        spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
        spec["x-kubernetes-validations"] = [r for r in spec["x-kubernetes-validations"]
                                            if "drainFrom" not in r["rule"]]
    name = f"old-{uuid.uuid4().hex[:6]}"
    spec = {"etcd": {"prefix": "/svc/"}, "members": {"drainFrom": "tag:x"}}

    def created(ring: str) -> bool:
        try:
            return bool(rings.create(ring, spec))
        except k8s.ApiException as error:
            if error.status != 422:
                raise
            return False
    apply_crd(api_client, older)
    try:  # (a replaced schema takes effect a moment later)
        wait_for(lambda: created(name), "a ring admitted by the older CRD", timeout=20)
    finally:
        apply_crd(api_client, current)
    wait_for(lambda: not created(f"new-{uuid.uuid4().hex[:6]}"),
             "the rules holding for new rings again", timeout=20)
    rings.custom.patch_namespaced_custom_object_status(
        "shardring.io", "v1alpha1", rings.namespace, "shardrings", name,
        {"status": {"observedGeneration": 1}})
    def patch(body: dict) -> dict:
        return rings.custom.patch_namespaced_custom_object(
            "shardring.io", "v1alpha1", rings.namespace, "shardrings", name, body)
    assert patch({"metadata": {"labels": {"team": "a"}}})["status"]["observedGeneration"] == 1
    with pytest.raises(k8s.ApiException) as refused:
        patch({"spec": {"shards": 32}})
    assert refused.value.status == 422 and "reads a Consul tag" in refused.value.body
    mended = patch({"spec": {"shards": 32, "members": {"drainFrom": "field:x"}}})
    assert mended["spec"]["shards"] == 32


@pytest.mark.parametrize("window,max_delay", [("10s", "10s"), ("1500ms", "1.5s"), ("0s", "0s"),
                                              ("1m30s", "90.5s"), ("1h", "1h0m0.001s"),
                                              # the longest and largest the pattern admits
                                              ("99999h99999h99999h99999h99999h9h",) * 2])
def test_valid_durations_with_max_delay_at_least_window_are_accepted(rings, crd, window,
                                                                      max_delay):
    created = rings.create(f"ok-{uuid.uuid4().hex[:6]}",
                           {"service": {"name": "svc"}, **stabilization(window, max_delay)})
    assert (created["spec"]["stabilization"]["window"],
            created["spec"]["stabilization"]["maxDelay"]) == (window, max_delay)


def test_kubectl_explain_shows_defaults_and_bounds(control_plane, crd, tmp_path):
    """The real kubectl, reading the schema the API server publishes."""
    node = schema_of("stabilization")
    facts = {name: stated_facts(child) for name, child in node["properties"].items()}
    assert all(facts.values()), facts
    command = [str(control_plane.assets / "kubectl"), "--kubeconfig", str(control_plane.kubeconfig),
               "explain", "shardring.spec.stabilization"]
    deadline = time.monotonic() + 30
    while True:
        # a fresh discovery cache each time: the API server publishes a CRD's schema a moment
        # after the CRD is established
        result = subprocess.run([*command, "--cache-dir", str(tmp_path / uuid.uuid4().hex)],
                                capture_output=True, text=True, timeout=30)
        output = normalized(result.stdout)
        if result.returncode == 0 and all(f in output for f in facts.values()) or \
                time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.returncode == 0, result.stderr
    for name, stated in facts.items():
        assert f"{name} <" in output, output
        assert stated in output, f"{name}: {stated!r} not in {output!r}"
