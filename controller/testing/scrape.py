"""Read a Prometheus text endpoint (tests and benchmarks check the operator's metrics with it)."""

from __future__ import annotations

import urllib.request


def scrape(url: str, timeout: float = 5.0) -> dict[str, float]:
    """``{series: value}``, series written as in the exposition (name plus labels)."""
    text = urllib.request.urlopen(url, timeout=timeout).read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values
