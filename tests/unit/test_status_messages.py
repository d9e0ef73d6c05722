"""What status, conditions and events tell a user (issue #21): nothing claims a ring is kept when
none was published, a reshard names who joined and left, the source's current member count sits
beside the published one, and convergence does not list laggards when nobody runs an agent."""

from __future__ import annotations

from controller.core import ringfile
from controller.core.acks import convergence
from controller.core.decision import SHOWN_MEMBERS, decide
from controller.core.instance import Instance
from controller.core.membership import members_from
from controller.core.memory import RingMemory
from controller.core.planner import Gathered, plan_pass
from controller.core.ring import Member, RingSpec, plan
from controller.core.source_state import Snapshot, SourceState
from controller.core.views import RingObject, text_digest
from controller.sources.specs import parse_spec
from controller.testing.builders import instance


def entry(service_id: str, port: int = 9100) -> Instance:
    return instance(service_id, "10.0.0.2", port, node="n1")


def members(*ids: str):
    return members_from([entry(i, 9000 + n) for n, i in enumerate(ids)], "id")


SPEC = {"service": {"name": "svc"}, "shards": 16, "members": {"identity": "id"},
        "stabilization": {"window": "0s", "maxDelay": "0s", "maxMemberLossPercent": 100}}
CONFIG = parse_spec("r", SPEC)


def ring_object(status: dict | None = None) -> RingObject:
    return RingObject("team", "r", "uid-1", 1, SPEC, status or {})


def source_with(*ids: str) -> SourceState:
    return SourceState(Snapshot(7, tuple(entry(i, 9000 + n) for n, i in enumerate(ids)), 0.0))


def condition(status: dict, kind: str) -> dict:
    return next(c for c in status["conditions"] if c["type"] == kind)


def remembered(published: ringfile.RingFile) -> RingMemory:
    """The worker's memory after publishing this ring."""
    return RingMemory(last_published_ring=published,
                      last_published_digest=text_digest(ringfile.render(published)))


def test_a_problem_before_the_first_ring_does_not_claim_a_ring_is_kept():
    plan_ = plan_pass(ring_object(), CONFIG, Gathered(None, source_with()), 0.0, "t")
    ready = condition(plan_.status, "Ready")
    assert ready["reason"] == "NotEnoughMembers"
    assert "kept" not in ready["message"] and "No ring is published" in ready["message"]
    # Once a ring exists, the same problem says it is kept.
    first = plan_pass(ring_object(), CONFIG, Gathered(None, source_with("a")), 0.0, "t")
    assert first.published is not None
    later = plan_pass(ring_object(first.status), CONFIG,
                      Gathered(None, source_with(), memory=remembered(first.published)), 1.0, "t")
    assert "The last published ring is kept." in condition(later.status, "Ready")["message"]


def test_no_members_names_what_the_spec_narrowed_the_service_to():
    """Instances registered without the example's tag: the message says the tag."""
    narrowed = {**SPEC, "service": {"name": "svc", "tags": ["scraper", "a", "b"],
                                    "onlyPassing": False, "nodeMeta": {"rack": "r1", "zone": "z"},
                                    "datacenter": "dc2", "filter": 'Service.Port == 9100'}}
    plan_ = plan_pass(RingObject("team", "r", "uid-1", 1, narrowed, {}),
                      parse_spec("r", narrowed), Gathered(None, source_with()), 0.0, "t")
    message = condition(plan_.status, "Ready")["message"]
    assert message.startswith(
        "Consul reports 0 passing or warning instance(s) of 'svc', tagged 'a', 'b' and "
        "'scraper', on nodes with rack='r1' and zone='z', matching 'Service.Port == 9100', in "
        "datacenter 'dc2' (with Consul ACLs"), message
    long = {**SPEC, "service": {"name": "svc", "filter": "Service.Port == 1 or " * 100}}
    message = condition(plan_pass(RingObject("team", "r", "uid-1", 1, long, {}),
                                  parse_spec("r", long), Gathered(None, source_with()), 0.0,
                                  "t").status, "Ready")["message"]
    assert len(message) < 400 and "Service.Port =='… (2100 characters)" in message, message
    plain = plan_pass(ring_object(), CONFIG, Gathered(None, source_with()), 0.0, "t")
    assert condition(plain.status, "Ready")["message"].startswith(
        "Consul reports 0 healthy instance(s) of 'svc' (with Consul ACLs")


def test_the_source_count_sits_beside_the_published_count():
    first = plan_pass(ring_object(), CONFIG, Gathered(None, source_with("a", "b")), 0.0, "t")
    assert (first.status["members"], first.status["observedMembers"]) == (2, 2)
    # The last member dies: the published ring keeps its 2, the source says 0.
    gone = plan_pass(ring_object(first.status), CONFIG,
                     Gathered(None, source_with(), memory=remembered(first.published)), 1.0, "t")
    assert (gone.status["members"], gone.status["observedMembers"]) == (2, 0)
    # The source unreachable: its count is not known, so none is shown.
    failing = SourceState(source_with("a").snapshot, error="Consul query failed")
    lost = plan_pass(ring_object(gone.status), CONFIG,
                     Gathered(None, failing, memory=remembered(first.published)), 2.0, "t")
    assert "observedMembers" not in lost.status and lost.status["members"] == 2


def test_a_reshard_names_who_joined_and_left_in_the_event_and_in_last_change():
    before = decide(CONFIG, members("a", "b", "c"), 1, None, shard_ring={}, now=0, seen_at=0,
                    pending_since=None)
    gathered = Gathered(None, source_with("a", "c", "d"),
                        memory=remembered(before.ring))
    after = plan_pass(ring_object({"ringVersion": 1}), CONFIG, gathered, 1.0, "t")
    change = after.status["lastChange"]
    assert (change["added"], change["removed"]) == (1, 1)
    assert (change["joined"], change["left"]) == (["d"], ["b"])
    [event] = [e for e in after.events if e.reason == "Resharded"]
    assert "+1 -1: joined: d; left: b" in event.message


def test_a_registered_name_with_a_newline_or_a_nul_cannot_forge_a_line_of_its_own():
    forged = "evil\n2026-12-03 16:00:00,000 ERROR shardring FAKE"
    first = plan_pass(ring_object(), CONFIG, Gathered(None, source_with("a", forged, "b\x00")),
                      0.0, "t")
    [event] = [e for e in first.events if e.reason == "Resharded"]
    assert "\n" not in event.message and "\x00" not in event.message
    assert "evil\\n2026-12-03" in event.message and "b\\x00" in event.message
    assert forged in first.status["lastChange"]["joined"]  # (JSON: escaped by its encoding)


def test_many_joiners_are_named_up_to_a_bound_and_counted():
    ids = [f"m{i:02d}" for i in range(SHOWN_MEMBERS + 5)]
    first = plan_pass(ring_object(), CONFIG, Gathered(None, source_with(*ids)), 0.0, "t")
    assert first.status["lastChange"]["joined"] == ids[:SHOWN_MEMBERS]
    [event] = [e for e in first.events if e.reason == "Resharded"]
    assert f"{ids[SHOWN_MEMBERS - 1]} and 5 more" in event.message


def test_no_agents_means_nobody_is_listed_as_lagging():
    ring = ringfile.RingFile(plan([Member("a"), Member("b")], RingSpec(8, 1)), version=2)
    nobody = convergence(ring, [], "t")
    assert (nobody.condition.status, nobody.condition.reason) == (None, "NoAgents")
    assert "lagging" not in nobody.status and "laggingCount" not in nobody.status
    assert nobody.status["applied"] == 0 and nobody.status["members"] == 2


def test_a_status_patch_removes_what_the_plan_dropped_at_every_depth():
    from controller.operator.publish import merge_patch
    from tests.shell.fakes import merged
    before = {"members": 3, "draining": ["x"],
              "lastChange": {"added": 1, "removed": 0, "joined": ["c"]},
              "convergence": {"applied": 1, "lagging": ["a", "b"], "laggingCount": 2}}
    wanted = {"members": 2, "lastChange": {"added": 0, "removed": 1, "left": ["b"]},
              "convergence": {"applied": 0}}
    assert merged(before, merge_patch(before, wanted)) == wanted


def test_every_ring_names_its_source_and_reports_it_as_source_reachable():
    consul = plan_pass(ring_object(), CONFIG, Gathered(None, source_with("a")), 0.0, "t")
    assert consul.status["source"] == "consul:svc"
    kinds = [c["type"] for c in consul.status["conditions"]]
    assert "SourceReachable" in kinds and "ConsulReachable" in kinds  # the old name, deprecated
    assert condition(consul.status, "SourceReachable")["status"] == \
        condition(consul.status, "ConsulReachable")["status"] == "True"
    etcd_spec = {"etcd": {"prefix": "/services/web"}, "shards": 8}
    etcd = plan_pass(RingObject("team", "e", "uid-2", 1, etcd_spec, {}),
                     parse_spec("e", etcd_spec), Gathered(None, source_with("a")), 0.0, "t")
    assert etcd.status["source"] == "etcd:/services/web/"
    assert "ConsulReachable" not in [c["type"] for c in etcd.status["conditions"]]
