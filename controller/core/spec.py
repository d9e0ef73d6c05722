"""A ShardRing's spec, parsed into typed settings. Pure: no I/O.

The CRD schema refuses most bad specs at apply time; what it cannot express is refused here with a
``SpecError`` whose message says what to fix (reported as Degraded / InvalidSpec).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.core import names, printable
from controller.core.ring import Algorithm, RingError, RingSpec

# <host>/<name>: the source's unique key for an instance (Consul's node and service ID).
DEFAULT_IDENTITY = "node/id"
_DURATION = re.compile(r"(\d+)(?:\.(\d+))?(ms|s|m|h)")
_LONGEST_NS = 2**63 - 1  # Go's time.Duration
_UNIT_NS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


class SpecError(ValueError):
    """The spec cannot be acted on; the message names the field and what to change."""


def duration_ns(text: str, field_name: str) -> int:
    """Go-style duration ("1m30s", "250ms", "0s") in whole nanoseconds, as Go's
    time.ParseDuration reads it (and so the CRD's CEL rules): "700ms" and "0.7s" are equal here
    too (summed as floats they were not, and a maxDelay the API server had admitted as equal to
    the window was refused)."""
    text = str(text).strip()
    if text == "0":
        return 0
    position, total = 0, 0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            break
        whole, fraction, unit = match.group(1), match.group(2) or "", _UNIT_NS[match.group(3)]
        total += int(whole) * unit + _fraction_ns(fraction, unit)
        position = match.end()
    if position != len(text) or not text:
        raise SpecError(f"{field_name}: {text!r} is not a duration like 10s, 1m30s or 500ms")
    if total > _LONGEST_NS:
        raise SpecError(f"{field_name}: {text!r} is longer than Go's longest duration (2562047h)")
    return total


def _fraction_ns(digits: str, unit: int) -> int:
    """A number's fraction times its unit, as Go computes it: the digits that fit an int64, in
    float64 arithmetic, truncated (so "0.99999999999999999s" is 1s there, and here)."""
    fraction, scale = 0, 1.0
    for digit in digits:
        if fraction > (2**63 - 1) // 10 or fraction * 10 + int(digit) > 2**63:
            break  # (Go ignores the digits past what an int64 holds)
        fraction, scale = fraction * 10 + int(digit), scale * 10
    return int(float(fraction) * (float(unit) / scale)) if fraction else 0


def parse_duration(text: str, field_name: str) -> float:
    """Go-style duration ("1m30s", "250ms", "0s") in seconds."""
    return duration_ns(text, field_name) / 10**9


IN_CLUSTER = "in-cluster"  # the Kubernetes source's one connection: the operator's own API server


@dataclass(frozen=True)
class Vocabulary:
    """How a source kind is named in the messages a user reads (status, events)."""

    name: str  # "etcd": "etcd reports…", "no etcd query is running"
    spec_field: str  # the spec field naming its members: "etcd" (spec.etcd.prefix)
    connection_field: str  # where its connection is chosen: "spec.etcd" (spec.etcd.connection)
    secret_field: str = "credentialsSecretRef"  # below connection_field
    empty_hint: str = ""  # added when the source reports no member at all
    # The name its Reachable condition had before SourceReachable (deprecated, kept for readers),
    # and Ready's reason while it cannot be reached.
    legacy_condition: str | None = None
    unreachable_reason: str = "SourceUnreachable"

    @property
    def connection_phrase(self) -> str:
        article = "an" if self.name[:1].lower() in "aeiou" else "a"
        return f"{article} {self.name} connection"


class SourceQuery(Protocol):
    """What one ring asks of its source; equal queries share one watcher. Each source kind defines
    its own (controller.sources.<kind>.query) and reads it from the spec."""

    @property
    def kind(self) -> str: ...

    @property
    def connection(self) -> str: ...

    @property
    def filter(self) -> str | None: ...  # an expression the source evaluates, as written

    @property
    def datacenter(self) -> str | None: ...  # checked against the connection's allow-list

    @property
    def words(self) -> Vocabulary: ...

    @property
    def target(self) -> str:
        """What this source kind watches (metrics' ``query`` label)."""

    def members_found(self, count: int) -> str:
        """"<source> reports N members of <target>", for a ring short of members."""

    def describe(self) -> str:
        """Which members, in a word (status.source, the SOURCE column)."""

    def record(self) -> dict[str, Any]:
        """What ring.json's "service" records of this query (the rules are added to it)."""


@dataclass(frozen=True)
class TokenRef:
    """A Secret holding a token."""

    secret: str
    key: str = "token"


@dataclass(frozen=True)
class CredentialsRef:
    """A Secret holding a username and a password (etcd's own authentication)."""

    secret: str
    username_key: str = "username"
    password_key: str = "password"


@dataclass(frozen=True)
class Stabilization:
    window: float = 10.0
    max_delay: float = 60.0
    min_members: int = 1
    max_member_loss_percent: int = 50


@dataclass(frozen=True)
class Balance:
    """spec.balance: what shards are balanced by. ``by_load``: what members measured they carry
    (their agents' load reports), else shard counts."""

    by_load: bool = False
    tolerance: float = 0.10  # no move while every member carries at most 1.1 x its fair share
    max_moves_percent: float = 5.0  # of the shard replicas, per rebalance (at least one)
    interval: float = 300.0  # seconds between rebalances
    half_life: float = 120.0  # seconds: how fast the smoothed load follows the reports

    def budget(self, replicas: int) -> int:
        """The most shard replicas one rebalance may move."""
        return max(1, int(replicas * self.max_moves_percent // 100))


@dataclass(frozen=True)
class RingConfig:
    query: SourceQuery
    ring_spec: RingSpec  # the engine's parameters: shards, replication, algorithm
    configmap: str
    identity: str = DEFAULT_IDENTITY
    weight_from: str | None = None
    zone_from: str | None = None
    drain_from: str | None = None  # tag:<tag> | meta:<key> | field:<name>
    token: TokenRef | None = None  # a token (an ACL token)
    credentials: CredentialsRef | None = None  # etcd's, or ZooKeeper's digest, user and password
    stabilization: Stabilization = field(default_factory=Stabilization)
    prometheus_relabel: bool = False
    suspend: bool = False
    handover_timeout: float = 60.0  # 0: planned moves complete at once (no make-before-break)
    balance: Balance = field(default_factory=Balance)


def value_of(mapping: Mapping[str, Any] | None, key: str, default: Any = None) -> Any:
    """A spec field's value; an absent field and an explicit null both give the default."""
    if not mapping:
        return default
    value = mapping.get(key)
    return default if value is None else value


def credentials_ref(ref: Mapping[str, Any] | None) -> CredentialsRef | None:
    """A ``credentialsSecretRef`` (the same shape for every source that takes a user)."""
    if not ref:
        return None
    return CredentialsRef(ref["name"], value_of(ref, "usernameKey", "username"),
                          value_of(ref, "passwordKey", "password"))


ParsedSource = tuple[SourceQuery, TokenRef | None, CredentialsRef | None]


@dataclass(frozen=True)
class SourceSpec:
    """A source kind's part of a ShardRing's spec: the field that names it, and its reader."""

    field: str  # "etcd": a ring with spec.etcd follows this source
    title: str  # how "set exactly one membership source" names it: "spec.etcd"
    # (the whole spec, the ring's namespace) -> its query and what it authenticates with;
    # raises SpecError for what the CRD schema cannot refuse.
    parse: Callable[[Mapping[str, Any], str], ParsedSource]
    # Where its instances can say they are draining (spec.members.drainFrom's kinds): a rule
    # that looks where the source has nothing would never drain anyone.
    drain_kinds: tuple[str, ...] = ()


def parse_spec(name: str, spec: Mapping[str, Any], namespace: str,
               sources: Sequence[SourceSpec]) -> RingConfig:
    """``namespace``: the ring's; ``sources``: every source kind the operator follows."""
    try:
        return _parse_spec(name, spec, namespace, sources)
    except SpecError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as error:
        # A field of the wrong type or shape: the CRD's schema refuses these at apply time, so
        # the ring was stored without it (an older CRD, or none). Said as InvalidSpec, as the
        # schema would have, rather than a failing pass.
        raise SpecError(f"the spec does not match the ShardRing schema ({type(error).__name__}: "
                        f"{error}); apply this operator's CRD, which checks every field") from None


def _parse_spec(name: str, spec: Mapping[str, Any], namespace: str,
                sources: Sequence[SourceSpec]) -> RingConfig:
    named = [source for source in sources if spec.get(source.field) is not None]
    if len(named) != 1:
        titles = [source.title for source in sources]
        raise SpecError("set exactly one membership source: " + ", ".join(titles[:-1]) +
                        f" or {titles[-1]}" +
                        (f" (found {' and '.join(s.field for s in named)})" if named else ""))
    members = value_of(spec, "members", {})
    stabilization = value_of(spec, "stabilization", {})
    algorithm = value_of(spec, "algorithm", "balanced")
    try:
        ring = RingSpec(shards=_whole(value_of(spec, "shards", 256), "spec.shards"),
                        replication=_whole(value_of(spec, "replicationFactor", 1),
                                           "spec.replicationFactor"),
                        algorithm=Algorithm(algorithm),
                        virtual_nodes=_whole(value_of(spec, "virtualNodes", 160),
                                             "spec.virtualNodes"))
    except (RingError, ValueError) as error:
        raise SpecError(f"spec: {error}") from None
    window = duration_ns(value_of(stabilization, "window", "10s"), "spec.stabilization.window")
    max_delay = duration_ns(value_of(stabilization, "maxDelay", "60s"),
                            "spec.stabilization.maxDelay")
    if max_delay < window:
        raise SpecError("spec.stabilization.maxDelay must be at least spec.stabilization.window")
    query, token, credentials = named[0].parse(spec, namespace)
    return RingConfig(
        query=query,
        ring_spec=ring,
        configmap=_configmap_name(value_of(value_of(spec, "configMap", {}), "name"), name),
        identity=_rule(value_of(members, "identity", DEFAULT_IDENTITY), _IDENTITY,
                       "spec.members.identity"),
        weight_from=_rule(value_of(members, "weightFrom"), _WEIGHT_FROM,
                          "spec.members.weightFrom"),
        zone_from=_rule(value_of(members, "zoneFrom"), _ZONE_FROM, "spec.members.zoneFrom"),
        drain_from=_drain_rule(value_of(members, "drainFrom"), named[0]),
        token=token,
        credentials=credentials,
        stabilization=Stabilization(
            window=window / 10**9, max_delay=max_delay / 10**9,
            min_members=_whole(value_of(stabilization, "minMembers", 1),
                               "spec.stabilization.minMembers", 0, 100_000),
            max_member_loss_percent=_whole(value_of(stabilization, "maxMemberLossPercent", 50),
                                           "spec.stabilization.maxMemberLossPercent", 0, 100)),
        prometheus_relabel=_flag(value_of(value_of(spec, "outputs", {}), "prometheusRelabel",
                                          False), "spec.outputs.prometheusRelabel"),
        suspend=_flag(value_of(spec, "suspend", False), "spec.suspend"),
        handover_timeout=parse_duration(value_of(value_of(spec, "handover", {}), "timeout",
                                                 "60s"), "spec.handover.timeout"),
        balance=_balance(value_of(spec, "balance", {}), ring),
    )


# The CRD's patterns for the member rules: a ring stored without its schema is held to them here
# (a rule of another shape failed every pass deep in the membership code).
_IDENTITY = re.compile(r"node/id|id|address|address:port|node|meta:[A-Za-z0-9_-]{1,128}")
_WEIGHT_FROM = re.compile(r"weights|meta:[A-Za-z0-9_-]{1,128}")
_ZONE_FROM = re.compile(r"(node-meta|meta):[A-Za-z0-9_-]{1,128}")


def _rule(value: Any, pattern: re.Pattern[str], field_name: str) -> Any:
    if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
        raise SpecError(f"{field_name} {value!r} is not one of the rules the CRD describes "
                        f"(kubectl explain shardring.{field_name})")
    return value


def _text(value: Any, field_name: str) -> str:
    if not isinstance(value, str):
        raise SpecError(f"{field_name} {value!r} is not a string")
    return value


def _configmap_name(value: Any, ring: str) -> str:
    if value is None:
        configmap = f"{ring}-ring"
        if not names.is_subdomain(configmap):  # (a ring's name 249 characters long or more)
            raise SpecError(f"the default ConfigMap name {printable.shown(configmap)} is longer "
                            f"than {names.MAX_LENGTH} characters: set spec.configMap.name")
        return configmap
    configmap = _text(value, "spec.configMap.name")
    if not names.is_subdomain(configmap):
        raise SpecError(f"spec.configMap.name {printable.shown(configmap)} is not a ConfigMap "
                        f"name: lower-case letters, digits, '-' and '.', each dot-separated "
                        f"part starting and ending with a letter or digit, at most "
                        f"{names.MAX_LENGTH} characters")
    return configmap


def _whole(value: Any, field_name: str, least: int | None = None,
           most: int | None = None) -> int:
    """A whole number, within the CRD's bounds when given (true is not 1, nor 2.5 two: the CRD
    refuses them; a ring stored without it must not be published as if they were)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{field_name} {printable.shown(value)} is not a whole number")
    if (least is not None and value < least) or (most is not None and value > most):
        raise SpecError(f"{field_name} {value} is not between {least} and {most}")
    return value


def _flag(value: Any, field_name: str) -> bool:
    """true or false, as YAML writes them: the string "false" is not false's opposite."""
    if not isinstance(value, bool):
        raise SpecError(f"{field_name} {value!r} is not true or false")
    return value


def _balance(balance: Mapping[str, Any], ring: RingSpec) -> Balance:
    by = value_of(balance, "by", "count")
    if by not in ("count", "load"):
        raise SpecError(f"spec.balance.by {by!r} is not count or load")
    if by == "load" and ring.algorithm is not Algorithm.BALANCED:
        raise SpecError(f"spec.balance.by: load needs algorithm: balanced ({ring.algorithm.value} "
                        f"places shards by hash alone, so no shard can be moved for its load)")
    try:
        tolerance = float(value_of(balance, "tolerancePercent", 10))
        moves = float(value_of(balance, "maxMovesPercent", 5))
    except (TypeError, ValueError):
        raise SpecError("spec.balance.tolerancePercent and maxMovesPercent are numbers") from None
    if not 1 <= tolerance <= 100:
        raise SpecError(f"spec.balance.tolerancePercent {tolerance:g} is not between 1 and 100")
    if not 0 < moves <= 100:
        raise SpecError(f"spec.balance.maxMovesPercent {moves:g} is not above 0 and at most 100")
    interval = parse_duration(value_of(balance, "interval", "5m"), "spec.balance.interval")
    if interval < 10:
        raise SpecError("spec.balance.interval must be at least 10s: every rebalance is a "
                        "handover the members acknowledge")
    return Balance(by_load=by == "load", tolerance=tolerance / 100,
                   max_moves_percent=moves, interval=interval,
                   half_life=parse_duration(value_of(balance, "smoothing", "2m"),
                                            "spec.balance.smoothing"))


_DRAIN_FORMS = {"tag": "tag:<tag>", "meta": "meta:<key>", "field": "field:<name>"}


def _drain_rule(rule: str | None, source: SourceSpec) -> str | None:
    if rule is None:
        return None
    kind, _, name = str(rule).partition(":")
    if kind not in _DRAIN_FORMS or not name:
        raise SpecError(f"spec.members.drainFrom {rule!r} is not tag:<tag>, meta:<key> or "
                        f"field:<name>")
    if not source.drain_kinds:
        raise SpecError(f"spec.members.drainFrom {rule!r}: a ring following {source.title} "
                        f"reads no drain rule: its source says itself which members drain")
    if kind not in source.drain_kinds:
        forms = " or ".join(_DRAIN_FORMS[k] for k in source.drain_kinds)
        raise SpecError(f"spec.members.drainFrom {rule!r}: {source.title} has no {kind}s to "
                        f"read; use {forms}")
    return str(rule)
