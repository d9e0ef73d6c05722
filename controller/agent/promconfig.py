"""This member's Prometheus configuration: the user's base file with the member's relabel rules
appended to the scrape jobs that split their targets. Pure: text in, text out.

The rules are the ones the operator renders into ``relabel.<key>.yaml`` (``render.relabel_rules``),
computed here from ring.json for this member, so they hold for any ring version the agent applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from ..render import relabel_rules


class PrometheusConfigError(ValueError):
    """The base configuration cannot take the rules; the message says why."""


def render(base: str, shards: Sequence[int], modulus: int, jobs: Sequence[str] = ()) -> str:
    """The base configuration with the rules keeping ``shards`` (of ``modulus``) appended to the
    ``relabel_configs`` of each job in ``jobs`` (every scrape job when empty)."""
    try:
        config = yaml.safe_load(base)
    except yaml.YAMLError as error:
        raise PrometheusConfigError(f"the base configuration is not YAML: {error}") from None
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
