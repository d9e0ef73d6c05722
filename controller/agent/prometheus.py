"""This member's Prometheus configuration: rendered from the ring (the user's base with this
member's relabel rules), validated by promtool, swapped in; and, after a reload, whether
Prometheus' targets follow the new rules (make-before-break counts only a verified reload)."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.agent import promconfig
from controller.client import Ring

log = logging.getLogger("shardring.agent")
# Prometheus re-applies relabeling to its targets a while after a reload (its discovery ticks,
# up to ~5 s when updates came recently); the acknowledgement waits for that, this long at most.
APPLY_WAIT, APPLY_POLL = 15.0, 0.1
# A Prometheus that lists no target of the split jobs may just not have discovered them yet (it
# started a moment ago): an empty list is taken as the truth only after this long.
EMPTY_GRACE = 5.0


@dataclass(frozen=True)
class PrometheusOutput:
    base: Path  # the user's configuration, without this member's rules
    output: Path  # what Prometheus reads (--config.file)
    jobs: tuple[str, ...] = ()  # the scrape jobs to split; empty: all of them
    promtool: str | None = None  # validates the rendered file before it replaces the old one
    # Prometheus' HTTP API: after a reload, acknowledge only once its targets follow the rules.
    api: str | None = None


class PrometheusRenderer:
    def __init__(self, output: PrometheusOutput, *, targets: Callable[[str], dict[str, Any] | None],
                 clock: Callable[[], float], sleep: Callable[[float], None]):
        self.output, self.targets, self.clock, self.sleep = output, targets, clock, sleep
        self.rules: tuple[list[int], int] | None = None  # the rendered shards and modulus

    def render(self, ring: Ring, member: str | None) -> bool:
        """Write this member's configuration if it changed; True when it did."""
        shards = ring.shards_of(member) if member else []
        changed = self.write(promconfig.render(self.output.base.read_text(), shards,
                                               ring.shards, self.output.jobs))
        # (Only once written: a reload still pending checks Prometheus against these.)
        self.rules = (shards, ring.shards)
        if changed:
            log.info("ring version %d rendered into %s (%s)", ring.version, self.output.output,
                     shares(ring, member))
        return changed

    def keep_nothing(self) -> None:
        """No ring yet: a configuration that scrapes none of the split jobs' targets, so the
        workload can start (and become the member that makes the first ring)."""
        if not self.output.output.exists():
            self.write(promconfig.render(self.output.base.read_text(), [], 1, self.output.jobs))
            self.rules = ([], 1)
            log.info("no ring yet: rendered %s, which keeps none of the split jobs' targets",
                     self.output.output)

    def write(self, text: str) -> bool:
        """Validate and swap in the rendered configuration; False when it is already that."""
        output = self.output
        if output.output.exists() and output.output.read_text() == text:
            return False
        staging = output.output.with_name(f".{output.output.name}.new")
        staging.write_text(text)
        if output.promtool:
            checked = subprocess.run([output.promtool, "check", "config", "--syntax-only",
                                      str(staging)], capture_output=True, text=True, check=False)
            if checked.returncode != 0:
                staging.unlink(missing_ok=True)
                detail = (checked.stderr or checked.stdout).strip().splitlines()[-1:]
                raise ValueError(f"promtool refused the rendered configuration: "
                                 f"{' '.join(detail)}")
        os.replace(staging, output.output)
        return True

    def discovered(self) -> int:
        """How many targets of the split jobs Prometheus knows now (0 without its API)."""
        if self.output.api is None:
            return 0
        return promconfig.discovered(self.targets(self.output.api), self.output.jobs)

    def await_applied(self, expect_targets: bool) -> bool:
        """Make-before-break needs the workload to scrape by the new rules before this member
        acknowledges them (so the previous owners let go only then). False: it did not show
        it does in time (acknowledged as "unverified", which a handover does not count)."""
        if self.output.api is None or self.rules is None:
            return True
        shards, modulus = self.rules
        started = self.clock()
        deadline = started + APPLY_WAIT
        while True:
            found = self.targets(self.output.api)
            expect = expect_targets or self.clock() < started + EMPTY_GRACE
            if found is not None and promconfig.applied(found, shards, modulus,
                                                        self.output.jobs, expect):
                return True
            if self.clock() >= deadline:
                log.warning("Prometheus' targets did not follow the new rules within %.0f s "
                            "(do the base configuration's own rules rewrite __address__ or drop "
                            "targets?); acknowledged as unverified", APPLY_WAIT)
                return False
            self.sleep(APPLY_POLL)


def shares(ring: Ring, member: str | None) -> str:
    """What this member serves of the ring, for the log."""
    if not member:
        return f"not a member: keeps none of its {ring.shards} shards"
    handed = len(ring.handover.get(member, ()))
    return f"member {member} keeps {len(ring.shards_of(member))} of {ring.shards} shards" + (
        f", {handed} of them until their new owners acknowledge" if handed else "")
