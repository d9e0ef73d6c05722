"""This member's Prometheus configuration: the user's base file with the member's relabel rules
appended to the scrape jobs that split their targets. Pure: text in, text out.

The rules are the ones the operator renders into ``relabel.<key>.yaml`` (``render.relabel_rules``),
computed here from ring.json for this member, so they hold for any ring version the agent applies.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import yaml

from controller.core.render import relabel_rules
from controller.core.ring import shard_of


class PrometheusConfigError(ValueError):
    """The base configuration cannot take the rules; the message says why."""


def render(base: str, shards: Sequence[int], modulus: int, jobs: Sequence[str] = ()) -> str:
    """The base configuration with the rules keeping ``shards`` (of ``modulus``) appended to the
    ``relabel_configs`` of each job in ``jobs`` (every scrape job when empty)."""
    try:
        config = yaml.safe_load(base)
    except yaml.YAMLError as error:
        # Only where: the message would quote the line, and it may hold a password.
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise PrometheusConfigError(f"the base configuration is not YAML{where}") from None
    if not isinstance(config, dict) or not isinstance(config.get("scrape_configs"), list):
        raise PrometheusConfigError("the base configuration has no scrape_configs list")
    scrape: list[Any] = config["scrape_configs"]
    names = [job.get("job_name") for job in scrape if isinstance(job, dict)]
    missing = sorted(set(jobs) - set(names))
    if missing:
        raise PrometheusConfigError(f"no scrape job named {', '.join(missing)} in the base "
                                    f"configuration (it has: {', '.join(map(str, names))})")
    rules = yaml.safe_load(relabel_rules(list(shards), modulus))
    for job in scrape:
        if isinstance(job, dict) and (not jobs or job.get("job_name") in jobs):
            existing = job.get("relabel_configs") or []
            if not isinstance(existing, list):
                raise PrometheusConfigError(
                    f"relabel_configs of job {job.get('job_name')} is not a list")
            job["relabel_configs"] = [*existing, *rules]
    header = "# Rendered by the shardring agent from the base configuration; do not edit.\n"
    return header + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def applied(targets: Mapping[str, Any], shards: Collection[int], modulus: int,
            jobs: Sequence[str] = (), expect_targets: bool = False) -> bool:
    """Whether Prometheus scrapes by these rules yet, from its ``/api/v1/targets?state=any``
    reply: each discovered target of the split jobs is active exactly when its shard is one of
    ``shards`` (a reload returns before Prometheus re-applies relabeling to its targets).

    Judged on each target's discovered ``__address__``: where the base configuration's own rules
    rewrite the address or drop targets, this may never hold (the agent waits a bounded time).
    ``expect_targets``: Prometheus knew targets of these jobs before the reload, so a reply
    listing none is a scrape pool being rebuilt, not an empty job."""
    data = targets.get("data") or {}
    wanted = set(shards)

    def split(target: Mapping[str, Any]) -> tuple[bool, bool]:
        labels = target.get("discoveredLabels") or {}
        job = target.get("scrapePool") or labels.get("job", "")
        address = labels.get("__address__")
        if address is None or (jobs and job not in jobs):
            return False, False
        return True, shard_of(address, modulus) in wanted

    seen = 0
    for target in data.get("activeTargets") or []:
        counted, mine = split(target)
        seen += counted
        if counted and not mine:
            return False
    for target in data.get("droppedTargets") or []:
        counted, mine = split(target)
        seen += counted
        if counted and mine:
            return False
    return seen > 0 or not expect_targets


def discovered(targets: Mapping[str, Any] | None, jobs: Sequence[str] = ()) -> int:
    """How many targets of the split jobs Prometheus knows (active or dropped)."""
    data = (targets or {}).get("data") or {}
    return sum(1 for target in [*(data.get("activeTargets") or []),
                                *(data.get("droppedTargets") or [])]
               if not jobs or (target.get("scrapePool") or
                               (target.get("discoveredLabels") or {}).get("job")) in jobs)
