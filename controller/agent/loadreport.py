"""Where the agent measures the load of its member's shards (issue #26), for its load report.

- ``--load-url``: the workload's own metrics endpoint (Prometheus' text format), a gauge
  ``shardring_shard_load{shard="17"} 1234`` per shard it serves (the clients' helpers write it),
  or a ``file://`` URL of a file in that format the workload writes;
- ``--load-from-prometheus``: in Prometheus mode, Prometheus' own ``scrape_samples_scraped`` per
  target, summed into the target's shard with the ring's hashmod of its address (``instance``),
  so a sharded Prometheus needs no setup. A shard with a target not scraped yet (just taken
  over) is *unsettled*: left out of the report, so that it does not read as empty while its
  previous owner, still scraping it during the handover, reports what it carries.
A source that does not answer leaves the last report in place.
"""

from __future__ import annotations

import http.client
import json
import re
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from controller.client import shard_of

METRIC = "shardring_shard_load"
_SAMPLE = re.compile(r'^' + METRIC + r'\{([^}]*)\}\s+(\S+)')
_SHARD = re.compile(r'(?:^|,)\s*shard="(\d+)"')


class LoadUnavailable(Exception):
    """The source did not answer, or answered nothing usable."""


@dataclass(frozen=True)
class Measurement:
    loads: dict[int, float]  # per shard; a shard served and not listed carries nothing
    unsettled: frozenset[int] = field(default_factory=frozenset)  # not measured yet: no report


def from_exposition(text: str) -> dict[int, float]:
    """Per-shard loads from Prometheus' text format (other metrics and bad lines ignored; the
    same shard twice: summed)."""
    found: dict[int, float] = {}
    for line in text.splitlines():
        sample = _SAMPLE.match(line)
        if not sample:
            continue
        shard = _SHARD.search(sample.group(1))
        try:
            value = float(sample.group(2))
        except ValueError:
            continue
        if shard and value >= 0 and value != float("inf"):
            found[int(shard.group(1))] = found.get(int(shard.group(1)), 0.0) + value
    return found


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 - the user's URL
            return str(reply.read(8 << 20).decode("utf-8", "replace"))
    except (OSError, ValueError, http.client.HTTPException) as error:  # (not HTTP at all, too)
        raise LoadUnavailable(f"{url}: {error}") from None


def workload(url: str) -> Callable[[int], Measurement]:
    """Loads the workload exposes; ``shards`` (the ring's K) bounds what is believed."""
    def measure(shards: int) -> Measurement:
        return Measurement({s: v for s, v in from_exposition(_get(url)).items() if s < shards})
    return measure


def prometheus(api: str) -> Callable[[int], Measurement]:
    """Samples per scrape of each target of this Prometheus, summed per shard."""
    query = urllib.parse.urlencode({"query": "scrape_samples_scraped"})
    base = api.rstrip("/")

    def measure(shards: int) -> Measurement:
        try:
            answer = json.loads(_get(f"{base}/api/v1/query?{query}"))
            series = list(answer["data"]["result"])
            targets = json.loads(_get(f"{base}/api/v1/targets?state=active"))
            active = list(targets["data"]["activeTargets"])
        except (ValueError, KeyError, TypeError):
            raise LoadUnavailable(f"{api}: not a Prometheus query answer") from None
        unsettled = set()
        for target in active:
            try:
                if target["health"] == "unknown":  # (never scraped yet)
                    unsettled.add(shard_of(str(target["labels"]["instance"]), shards))
            except (KeyError, TypeError):
                continue
        found: dict[int, float] = {}
        for item in series:
            try:
                target, value = str(item["metric"]["instance"]), float(item["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            if not value >= 0 or value == float("inf"):
                continue
            shard = shard_of(target, shards)
            found[shard] = found.get(shard, 0.0) + value
        return Measurement(found, frozenset(unsettled))
    return measure
