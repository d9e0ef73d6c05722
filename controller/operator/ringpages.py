"""Serving the ring page (controller/core/ringpage.py) from what the workers hold: each ring's
last seen status and its published ring (kept parsed). Runs on the metrics endpoint's threads:
it only reads the workers' current objects (replaced, never changed in place)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import parse_qs, unquote

from controller.core import ringpage
from controller.operator.worker import RingWorker


def view(worker: RingWorker) -> ringpage.RingView:
    status = (worker.body or {}).get("status") or {}
    return ringpage.RingView(worker.namespace, worker.name, status,
                             worker.memory.last_published_ring)


def pages(workers: Callable[[], Mapping[tuple[str, str], RingWorker]]
          ) -> Callable[[str, str], tuple[int, str]]:
    """(path, query) -> (status, HTML): ``/`` and ``/rings`` (``?namespace=`` filters),
    ``/rings/<namespace>/<name>``."""
    def respond(path: str, query: str) -> tuple[int, str]:
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        if parts in ([], ["rings"]):
            namespace = (parse_qs(query).get("namespace") or [""])[0].strip() or None
            return 200, ringpage.index([view(w) for w in
                                        list(workers().values()) if w.serving], namespace)
        if len(parts) == 3 and parts[0] == "rings":
            worker = workers().get((parts[1], parts[2]))
            if worker is not None and worker.serving and worker.body is not None:
                return 200, ringpage.ring_page(view(worker))
        return 404, "<!DOCTYPE html><title>Not found</title><p>No such page or ring. " \
                    "<a href=\"/rings\">All rings</a></p>"
    return respond
