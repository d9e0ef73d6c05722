"""The ring agent without a cluster: kubelet's file layout, the Prometheus configuration, the
acknowledgement Lease and convergence (pure), and the agent's loop with fakes of its own parts
(files swapped, a reload run once per change and retried, acknowledgements written)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from controller.agent import promconfig
from controller.agent.feed import Seen, Unreachable
from controller.agent.files import AtomicDir
from controller.agent.loadreport import Measurement
from controller.agent.reload import Command, ReloadFailed
from controller.agent.run import LEASE_CHECK_EVERY, Agent, AgentConfig, PrometheusOutput
from controller.client import MountedRing
from controller.core import ringfile
from controller.core.acks import Ack, ack_from_lease, build_lease, convergence, lease_name
from controller.core.render import configmap_data
from controller.core.ring import Member, RingSpec, plan

BASE = """\
global: {scrape_interval: 15s}
scrape_configs:
  - job_name: nodes
    consul_sd_configs: [{server: 'localhost:8500', services: [node]}]
  - job_name: self
    static_configs: [{targets: ['localhost:9090']}]
"""


def ring_of(ids, version=1, shards=16, draining=()):
    assignment = plan([Member(i) for i in ids], RingSpec(shards=shards))
    return ringfile.RingFile(assignment=assignment, version=version,
                             shard_ring={"namespace": "ns", "name": "r"}, draining=tuple(draining))


def configmap(ring, relabel=False):
    return {"metadata": {"name": "r", "labels": {"shardring.io/ring": "r"},
                         "ownerReferences": [{"apiVersion": "shardring.io/v1alpha1",
                                              "kind": "ShardRing", "name": "r", "uid": "u1",
                                              "controller": True}]},
            "data": configmap_data(ring, relabel)}


# ---- files ---------------------------------------------------------------------------------------

def test_files_swap_in_kubelets_layout_and_mounted_ring_follows(tmp_path):
    directory = AtomicDir(tmp_path / "ring")
    first = configmap_data(ring_of(["a", "b"]), False)
    assert directory.write(first) is True
    assert os.readlink(tmp_path / "ring" / "..data").startswith("..20")
    assert os.readlink(tmp_path / "ring" / "ring.json") == "..data/ring.json"
    mounted = MountedRing(tmp_path / "ring", me="a")
    assert mounted.ring.version == 1
    assert directory.write(first) is False  # the same files: nothing touched
    second = configmap_data(ring_of(["a", "c"], version=2), False)
    assert directory.write(second) is True
    assert mounted.refresh() is True and mounted.ring.version == 2
    assert not (tmp_path / "ring" / "member.b").exists()  # a key that went is gone
    assert (tmp_path / "ring" / "member.c").read_text() == second["member.c"]
    versions = [p for p in (tmp_path / "ring").iterdir() if p.name.startswith("..20")]
    assert len(versions) == 1  # the old version's directory is removed
    assert directory.read() == second


def test_file_names_that_would_escape_the_directory_are_refused(tmp_path):
    with pytest.raises(ValueError):
        AtomicDir(tmp_path).write({"../x": "1"})


# ---- the Prometheus configuration ----------------------------------------------------------------

def test_the_rules_go_into_the_named_jobs_only():
    rendered = yaml.safe_load(promconfig.render(BASE, [1, 5], 16, ["nodes"]))
    nodes, own = rendered["scrape_configs"]
    assert nodes["relabel_configs"][0]["modulus"] == 16
    assert nodes["relabel_configs"][1] == {"source_labels": ["__tmp_shardring_shard"],
                                           "action": "keep", "regex": "1|5"}
    assert "relabel_configs" not in own
    assert rendered["global"] == {"scrape_interval": "15s"}
    every = yaml.safe_load(promconfig.render(BASE, [], 16))["scrape_configs"]
    assert all(job["relabel_configs"][1]["regex"] == "" for job in every)  # keeps nothing
    assert promconfig.render(BASE, [1, 5], 16, ["nodes"]) == \
        promconfig.render(BASE, [1, 5], 16, ["nodes"])


def test_existing_rules_are_kept_before_the_members():
    base = yaml.safe_load(BASE)
    base["scrape_configs"][0]["relabel_configs"] = [{"action": "labeldrop", "regex": "x"}]
    rendered = yaml.safe_load(promconfig.render(yaml.safe_dump(base), [0], 4, ["nodes"]))
    rules = rendered["scrape_configs"][0]["relabel_configs"]
    assert rules[0] == {"action": "labeldrop", "regex": "x"} and len(rules) == 3


@pytest.mark.parametrize("base, jobs, says", [
    ("scrape_configs: [", (), "not YAML"),
    ("global: {}", (), "no scrape_configs"),
    (BASE, ("missing",), "no scrape job named missing"),
])
def test_a_base_that_cannot_take_the_rules_is_an_error(base, jobs, says):
    with pytest.raises(promconfig.PrometheusConfigError, match=says):
        promconfig.render(base, [0], 4, jobs)


# ---- acknowledgements and convergence ------------------------------------------------------------

def ack(member, ring, reload="ok", lease=None):
    return Ack(lease=lease or f"r.{member}", ring="r", member=member, version=ring.version,
               ring_hash=ring.hash, reload=reload, applied_at="2026-11-29T10:00:00.000001Z")


def test_a_lease_round_trips_and_foreign_leases_are_not_acks():
    ring = ring_of(["a", "b"])
    sent = ack("a", ring)
    body = build_lease("ns", sent, {"kind": "ShardRing", "name": "r", "uid": "u1",
                                    "controller": True}, "7")
    assert body["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] is False
    assert body["spec"]["holderIdentity"] == "a"
    assert ack_from_lease(body) == sent
    assert ack_from_lease({"metadata": {"name": "kube-scheduler", "labels": {}}}) is None
    broken = {**body, "metadata": {**body["metadata"], "annotations": {}}}
    assert ack_from_lease(broken) is None
    assert lease_name("ring-cm", "prometheus-0") == "ring-cm.prometheus-0"
    with pytest.raises(ValueError):
        lease_name("ring-cm", "Not_A_Pod")


def test_convergence_counts_members_that_applied_this_version_and_reloaded():
    ring = ring_of(["a", "b", "c"], version=4)
    older = ring_of(["a", "b", "c"], version=3)
    found = convergence(ring, [ack("a", ring), ack("b", older), ack("c", ring, reload="failed"),
                               ack("stranger", ring)], "2026-11-29T10:00:00Z")
    assert found.status == {"ringVersion": 4, "members": 3, "applied": 1,
                            "since": "2026-11-29T10:00:00Z", "lagging": ["b", "c"],
                            "laggingCount": 2, "reloadFailed": ["c"]}
    assert (found.condition.status, found.condition.reason) == (False, "Lagging")
    assert "1 of 3 members applied ring version 4" in found.condition.message
    done = convergence(ring, [ack(m, ring) for m in "abc"], "t")
    assert (done.condition.status, done.condition.reason) == (True, "Applied")
    assert "lagging" not in done.status
    nobody = convergence(ring, [], "t")  # no agent at all: not known
    assert (nobody.condition.status, nobody.condition.reason) == (None, "NoAgents")
    stale = convergence(ring, [ack("a", older)], "t")
    assert (stale.condition.status, stale.condition.reason) == (False, "NotAcknowledged")
    # Reloaded but not seen to follow the new files: not applied, and not a failed reload.
    unsure = convergence(ring, [ack("a", ring, reload="unverified")], "t")
    assert unsure.status["applied"] == 0 and "reloadFailed" not in unsure.status
    # Two agents claim one member: it counts only when neither failed.
    twice = convergence(ring, [ack("a", ring, lease="r.a1"),
                               ack("a", ring, reload="failed", lease="r.a2")], "t")
    assert twice.status["applied"] == 0


def test_a_draining_member_is_drained_once_every_owner_applied_the_version():
    ring = ring_of(["a", "b"], version=5, draining=["c"])
    partly = convergence(ring, [ack("a", ring)], "t")
    assert partly.drained == ()
    done = convergence(ring, [ack("a", ring), ack("b", ring)], "t")
    assert done.drained == ("c",)
    assert done.status["lagging"] == ["c"]  # the drainer itself need not apply it to stop


# ---- the agent's loop, with fakes of its parts ---------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Leases:
    def __init__(self):
        self.written: list[Ack] = []
        self.owners: list = []
        self.fail = 0
        self.present, self.reads = False, 0

    def write(self, sent, owner):
        if self.fail:
            self.fail -= 1
            raise RuntimeError("API server unreachable")
        self.written.append(sent)
        self.owners.append(owner)
        self.present = True

    def intact(self, name):
        self.reads += 1
        return self.present


class Reloads:
    def __init__(self):
        self.calls = 0
        self.fail = 0

    def __call__(self):
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise ReloadFailed("connection refused")
        return "fake answered"

    def describe(self):
        return "fake"


def agent_for(tmp_path, member="a", prometheus=True, reload=None, leases=None, clock=None):
    base = tmp_path / "base.yml"
    base.write_text(BASE)
    output = PrometheusOutput(base, tmp_path / "prometheus.yml", ("nodes",)) if prometheus \
        else None
    config = AgentConfig(namespace="ns", configmap="r", directory=tmp_path / "ring",
                         member=member, lease="r.pod-0", prometheus=output, reload=reload)
    # Load measurements run in place: each step is deterministic (one test runs them off the loop).
    return Agent(config, leases=leases, clock=clock or Clock(), off_loop=lambda job: job())


def feed(agent, *updates):
    for update in updates:
        agent.deliver(update)
        agent.step(0)


def test_each_version_is_swapped_in_rendered_reloaded_once_and_acknowledged(tmp_path):
    reloads, leases = Reloads(), Leases()
    agent = agent_for(tmp_path, reload=reloads, leases=leases)
    first = ring_of(["a", "b"])
    feed(agent, Seen(configmap(first)))
    assert MountedRing(tmp_path / "ring", me="a").ring.version == 1
    rendered = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    keep = rendered["scrape_configs"][0]["relabel_configs"][1]["regex"]
    assert keep == "|".join(map(str, first.assignment.shards_of("a")))
    assert reloads.calls == 1
    assert [(a.version, a.member, a.reload) for a in leases.written] == [(1, "a", "ok")]
    assert leases.owners[0]["uid"] == "u1"
    feed(agent, Seen(configmap(first)))  # the same ConfigMap again: nothing repeats
    assert reloads.calls == 1 and len(leases.written) == 1
    second = ring_of(["a", "b", "c"], version=2)
    feed(agent, Seen(configmap(second)))
    assert reloads.calls == 2
    assert [a.version for a in leases.written] == [1, 2]


def test_a_version_that_keeps_this_members_shards_is_acknowledged_without_a_reload(tmp_path):
    reloads, leases = Reloads(), Leases()
    agent = agent_for(tmp_path, reload=reloads, leases=leases)
    first = ring_of(["a", "b"])
    feed(agent, Seen(configmap(first)))
    same_shards = ringfile.RingFile(assignment=first.assignment, version=2,
                                    shard_ring=first.shard_ring)
    feed(agent, Seen(configmap(same_shards)))
    assert reloads.calls == 1
    assert [a.version for a in leases.written] == [1, 2]


def test_a_failing_reload_is_retried_with_backoff_and_reported(tmp_path):
    reloads, leases, clock = Reloads(), Leases(), Clock()
    reloads.fail = 2
    agent = agent_for(tmp_path, reload=reloads, leases=leases, clock=clock)
    feed(agent, Seen(configmap(ring_of(["a", "b"]))))
    assert reloads.calls == 1 and leases.written[-1].reload == "failed"
    agent.step(0)
    assert reloads.calls == 1  # not before its backoff
    clock.now += 1.0
    agent.step(0)
    assert reloads.calls == 2  # failed again: the next wait is longer
    clock.now += 1.5
    agent.step(0)
    assert reloads.calls == 2
    clock.now += 0.5
    agent.step(0)
    assert reloads.calls == 3 and leases.written[-1].reload == "ok"
    clock.now += 100
    agent.step(0)
    assert reloads.calls == 3  # done: no more reloads


def test_an_acknowledgement_that_fails_is_written_later(tmp_path):
    leases, clock = Leases(), Clock()
    leases.fail = 1
    agent = agent_for(tmp_path, leases=leases, clock=clock, prometheus=False)
    feed(agent, Seen(configmap(ring_of(["a", "b"]))))
    assert leases.written == []
    clock.now += 1.0
    agent.step(0)
    assert [a.version for a in leases.written] == [1]


def test_a_deleted_acknowledgement_lease_is_written_again_within_a_check(tmp_path):
    leases, clock = Leases(), Clock()
    agent = agent_for(tmp_path, leases=leases, clock=clock, prometheus=False)
    feed(agent, Seen(configmap(ring_of(["a", "b"]))))
    assert [a.version for a in leases.written] == [1] and leases.reads == 0
    assert agent._next_due() == LEASE_CHECK_EVERY
    clock.now += LEASE_CHECK_EVERY
    agent.step(0)
    assert leases.reads == 1 and len(leases.written) == 1  # still there: a read, no write
    leases.present = False  # deleted by hand
    clock.now += LEASE_CHECK_EVERY - 1
    agent.step(0)
    assert leases.reads == 1  # not before its time
    clock.now += 1
    agent.step(0)
    assert leases.reads == 2 and [a.version for a in leases.written] == [1, 1]
    # An acknowledgement in backoff when the read-back falls due: it waits for the write (the
    # loop neither reads meanwhile nor spins on a due time it will not act on).
    leases.fail = 5
    feed(agent, Seen(configmap(ring_of(["a", "b", "c"], version=2))))
    clock.now += LEASE_CHECK_EVERY + 1  # past the read-back's time
    agent.step(0)  # the acknowledgement's retry: fails again, backs off
    assert agent.ack_pending and agent._next_due() > 0 and leases.reads == 2


def test_a_bad_ring_json_is_not_applied_and_the_last_files_stay(tmp_path):
    agent = agent_for(tmp_path, prometheus=False)
    good = ring_of(["a", "b"])
    feed(agent, Seen(configmap(good)))
    broken = configmap(good)
    broken["data"] = {**broken["data"], "ring.json": "{not json"}
    feed(agent, Seen(broken), Seen(None))
    assert MountedRing(tmp_path / "ring", me="a").ring.version == 1


def test_not_a_member_keeps_nothing_and_acknowledges_as_nobody(tmp_path):
    leases = Leases()
    agent = agent_for(tmp_path, member="z", leases=leases)
    feed(agent, Seen(configmap(ring_of(["a", "b"]))))
    rendered = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    assert rendered["scrape_configs"][0]["relabel_configs"][1]["regex"] == ""
    assert leases.written[0].member == ""


def test_started_offline_it_serves_the_files_it_wrote_and_says_so(tmp_path, caplog):
    reloads = Reloads()
    first = agent_for(tmp_path, reload=reloads)
    feed(first, Seen(configmap(ring_of(["a", "b"], version=7))))
    (tmp_path / "prometheus.yml").unlink()  # e.g. an emptyDir of a restarted pod
    again = agent_for(tmp_path, reload=reloads)
    again.start()
    assert (tmp_path / "prometheus.yml").exists()
    feed(again, Unreachable("connection refused"))
    assert "serving ring version 7" in caplog.text


def test_a_command_reload_reports_its_exit_and_output(tmp_path):
    assert Command(("true",))() == "true exited 0"
    with pytest.raises(ReloadFailed, match="exited 3: nope"):
        Command(("sh", "-c", "echo nope >&2; exit 3"))()


def test_with_no_ring_yet_the_workload_gets_a_configuration_that_keeps_nothing(tmp_path):
    agent = agent_for(tmp_path)
    agent.start()
    rendered = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    nodes, own = rendered["scrape_configs"]
    assert nodes["relabel_configs"][1]["regex"] == "" and "relabel_configs" not in own


@pytest.mark.parametrize("base, says", [
    (None, "No such file"), ("scrape_configs: [\n  - {", "not YAML"),
    ("scrape_configs: [{job_name: other}]", "no scrape job named nodes")])
def test_a_base_that_cannot_be_used_at_start_is_one_error_and_the_agent_goes_on(
        tmp_path, caplog, base, says):
    # (It raised out of start(): a traceback and an abort, a sidecar crash-looping.)
    agent = agent_for(tmp_path)
    path = tmp_path / "base.yml"
    path.unlink() if base is None else path.write_text(base)
    agent.start()
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and says in errors[0].getMessage() and errors[0].exc_info is None
    path.write_text(BASE)  # fixed: the next version renders
    feed(agent, Seen(configmap(ring_of(["a", "b"]))))
    assert (tmp_path / "prometheus.yml").exists()


def test_a_version_the_base_refused_is_tried_again_with_backoff_until_the_base_is_fixed(
        tmp_path, caplog):
    # (It waited for the next ring version or a restart: the ring stayed Stalled, NotConverged.)
    caplog.set_level("INFO", logger="shardring.agent")
    reloads, leases, clock = Reloads(), Leases(), Clock()
    agent = agent_for(tmp_path, reload=reloads, leases=leases, clock=clock)
    first = ring_of(["a", "b"])
    feed(agent, Seen(configmap(first)))
    base = tmp_path / "base.yml"
    base.write_text("scrape_configs: [{job_name: other}]")  # an edit gone wrong
    second = ring_of(["a", "b", "c"], version=2)
    feed(agent, Seen(configmap(second)))
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "ring version 2 not applied" in errors[0] and \
        "trying again in 1 s" in errors[0]
    for _ in range(3):  # still broken: quiet, each wait twice the last
        clock.now += 60
        agent.step(0)
    assert agent.applying.failures == 4 and agent.applying.due == clock.now + 8
    assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 1
    assert [a.version for a in leases.written] == [1]
    base.write_text(BASE)  # fixed: no new version needed
    clock.now += 7
    agent.step(0)
    assert [a.version for a in leases.written] == [1]  # (not due yet)
    clock.now += 1
    agent.step(0)
    assert [a.version for a in leases.written] == [1, 2] and reloads.calls == 2
    rendered = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    keep = rendered["scrape_configs"][0]["relabel_configs"][1]["regex"]
    assert keep == "|".join(map(str, second.assignment.shards_of("a")))
    assert "ring version 2 applied after 4 failed attempt(s)" in caplog.text
    assert agent.unapplied is None and agent.applying.due is None
    clock.now += 60
    agent.step(0)
    assert reloads.calls == 2  # nothing left to try
    # Another version failing later starts from the first wait again, and is said again; one
    # whose ConfigMap is deleted meanwhile is never tried again.
    base.write_text("scrape_configs: [{job_name: other}]")
    for version in (3, 4):
        feed(agent, Seen(configmap(ring_of(["a", "b"], version=version))))
        assert agent.applying.failures == 1 and agent.applying.due == clock.now + 1
        clock.now += 1
        agent.step(0)
    assert sum("not applied" in r.getMessage() for r in caplog.records) == 3
    feed(agent, Seen(None))
    assert agent.unapplied is None and agent.applying.due is None


def test_a_hand_edited_assignment_or_another_rings_file_is_not_applied(tmp_path, caplog):
    # (Both were applied: the first split the work as nobody published it, the second as another
    # ring's members do.)
    leases = Leases()
    agent = agent_for(tmp_path, leases=leases)
    feed(agent, Seen(configmap(ring_of(["a", "b"]))))
    second = ring_of(["a", "b", "c"], version=2)
    edited = configmap(second)
    document = json.loads(edited["data"]["ring.json"])
    document["assignment"] = [[1]] * 16  # everything to b, under the published ringHash
    edited["data"] = {**edited["data"], "ring.json": ringfile.canonical_json(document)}
    elsewhere = replace(second, shard_ring={"namespace": "ns", "name": "other"})
    feed(agent, Seen(edited), Seen({**configmap(second),
                                    "data": configmap_data(elsewhere, False)}))
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 2 and all("keeping ring version 1" in e for e in errors)
    assert "ringHash is not its assignment's" in errors[0]
    assert "it is ShardRing ns/other's, not ns/r's, which owns this ConfigMap" in errors[1]
    assert MountedRing(tmp_path / "ring", me="a").ring.version == 1
    assert [a.version for a in leases.written] == [1]
    feed(agent, Seen(configmap(second)))  # what the operator published
    assert [a.version for a in leases.written] == [1, 2]
    # An algorithm of a later version (readers need not know it): nothing to tell by, applied.
    later = configmap(ring_of(["a", "b"], version=3))
    document = json.loads(later["data"]["ring.json"])
    later["data"] = {**later["data"], "ring.json": ringfile.canonical_json(
        {**document, "algorithm": "maglev"})}
    feed(agent, Seen(later))
    assert [a.version for a in leases.written] == [1, 2, 3]


def targets_reply(active, dropped, job="nodes"):
    def entry(address):
        return {"discoveredLabels": {"__address__": address, "job": job}, "scrapePool": job}
    return {"status": "success", "data": {"activeTargets": [entry(a) for a in active],
                                          "droppedTargets": [entry(a) for a in dropped]}}


def split_addresses(shards, modulus=16, count=40):
    from controller.core.ring import shard_of
    addresses = [f"10.0.0.{i}:9100" for i in range(count)]
    mine = [a for a in addresses if shard_of(a, modulus) in shards]
    return mine, [a for a in addresses if a not in mine]


def test_prometheus_has_applied_the_rules_when_its_targets_follow_them():
    mine, others = split_addresses({1, 2, 3, 4, 5})
    assert mine and others
    assert promconfig.applied(targets_reply(mine, others), [1, 2, 3, 4, 5], 16, ["nodes"])
    # The old rules still in effect: one of its new targets is still dropped, or an old one
    # still active.
    assert not promconfig.applied(targets_reply(mine[1:], others + mine[:1]), [1, 2, 3, 4, 5],
                                  16, ["nodes"])
    assert not promconfig.applied(targets_reply(mine + others[:1], others[1:]), [1, 2, 3, 4, 5],
                                  16, ["nodes"])
    # A scrape pool being rebuilt lists nothing: not applied, if it knew targets before.
    empty = targets_reply([], [])
    assert not promconfig.applied(empty, [1, 2], 16, ["nodes"], expect_targets=True)
    assert promconfig.applied(empty, [1, 2], 16, ["nodes"])
    assert promconfig.discovered(targets_reply(mine, others), ["nodes"]) == 40
    # Jobs that are not split do not count.
    assert promconfig.applied(targets_reply(others, mine, job="self"), [1, 2, 3, 4, 5], 16,
                              ["nodes"])


def test_the_acknowledgement_waits_until_prometheus_scrapes_by_the_new_rules(tmp_path):
    reloads, leases, clock = Reloads(), Leases(), Clock()
    base = tmp_path / "base.yml"
    base.write_text(BASE)
    config = AgentConfig(namespace="ns", configmap="r", directory=tmp_path / "ring", member="a",
                         lease="r.pod-0", reload=reloads,
                         prometheus=PrometheusOutput(base, tmp_path / "prometheus.yml",
                                                     ("nodes",), api="http://prometheus"))
    ring = ring_of(["a", "b"])
    shards = set(ring.assignment.shards_of("a"))
    mine, others = split_addresses(shards)
    replies = [None, targets_reply([], mine + others), targets_reply(mine, others)]
    seen_at_ack = []

    def targets(api):
        assert api == "http://prometheus"
        return replies.pop(0) if len(replies) > 1 else replies[0]

    def sleep(seconds):
        clock.now += seconds

    def write(sent, owner):
        seen_at_ack.append(len(replies))
        leases.written.append(sent)

    leases.write = write
    agent = Agent(config, leases=leases, clock=clock, sleep=sleep, targets=targets)
    feed(agent, Seen(configmap(ring)))
    assert seen_at_ack == [1] and leases.written[0].reload == "ok"  # after the third reply
    # Targets that never follow (the base's own rules drop them): acknowledged after the wait.
    replies[:] = [targets_reply([], mine + others)]
    started = clock.now
    feed(agent, Seen(configmap(ring_of(["a", "c"], version=2))))
    assert len(leases.written) == 2 and clock.now - started >= 15


def test_a_signal_reload_reaches_the_process_in_the_pid_file(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from controller.agent.reload import Signal
    got = tmp_path / "got"
    child = subprocess.Popen([sys.executable, "-c", (
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGHUP, lambda *_: open({str(got)!r}, 'w').write('hup'))\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        pid_file = tmp_path / "pid"
        pid_file.write_text(f"{child.pid}\n")
        assert Signal(signal.SIGHUP, pid_file)() == f"SIGHUP sent to pid {child.pid} " \
                                                    f"(from {pid_file})"
        deadline = time.monotonic() + 5
        while not got.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got.read_text() == "hup"
        with pytest.raises(ReloadFailed, match="SIGHUP"):
            Signal(signal.SIGHUP, tmp_path / "missing")()
    finally:
        child.kill()
        child.wait()


def test_an_older_version_arriving_late_is_never_applied_unless_the_ring_is_new(tmp_path):
    leases = Leases()
    agent = agent_for(tmp_path, prometheus=False, leases=leases)
    newer, older = ring_of(["a", "b", "c"], version=6), ring_of(["a", "b"], version=5)
    feed(agent, Seen(configmap(newer)), )
    feed(agent, Seen(configmap(older)))
    assert MountedRing(tmp_path / "ring", me="a").ring.version == 6
    assert [a.version for a in leases.written] == [6]
    recreated = configmap(ring_of(["a"], version=1))
    recreated["metadata"]["ownerReferences"][0]["uid"] = "u2"  # deleted and created again
    feed(agent, Seen(recreated))
    assert MountedRing(tmp_path / "ring", me="a").ring.version == 1


def test_a_base_configuration_error_never_quotes_it():
    with pytest.raises(promconfig.PrometheusConfigError) as refused:
        promconfig.render("scrape_configs:\n  - basic_auth: {password: s3cr3t\n", [0], 4)
    assert "s3cr3t" not in str(refused.value) and "line" in str(refused.value)


# ---- run by hand: its defaults, its log ----------------------------------------------------------

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: not-a-secret}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: team-a}},
           {name: y, context: {cluster: c, user: u}}]
current-context: x
"""


@pytest.fixture
def by_hand(tmp_path, monkeypatch):
    """A shell's environment: no HOSTNAME, no POD_NAMESPACE, no service account; a kubeconfig
    whose current context names namespace team-a."""
    from controller.agent import command
    for name in ("HOSTNAME", "POD_NAMESPACE", "POD_IP", "SHARDRING_MEMBER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(command, "SERVICE_ACCOUNT_NAMESPACE", tmp_path / "no-service-account")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    return kubeconfig


def agent_config(tmp_path, *args):
    from controller.agent.command import config_from
    from controller.cli import build_parser
    return config_from(build_parser().parse_args(
        ["agent", "--configmap", "r", "--dir", str(tmp_path / "ring"), *args]))


def test_run_by_hand_it_is_named_after_the_host(tmp_path, monkeypatch, by_hand):
    monkeypatch.setattr("socket.gethostname", lambda: "Dev-Laptop.local")
    assert agent_config(tmp_path).lease == "r.dev-laptop.local"
    monkeypatch.setenv("HOSTNAME", "prometheus-3")  # in a pod: the pod's name
    assert agent_config(tmp_path).lease == "r.prometheus-3"
    assert agent_config(tmp_path, "--identity", "me").lease == "r.me"


def test_run_by_hand_it_finds_the_namespace_where_kubectl_would(tmp_path, monkeypatch, by_hand):
    assert agent_config(tmp_path).namespace == "team-a"  # the kubeconfig's current context
    assert agent_config(tmp_path, "--configmap", "other/r").namespace == "other"
    by_hand.write_text(KUBECONFIG.replace("current-context: x", "current-context: y"))
    assert agent_config(tmp_path).namespace == "default"  # a context without a namespace
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert agent_config(tmp_path).namespace == "default"
    monkeypatch.setenv("KUBECONFIG", str(by_hand))
    from controller.agent import command
    command.SERVICE_ACCOUNT_NAMESPACE.write_text("pods-own\n")  # in a pod
    assert agent_config(tmp_path).namespace == "pods-own"
    monkeypatch.setenv("POD_NAMESPACE", "downward")
    assert agent_config(tmp_path).namespace == "downward"


def test_run_by_hand_only_the_configmap_is_needed(monkeypatch, by_hand):
    from controller.agent.command import config_from
    from controller.cli import build_parser
    monkeypatch.setattr("socket.gethostname", lambda: "laptop")
    config = config_from(build_parser().parse_args(["agent", "--configmap", "scrapers-ring"]))
    assert (config.namespace, config.configmap, config.lease) == \
        ("team-a", "scrapers-ring", "scrapers-ring.laptop")
    assert config.directory == Path("scrapers-ring")  # beside the user, named after the ring


class Stop:
    """The feed's stop event: records each wait, and is set after ``waits`` of them."""

    def __init__(self, waits):
        self.waits, self.left = [], waits

    def is_set(self):
        return self.left <= 0

    def wait(self, seconds):
        self.waits.append(seconds)
        self.left -= 1


class DownCore:
    def list_namespaced_config_map(self, *args, **kwargs):
        raise ConnectionRefusedError(111, "Connection refused")


def test_with_the_api_down_the_feed_backs_off_with_jitter_up_to_30_seconds():
    from controller.agent.feed import ConfigMapFeed
    seen, jitter = [], iter([0.0, 0.5] * 10)
    stop = Stop(waits=12)
    ConfigMapFeed(DownCore(), "ns", "r", seen.append, jitter=lambda: next(jitter)).run(stop)
    assert stop.waits[:6] == [0.5, 0.75, 2.0, 3.0, 8.0, 12.0]  # doubling, less the jitter
    assert stop.waits[-2:] == [30.0, 22.5] and max(stop.waits) == 30.0
    assert len(seen) == 12 and all(isinstance(u, Unreachable) for u in seen)


def test_with_the_api_down_the_client_never_warns_of_its_own_retries(by_hand, caplog):
    from kubernetes import client as k8s

    from controller.agent.feed import ConfigMapFeed
    from controller.kube.api import new_api_client as api_client
    seen: list = []
    caplog.set_level("DEBUG", logger="urllib3")
    ConfigMapFeed(k8s.CoreV1Api(api_client()), "ns", "r", seen.append).run(Stop(waits=1))
    assert [type(u) for u in seen] == [Unreachable]
    assert "Connection refused" in seen[0].message and "Max retries" not in seen[0].message
    assert not [r for r in caplog.records if "Retrying" in r.getMessage()]


def test_with_the_api_down_it_says_once_what_it_serves_and_once_that_it_is_back(tmp_path,
                                                                                caplog):
    caplog.set_level("INFO", logger="shardring.agent")
    agent = agent_for(tmp_path, prometheus=False)
    feed(agent, *[Unreachable("connection refused")] * 5)
    feed(agent, Seen(configmap(ring_of(["a", "b"], version=3))))
    feed(agent, *[Unreachable("connection refused")] * 5, Seen(None), Seen(None))
    lines = [r.getMessage() for r in caplog.records if "Kubernetes API" in r.getMessage()]
    assert lines == [
        "the Kubernetes API is unreachable (connection refused); no ring yet (no files were "
        "ever written here); retrying quietly",
        "the Kubernetes API is reachable again",
        "the Kubernetes API is unreachable (connection refused); serving ring version 3 from "
        f"{tmp_path / 'ring'}; retrying quietly",
        "the Kubernetes API is reachable again"]
    assert not [r for r in caplog.records if r.exc_info]


def test_it_logs_what_it_rendered_and_what_the_reload_answered(tmp_path, caplog):
    caplog.set_level("INFO", logger="shardring.agent")
    reloads = Reloads()
    agent = agent_for(tmp_path, reload=reloads, clock=Clock())
    ring = ring_of(["a", "b"], version=4)
    feed(agent, Seen(configmap(ring)))
    mine = len(ring.assignment.shards_of("a"))
    assert f"ring version 4 rendered into {tmp_path / 'prometheus.yml'} (member a keeps " \
           f"{mine} of 16 shards)" in caplog.messages
    assert "reload for ring version 4: fake answered" in caplog.messages
    reloads.fail = 1
    feed(agent, Seen(configmap(ring_of(["a", "c"], version=5))))
    assert "reload for ring version 5 failed: connection refused; retrying in 1 s" in \
        caplog.messages


def test_an_http_reload_answers_with_its_status(tmp_path):
    import http.server
    import threading

    from controller.agent.reload import HttpPost

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(200 if self.path == "/-/reload" else 500)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        assert HttpPost(f"{url}/-/reload")() == f"POST {url}/-/reload: HTTP 200"
        with pytest.raises(ReloadFailed, match="HTTP 500"):
            HttpPost(f"{url}/other")()
    finally:
        server.shutdown()
        server.server_close()


def test_acknowledgement_retries_are_quiet_and_the_backoff_never_overflows(tmp_path, caplog):
    from controller.agent.run import RETRY_MAX, Retry
    caplog.set_level("INFO", logger="shardring.agent")
    leases, clock = Leases(), Clock()
    leases.fail = 4
    agent = agent_for(tmp_path, leases=leases, clock=clock, prometheus=False)
    feed(agent, Seen(configmap(ring_of(["a", "b"]))))
    for _ in range(6):
        clock.now += 60
        agent.step(0)
    assert [a.version for a in leases.written] == [1]
    assert len([m for m in caplog.messages if "could not acknowledge" in m]) == 1
    assert "acknowledged ring version 1 in Lease r.pod-0 after 4 failures" in caplog.messages
    assert Retry(failures=5000).failed(0.0) == RETRY_MAX  # days of failures


# ---- load reports (issue #26) -------------------------------------------------------------------

def test_the_load_of_this_members_shards_is_reported_with_its_acknowledgement(tmp_path):
    from controller.core import loads
    measured = {shard: float(shard) + 0.5 for shard in range(64)}
    calls = []

    def measure(shards):
        calls.append(shards)
        return Measurement(dict(measured))
    clock, leases = Clock(), Leases()
    agent = agent_for(tmp_path, prometheus=False, leases=leases, clock=clock)
    agent.config = replace(agent.config, load=measure, load_interval=30.0)
    first = ring_of(["a", "b"])
    feed(agent, Seen(configmap(first)))
    agent.step(0)  # the first measurement is due at once
    ack = leases.written[-1]
    mine = first.assignment.shards_of("a")
    assert calls == [first.assignment.shards]
    assert loads.decode(ack.load, first.assignment.shards) == {s: measured[s] for s in mine}
    lease = build_lease("ns", ack, None)
    assert ack_from_lease(lease) == ack  # the report survives the Lease both ways
    written = len(leases.written)
    clock.now += 10
    agent.step(0)
    assert len(calls) == 1  # not due yet
    clock.now += 25
    agent.step(0)
    assert len(calls) == 2 and len(leases.written) == written  # the same report: no write
    measured[mine[0]] = 1000.0
    clock.now += 30
    agent.step(0)
    assert loads.decode(leases.written[-1].load, 64)[mine[0]] == 1000.0
    feed(agent, Seen(configmap(ring_of(["b", "c"], version=2))))  # "a" left the ring
    clock.now += 30
    agent.step(0)
    assert leases.written[-1].member == "" and leases.written[-1].load == ""


def test_a_load_source_that_fails_leaves_the_last_report_and_says_so_once(tmp_path, caplog):
    from controller.agent.loadreport import LoadUnavailable
    failing = [False]

    def measure(shards):
        if failing[0]:
            raise LoadUnavailable("http://127.0.0.1:1/metrics: connection refused")
        return Measurement({0: 5.0, 1: 5.0})
    clock, leases = Clock(), Leases()
    agent = agent_for(tmp_path, prometheus=False, leases=leases, clock=clock)
    agent.config = replace(agent.config, load=measure, load_interval=30.0)
    feed(agent, Seen(configmap(ring_of(["a", "b"]))))
    agent.step(0)
    reported = leases.written[-1].load
    failing[0] = True
    for _ in range(3):
        clock.now += 31
        agent.step(0)
    assert leases.written[-1].load == reported
    assert caplog.text.count("load not measured") == 1


def test_loads_are_read_from_the_workloads_exposition():
    from controller.agent.loadreport import from_exposition
    text = ('# HELP shardring_shard_load what a shard carries\n'
            '# TYPE shardring_shard_load gauge\n'
            'shardring_shard_load{shard="3"} 12.5\n'
            'shardring_shard_load{job="x",shard="4"} 2e3\n'
            'shardring_shard_load{shard="5"} NaN\n'
            'shardring_shard_load{shard="3",replica="b"} 0.5\n'
            'shardring_shard_load_total{shard="9"} 7\n'
            'other{shard="1"} 1\n')
    assert from_exposition(text) == {3: 13.0, 4: 2000.0}


def test_a_load_report_needs_an_acknowledgement_and_a_source(tmp_path, by_hand):
    from controller.agent.command import AgentUsageError
    with pytest.raises(AgentUsageError, match="--no-ack"):
        agent_config(tmp_path, "--no-ack", "--load-url", "http://127.0.0.1:9/metrics")
    with pytest.raises(AgentUsageError, match="--prometheus-url"):
        agent_config(tmp_path, "--load-from-prometheus")
    assert agent_config(tmp_path, "--load-url", "http://127.0.0.1:9/metrics").load is not None


def test_the_clients_load_exposition_is_what_the_agent_reads():
    import shardring_client
    from controller.agent.loadreport import from_exposition
    loads = {17: 1234.0, 3: 0.5, 0: 0.0}
    assert from_exposition(shardring_client.load_exposition(loads)) == loads


def test_loads_are_read_from_a_file_the_workload_writes(tmp_path):
    import shardring_client
    from controller.agent.loadreport import LoadUnavailable, workload
    path = tmp_path / "loads.prom"
    measure = workload(path.as_uri())
    with pytest.raises(LoadUnavailable, match="loads.prom"):
        measure(64)  # not written yet: the last report stays
    path.write_text(shardring_client.load_exposition({3: 12.0, 70: 5.0, 9: 1.5}))
    assert measure(64).loads == {3: 12.0, 9: 1.5}  # (70 is beyond the ring's shards)


def test_in_prometheus_mode_a_shards_load_is_its_targets_samples(tmp_path):
    """Prometheus' own scrape_samples_scraped per target, summed into the shard the ring's
    hashmod puts the target in (the adapter against a stand-in for Prometheus' query API; the
    real servers are for the balancing proof of issue #26)."""
    import json

    from controller.agent.loadreport import LoadUnavailable, prometheus
    from controller.client import shard_of
    from tests.operator_helpers import http_server
    targets = {"10.0.0.1:9100": 100.0, "10.0.0.2:9100": 5000.0, "10.0.0.3:9100": 7.0}
    # Taken over a moment ago: in the target list, never scraped, so no sample yet.
    fresh = "10.0.0.4:9100"
    asked = []

    def answer(path: str) -> bytes:
        asked.append(path)
        if path.startswith("/api/v1/targets"):
            return json.dumps({"status": "success", "data": {"activeTargets": [
                {"labels": {"instance": t, "job": "nodes"}, "health": "up"} for t in targets] +
                [{"labels": {"instance": fresh, "job": "nodes"}, "health": "unknown"},
                 {"labels": {}, "health": "unknown"}]}}).encode()
        return json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"instance": t, "job": "nodes"}, "value": [1.0, str(v)]}
            for t, v in targets.items()] + [{"metric": {}, "value": [1.0, "9"]}]}}).encode()
    with http_server(answer) as url:
        measured = prometheus(url)(16)
    expected: dict[int, float] = {}
    for target, samples in targets.items():
        expected[shard_of(target, 16)] = expected.get(shard_of(target, 16), 0.0) + samples
    assert measured.loads == expected
    assert measured.unsettled == {shard_of(fresh, 16)}
    assert asked == ["/api/v1/query?query=scrape_samples_scraped",
                     "/api/v1/targets?state=active"]
    with pytest.raises(LoadUnavailable):
        prometheus("http://127.0.0.1:1")(16)


def test_an_unsettled_shard_is_left_out_of_the_report(tmp_path):
    """A shard whose targets this member has not scraped yet (it just took it over) is not
    reported as empty: its previous owner's report stands."""
    from controller.core import loads
    leases = Leases()
    agent = agent_for(tmp_path, prometheus=False, leases=leases)
    ring = ring_of(["a", "b"])
    mine = ring.assignment.shards_of("a")
    agent.config = replace(agent.config, load=lambda shards: Measurement(
        {s: 3.0 for s in mine[1:]}, frozenset({mine[0]})), load_interval=30.0)
    feed(agent, Seen(configmap(ring)))
    assert loads.decode(leases.written[-1].load, 64) == {s: 3.0 for s in mine[1:]}


def test_a_steady_load_is_written_again_before_it_would_go_stale_and_nothing_stops_the_agent(
        tmp_path, caplog):
    from controller.core import loads
    clock, leases = Clock(), Leases()
    answers = [{0: 5.0, 1: 5.0}]

    def measure(shards):
        answer = answers[0]
        if isinstance(answer, Exception):
            raise answer
        return Measurement(dict(answer))
    agent = agent_for(tmp_path, prometheus=False, leases=leases, clock=clock)
    agent.config = replace(agent.config, load=measure, load_interval=30.0)
    feed(agent, Seen(configmap(ring_of(["a", "b"]))))
    agent.step(0)
    writes = len(leases.written)
    clock.now += 60
    agent.step(0)
    assert len(leases.written) == writes  # the same report, a minute later: no write
    clock.now += loads.STALE_AFTER / 2
    agent.step(0)
    assert len(leases.written) == writes + 1  # the same report, but renewed in time
    answers[0] = TypeError("'NoneType' object is not iterable")  # any failure of a source
    clock.now += 31
    agent.step(0)  # does not raise
    assert "load not measured" in caplog.text


def test_a_slow_load_source_never_holds_a_new_ring_version_back(tmp_path):
    """The measurement runs off the agent's loop: while it hangs, a new version is applied and
    acknowledged; its result, once it comes, is reported (or dropped if the shard count changed)."""
    import threading

    from controller.agent.run import in_thread
    from controller.core import loads
    release, started = threading.Event(), threading.Event()

    def measure(shards):
        started.set()
        assert release.wait(10)
        return Measurement({s: 2.0 for s in range(shards)})
    leases = Leases()
    agent = agent_for(tmp_path, prometheus=False, leases=leases)
    agent.off_loop = in_thread
    agent.config = replace(agent.config, load=measure, load_interval=30.0)
    feed(agent, Seen(configmap(ring_of(["a", "b"]))))
    assert started.wait(5)
    second = ring_of(["a", "b", "c"], version=2)
    feed(agent, Seen(configmap(second)))  # applied at once, the measurement still hanging
    assert leases.written[-1].version == 2 and leases.written[-1].load == ""
    release.set()
    agent.step(5)  # woken by the finished measurement
    mine = second.assignment.shards_of("a")
    assert loads.decode(leases.written[-1].load, 64) == {s: 2.0 for s in mine}
    assert leases.written[-1].version == 2
