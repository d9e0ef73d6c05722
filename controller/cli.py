"""Command line: ``python -m controller [run | agent | ring plan | show | lookup | diff]``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from controller import __version__
from controller.agent.command import AgentUsageError
from controller.agent.command import add_parser as add_agent_parser
from controller.core import ringfile
from controller.core.ring import Algorithm, Member, RingError, RingSpec, plan
from shardring_client import RingFormatError


class UsageError(Exception):
    """Bad input from the command line; printed as one line, exit code 2."""


def _load_members(path: str) -> list[Member]:
    try:
        raw = json.loads(Path(path).read_text() if path != "-" else sys.stdin.read())
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read members from {path}: {error}") from None
    if not isinstance(raw, list):
        raise UsageError("members file must hold a JSON list of objects with 'id'")
    members = []
    for position, entry in enumerate(raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
            raise UsageError(f"member #{position} needs a non-empty string 'id'")
        weight = entry.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise UsageError(f"member {entry['id']!r} has a non-numeric weight {weight!r}")
        zone = entry.get("zone")
        if zone is not None and not isinstance(zone, str):
            raise UsageError(f"member {entry['id']!r} has a non-string zone {zone!r}")
        members.append(Member(id=entry["id"], weight=weight, zone=zone))
    return members


def ring_plan(args: argparse.Namespace) -> int:
    members = _load_members(args.members)
    spec = RingSpec(shards=args.shards, replication=args.replication,
                    algorithm=Algorithm(args.algorithm), virtual_nodes=args.virtual_nodes)
    before = None
    if args.previous:
        try:
            before = ringfile.parse(Path(args.previous).read_text())
        except OSError as error:
            raise UsageError(f"cannot read {args.previous}: {error}") from None
    previous = before.assignment if before else None
    assignment = plan(members, spec, previous)
    version = 1
    if before is not None:
        unchanged = ringfile.ring_hash(assignment) == before.hash
        version = before.version if unchanged else before.version + 1
    sys.stdout.write(ringfile.render(ringfile.RingFile(assignment=assignment, version=version)))
    if previous is not None:
        print(f"moved shard replicas: {assignment.moved_from(previous)}", file=sys.stderr)
    return 0


def _read_ring(args: argparse.Namespace):
    from controller.client import parse
    if args.configmap:
        namespace, _, name = args.configmap.rpartition("/")
        import asyncio

        from kubernetes.config import ConfigException

        from controller.kube.api import Kube
        try:
            kube = Kube()
        except ConfigException as error:
            raise UsageError(f"--configmap needs a Kubernetes configuration (KUBECONFIG, "
                             f"~/.kube/config, or a pod's service account): {error}") from None
        found = asyncio.run(kube.read_configmap(namespace or "default", name))
        if found is None or found.ring_json is None:
            raise UsageError(f"ConfigMap {args.configmap} with a ring.json not found")
        return parse(found.ring_json)
    if not args.path:
        raise UsageError("give a directory or ring.json, or --configmap NAMESPACE/NAME")
    path = Path(args.path)
    path = path / "ring.json" if path.is_dir() else path
    try:
        return parse(path.read_text())
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error}") from None


def ring_show(args: argparse.Namespace) -> int:
    from controller.client import ownership_table
    print(ownership_table(_read_ring(args)))
    return 0


def ring_lookup(args: argparse.Namespace) -> int:
    ring = _read_ring(args)
    if not (args.key or args.member or args.address):
        raise UsageError("give --key, --member or --address")
    for key in args.key:
        print(f"{key}\tshard {ring.shard(key)}\t{','.join(ring.owners(key))}")
    member = args.member
    if args.address:
        address, port = _address_and_port(args.address)
        member = ring.member_at(address, port)
        if member is None:
            raise UsageError(f"no single member is registered at {args.address}")
    if member is not None:
        if member not in ring.members:
            raise UsageError(f"{member!r} is not a member of ring version {ring.version}")
        shards = ring.shards_of(member)
        print(f"member {member}\tkey {ring.member(member).key}\t{len(shards)} shards\t"
              f"{','.join(map(str, shards))}")
    return 0


def _ring_file(path_text: str) -> ringfile.RingFile:
    path = Path(path_text)
    path = path / "ring.json" if path.is_dir() else path
    try:
        return ringfile.parse(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None


def ring_diff(args: argparse.Namespace) -> int:
    from controller.core.ringdiff import diff
    found = diff(_ring_file(args.before), _ring_file(args.after))
    if args.json:
        document = {"before": found.before, "after": found.after, "joined": list(found.joined),
                    "left": list(found.left), "draining": list(found.draining),
                    "drained": list(found.drained),
                    "moved": found.moved, "resized": found.resized,
                    "moves": [{"from": m.source or None, "to": m.target or None,
                               "shards": list(m.shards)} for m in found.moves]}
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        print("\n".join(found.lines()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m controller",
                                     description="ShardRing operator and ring tools")
    parser.add_argument("--version", action="version", version=f"shardring {__version__}")
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="run the operator (the default)")
    run.add_argument("--namespace", action="append", default=[],
                     help="serve only this namespace (repeatable; or SHARDRING_NAMESPACES, "
                          "comma-separated); default: all namespaces")
    run.add_argument("--standalone", action="store_true",
                     help="no peering: assume this is the only operator process")
    run.add_argument("--peering", metavar="NAME",
                     help="ClusterKopfPeering to coordinate replicas through (one is active); "
                          "default: kopf's auto-detection, standalone if none exists")
    run.add_argument("--priority", type=int,
                     help="peering priority (default: random, so equal replicas never tie)")
    run.add_argument("--metrics-port", type=int, metavar="PORT",
                     help="serve Prometheus metrics on this port (or SHARDRING_METRICS_PORT)")
    run.add_argument("--metrics-address", metavar="ADDRESS",
                     help="listen address for metrics (or SHARDRING_METRICS_ADDRESS; "
                          "default 0.0.0.0)")
    run.add_argument("--no-ring-page", action="store_true",
                     help="do not serve the read-only ring page (/rings) on the metrics port "
                          "(or SHARDRING_RING_PAGE=false)")
    run.add_argument("--log-format", choices=["plain", "json"], default="plain",
                     help="plain (human-readable, the default) or json (one object per line)")
    run.add_argument("--liveness", metavar="URL",
                     help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz")
    add_agent_parser(commands)
    ring = commands.add_parser("ring", help="ring tools").add_subparsers(dest="ring_command",
                                                                        required=True)
    planner = ring.add_parser("plan", help="print the canonical ring.json for a membership")
    planner.add_argument("--members", required=True,
                         help="JSON list of {id, weight?, zone?} ('-' for stdin)")
    planner.add_argument("--shards", type=int, required=True)
    planner.add_argument("--replication", type=int, default=1)
    planner.add_argument("--algorithm", default="balanced",
                         choices=[a.value for a in Algorithm])
    planner.add_argument("--virtual-nodes", type=int, default=160)
    planner.add_argument("--previous", help="a ring.json to keep placements from")
    planner.set_defaults(handler=ring_plan)
    differ = ring.add_parser("diff", help="who joined and left, which shards moved where")
    differ.add_argument("before", help="a ring.json, or a directory holding one")
    differ.add_argument("after", help="a later ring.json, or a directory holding one")
    differ.add_argument("--json", action="store_true", help="print it as JSON")
    differ.set_defaults(handler=ring_diff)
    for command, handler, text in (("show", ring_show, "ownership per member"),
                                   ("lookup", ring_lookup, "owners of keys")):
        sub = ring.add_parser(command, help=text)
        if command == "lookup":
            sub.add_argument("--key", action="append", default=[], help="a key (repeatable)")
            sub.add_argument("--member", help="a member's identity (e.g. node-a/web): its shards")
            sub.add_argument("--address", metavar="ADDRESS[:PORT]",
                             help="the member registered at this endpoint: its identity, shards")
        sub.add_argument("path", nargs="?", help="a mounted ConfigMap directory or a ring.json")
        sub.add_argument("--configmap", metavar="NAMESPACE/NAME",
                         help="read it live from the cluster ($KUBECONFIG)")
        sub.set_defaults(handler=handler)
    return parser


def run_operator(args: argparse.Namespace) -> int:
    """The operator: kopf runs the handlers with an ``Operator`` as its memo."""
    import dataclasses
    import logging
    import random

    import kopf

    from controller.core.limits import SettingsError
    from controller.operator.handlers import Operator
    from controller.operator.settings import OperatorConfig
    try:
        config = OperatorConfig.from_env()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if getattr(args, "metrics_port", None):
        config = dataclasses.replace(config, metrics_port=args.metrics_port)
    if getattr(args, "metrics_address", None):
        config = dataclasses.replace(config, metrics_address=args.metrics_address)
    if getattr(args, "no_ring_page", False):
        config = dataclasses.replace(config, ring_page=False)
    refused = _ports_refused(config.metrics_port, config.metrics_address,
                             getattr(args, "liveness", None))
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    if getattr(args, "log_format", "plain") == "json":
        kopf.configure(log_format=kopf.LogFormat.JSON)
    else:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
    namespaces = getattr(args, "namespace", []) or \
        [n.strip() for n in os.environ.get("SHARDRING_NAMESPACES", "").split(",") if n.strip()]
    standalone = getattr(args, "standalone", False)
    priority = getattr(args, "priority", None)
    if priority is None:
        # Peers with equal priorities all pause; a random one makes exactly one replica active.
        priority = random.randint(1, 1_000_000)
    kopf.run(standalone=standalone or None, clusterwide=not namespaces, namespaces=namespaces,
             peering_name=None if standalone else getattr(args, "peering", None),
             priority=priority, liveness_endpoint=getattr(args, "liveness", None),
             memo=Operator(config))
    return 0


def _address_and_port(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, an IPv6 address, or ``[v6]`` with or without ``:port``, read as
    the sources read a registration's address (None: no port given)."""
    from controller.sources.registration import host_and_port
    host, port, _problem = host_and_port(text, 0, "--address", "port")
    return host, port or None


def _ports_refused(metrics_port: int | None, address: str, liveness: str | None) -> str | None:
    """Why the metrics endpoint cannot listen, said before kopf starts (whose liveness endpoint
    would otherwise fail on a port taken, with a traceback, after the operator began)."""
    import socket
    from urllib.parse import urlsplit
    if not metrics_port:
        return None
    try:
        probe_port = urlsplit(liveness).port if liveness else None
    except ValueError:
        probe_port = None
    if probe_port == metrics_port:
        return f"the metrics port {metrics_port} is also the --liveness endpoint's port"
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, metrics_port))
        except OSError as error:
            return f"cannot listen on {address}:{metrics_port} for metrics: {error.strerror}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in (None, "run"):
        return run_operator(args)
    try:
        return args.handler(args)
    except (UsageError, AgentUsageError, RingError, ringfile.RingFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RingFormatError as error:  # (read by the ring client: a file that is no ring)
        print(f"error: not a ring: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `... | head`: the reader had enough
        # What is left in stdout's buffer goes nowhere (flushed at exit, it would fail again).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
