"""``python -m controller agent``: its options and start-up."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import socket
import threading
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class AgentUsageError(Exception):
    """A bad option: printed as one line, exit code 2."""


def add_parser(commands: Any) -> None:
    agent = commands.add_parser(
        "agent", help="follow one ring's ConfigMap for a workload: files, reload, acknowledgement",
        description="Follows one ring's ConfigMap through the Kubernetes API and, on each new "
                    "version, swaps its files into --dir (kubelet's layout), renders this "
                    "member's Prometheus configuration, reloads the workload and acknowledges "
                    "the version in a Lease.")
    agent.add_argument("--configmap", required=True, metavar="[NAMESPACE/]NAME",
                       help="the ring's ConfigMap; without a NAMESPACE: $POD_NAMESPACE, else "
                            "the service account's namespace (in a pod), else the current "
                            "kubeconfig context's namespace ($KUBECONFIG), else default")
    agent.add_argument("--dir", type=Path,
                       help="where the ConfigMap's files go (ring.json, member.<key>, ...); "
                            "default: ./<ConfigMap name>")
    who = agent.add_mutually_exclusive_group()
    who.add_argument("--member", default=os.environ.get("SHARDRING_MEMBER"),
                     help="this member's identity in the ring (or SHARDRING_MEMBER)")
    who.add_argument("--address", default=os.environ.get("POD_IP"),
                     help="the address this member registered (default: POD_IP); with --port, "
                          "finds the member in each ring version")
    agent.add_argument("--port", type=int, help="the port this member registered")
    agent.add_argument("--identity",
                       help="names this agent's acknowledgement Lease <configmap>.<identity> "
                            "(default: $HOSTNAME, which is the pod's name in a pod, else this "
                            "machine's host name)")
    agent.add_argument("--no-ack", action="store_true",
                       help="do not write an acknowledgement Lease")
    agent.add_argument("--prometheus-base", type=Path,
                       help="Prometheus configuration without this member's rules")
    agent.add_argument("--prometheus-config", type=Path,
                       help="where the rendered configuration goes (Prometheus --config.file)")
    agent.add_argument("--prometheus-job", action="append", default=[], metavar="JOB",
                       help="a scrape job to split (repeatable; default: every job)")
    agent.add_argument("--promtool", help="validate each rendered configuration with this "
                                          "promtool before it replaces the last one")
    agent.add_argument("--prometheus-url",
                       help="Prometheus' address (default: --reload-url's, without /-/reload): "
                            "after a reload, acknowledge once its targets follow the new rules")
    reload = agent.add_mutually_exclusive_group()
    reload.add_argument("--reload-url", help="POST here after a change (e.g. "
                                             "http://localhost:9090/-/reload)")
    reload.add_argument("--reload-signal", metavar="SIGNAL",
                        help="send this signal (e.g. HUP) to the pid in --pid-file")
    reload.add_argument("--reload-command",
                        help="run this command after a change (split into words as a shell "
                             "would, but not run by one: for pipes or variables, "
                             "sh -c '...')")
    agent.add_argument("--pid-file", type=Path, help="for --reload-signal")
    load = agent.add_mutually_exclusive_group()
    load.add_argument("--load-url", metavar="URL",
                      help="report the load of this member's shards, read from the workload's "
                           "metrics here (a gauge shardring_shard_load{shard=\"N\"} per shard; "
                           "http://... or file:///path for a file the workload writes)")
    load.add_argument("--load-from-prometheus", action="store_true",
                      help="report the load of this member's shards as Prometheus' own "
                           "scrape_samples_scraped per target (needs --prometheus-url or "
                           "--reload-url .../-/reload)")
    agent.add_argument("--load-interval", type=float, default=30.0, metavar="SECONDS",
                       help="how often the load is measured (default: 30)")
    agent.add_argument("--metrics-port", type=int, help="serve the agent's metrics here")
    agent.add_argument("--metrics-address", default="0.0.0.0")
    agent.set_defaults(handler=run)


def config_from(args: argparse.Namespace) -> Any:
    from controller.agent.reload import Command, HttpPost, Reload, Signal, parse_signal
    from controller.agent.run import AgentConfig, PrometheusOutput
    from controller.core.acks import lease_name
    namespace, _, name = args.configmap.rpartition("/")
    namespace = namespace or default_namespace()
    prometheus = None
    # Prometheus' own API: given, or --reload-url's server (its /-/reload endpoint).
    api = args.prometheus_url or (args.reload_url.removesuffix("/-/reload")
                                  if args.reload_url and args.reload_url.endswith("/-/reload")
                                  else None)
    if bool(args.prometheus_base) != bool(args.prometheus_config):
        raise AgentUsageError("--prometheus-base and --prometheus-config go together")
    if args.prometheus_base:
        if not args.member and not args.address:
            raise AgentUsageError("rendering a member's configuration needs --member or "
                                  "--address (POD_IP)")
        prometheus = PrometheusOutput(args.prometheus_base, args.prometheus_config,
                                      tuple(args.prometheus_job), args.promtool, api)
    action: Reload | None = None
    if args.reload_url:
        action = HttpPost(args.reload_url)
    elif args.reload_signal:
        if not args.pid_file:
            raise AgentUsageError("--reload-signal needs --pid-file")
        try:
            action = Signal(parse_signal(args.reload_signal), args.pid_file)
        except ValueError as error:
            raise AgentUsageError(str(error)) from None
    elif args.reload_command:
        action = Command(tuple(shlex.split(args.reload_command)))
    lease = None
    if not args.no_ack:
        # An interactive shell does not export HOSTNAME; a pod's environment always has it.
        identity = args.identity or os.environ.get("HOSTNAME") or socket.gethostname()
        try:
            lease = lease_name(name, identity)
        except ValueError as error:
            raise AgentUsageError(f"{error}; give --identity, or --no-ack") from None
    from controller.agent import loadreport
    measure = None
    if args.load_url:
        measure = loadreport.workload(args.load_url)
    elif args.load_from_prometheus:
        if api is None:
            raise AgentUsageError("--load-from-prometheus needs --prometheus-url (or a "
                                  "--reload-url ending in /-/reload)")
        measure = loadreport.prometheus(api)
    if measure is not None and (lease is None or args.load_interval <= 0):
        raise AgentUsageError("a load report goes with the acknowledgement (not with --no-ack), "
                              "every --load-interval > 0 seconds")
    return AgentConfig(namespace=namespace, configmap=name, directory=args.dir or Path(name),
                       member=args.member, address=None if args.member else args.address,
                       port=args.port, lease=lease, prometheus=prometheus, reload=action,
                       load=measure, load_interval=args.load_interval)


def default_namespace() -> str:
    """What ``kubectl`` would use, in a pod or from a shell."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    if SERVICE_ACCOUNT_NAMESPACE.exists():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    from kubernetes import config as k8s_config
    try:
        # KUBECONFIG read now: the client library reads it once, at import time.
        _, active = k8s_config.list_kube_config_contexts(os.environ.get("KUBECONFIG"))
        return str(active["context"].get("namespace") or "default")
    except Exception:  # noqa: BLE001 - no usable kubeconfig: loading the client says why
        return "default"


def run(args: argparse.Namespace) -> int:
    from kubernetes import client as k8s

    from controller.agent import metrics
    from controller.agent.lease import LeaseWriter
    from controller.agent.run import Agent
    from controller.kube.api import new_api_client
    config = config_from(args)  # an AgentUsageError is printed by the command line
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from kubernetes.config import ConfigException
    try:
        api = new_api_client()
    except ConfigException as error:
        raise AgentUsageError(f"no Kubernetes API to follow the ring through ({error}); set "
                              f"KUBECONFIG, or run it in a pod") from None
    leases = LeaseWriter(k8s.CoordinationV1Api(api), config.namespace) if config.lease else None
    if args.metrics_port:
        metrics.serve(args.metrics_port, args.metrics_address)
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    Agent(config, leases).run(stop, k8s.CoreV1Api(api))
    return 0
