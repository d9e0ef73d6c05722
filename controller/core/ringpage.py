"""The ring page: every ring at a glance, and one page per ring (its members, their state, shards
and ownership, the last change, the shard table). Pure: HTML from what the operator already holds
(each ring's status and its published ring), server-rendered, no script. Only what ``kubectl get
shardring -o yaml`` and the ConfigMap already show is on it: nothing secret."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote

from controller.core import ringfile
from controller.core.render import member_shards

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.good{color:#176f2c}.bad{color:#b3261e}.Unknown{color:#8a6d00}
code{font-size:0.9em}
"""


@dataclass(frozen=True)
class RingView:
    """One ring as the page shows it: its status, and its published ring when known."""

    namespace: str
    name: str
    status: Mapping[str, Any]
    published: ringfile.RingFile | None = None


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{escape(title)}"
            f"</title><style>{_STYLE}</style></head><body>{body}</body></html>")


# Conditions whose True is the unusual state (kstatus' abnormal-true, and Degraded).
_ABNORMAL = frozenset({"Degraded", "Stalled", "Reconciling"})


def _look(kind: str, value: str) -> str:
    """The CSS class of a condition's status: good, bad or Unknown."""
    if value not in ("True", "False"):
        return "Unknown"
    return "good" if (value == "True") != (kind in _ABNORMAL) else "bad"


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


def _cell_condition(status: Mapping[str, Any], kind: str) -> str:
    found = _condition(status, kind)
    value = str(found.get("status", ""))
    return (f"<td class=\"{_look(kind, value)}\" "
            f"title=\"{escape(str(found.get('message', '')))}\">"
            f"{escape(value)} {escape(str(found.get('reason', '')))}</td>")


def index(rings: Iterable[RingView], namespace: str | None = None) -> str:
    """Every ring (of ``namespace``, when given), sorted by namespace and name."""
    shown = sorted((r for r in rings if namespace is None or r.namespace == namespace),
                   key=lambda r: (r.namespace, r.name))
    rows = []
    for ring in shown:
        status = ring.status
        convergence = status.get("convergence") or {}
        applied = f"{convergence.get('applied', '')}/{convergence.get('members', '')}" \
            if convergence else ""
        link = f"rings/{quote(ring.namespace)}/{quote(ring.name)}"
        rows.append(
            f"<tr><td>{escape(ring.namespace)}</td><td><a href=\"{escape(link)}\">"
            f"{escape(ring.name)}</a></td><td>{escape(str(status.get('source', '')))}</td>"
            f"<td class=\"n\">{escape(str(status.get('members', '')))}</td>"
            f"<td class=\"n\">{escape(str(status.get('shards', '')))}</td>"
            f"<td class=\"n\">{escape(str(status.get('ringVersion', '')))}</td>"
            f"{_cell_condition(status, 'Ready')}{_cell_condition(status, 'Converged')}"
            f"<td class=\"n\">{escape(applied)}</td></tr>")
    title = "Shard rings" + (f" in {namespace}" if namespace else "")
    form = ("<form method=\"get\" action=\"rings\"><label>Namespace <input name=\"namespace\" "
            f"value=\"{escape(namespace or '')}\"></label> <button>Filter</button></form>")
    table = ("<table><tr><th>Namespace</th><th>Ring</th><th>Source</th><th>Members</th>"
             "<th>Shards</th><th>Version</th><th>Ready</th><th>Converged</th><th>Applied</th>"
             "</tr>" + "".join(rows) + "</table>")
    count = f"{len(shown)} ring{'' if len(shown) == 1 else 's'}"
    return _page(title, f"<h1>{escape(title)}</h1>{form}<p id=\"count\">{count}</p>"
                        f"{table}")


def _ranges(shards: Iterable[int]) -> str:
    """0-3, 7, 9-10: a member's shards, short."""
    parts: list[str] = []
    start = previous = None
    for shard in shards:
        if previous is not None and shard == previous + 1:
            previous = shard
            continue
        if start is not None:
            parts.append(f"{start}-{previous}" if previous != start else str(start))
        start = previous = shard
    if start is not None:
        parts.append(f"{start}-{previous}" if previous != start else str(start))
    return ", ".join(parts)


def ring_page(view: RingView) -> str:
    """One ring: its conditions, members (zone, weight, state, shards, ownership) and last
    change, and the shard table as each member's ranges."""
    status, ring = view.status, view.published
    title = f"{view.namespace}/{view.name}"
    conditions = "".join(
        f"<tr><td>{escape(str(c.get('type')))}</td>"
        f"<td class=\"{_look(str(c.get('type')), str(c.get('status')))}\">"
        f"{escape(str(c.get('status')))}</td><td>{escape(str(c.get('reason', '')))}</td>"
        f"<td>{escape(str(c.get('message', '')))}</td></tr>"
        for c in status.get("conditions") or [])
    body = [f"<h1>{escape(title)}</h1><p><a href=\"../../rings\">all rings</a> · source "
            f"<code>{escape(str(status.get('source', '')))}</code> · ConfigMap "
            f"<code>{escape(str(status.get('configMapName', '')))}</code></p>",
            "<h2>Conditions</h2><table><tr><th>Condition</th><th>Status</th><th>Reason</th>"
            f"<th>Message</th></tr>{conditions}</table>"]
    change = status.get("lastChange")
    if change:
        body.append(
            "<h2>Last change</h2><table id=\"last-change\"><tr><th>Time</th><th>Added</th>"
            "<th>Removed</th><th>Moved shards</th><th>Joined</th><th>Left</th></tr>"
            f"<tr><td>{escape(str(change.get('time', '')))}</td>"
            f"<td class=\"n\">{escape(str(change.get('added', '')))}</td>"
            f"<td class=\"n\">{escape(str(change.get('removed', '')))}</td>"
            f"<td class=\"n\">{escape(str(change.get('movedShards', '')))}</td>"
            f"<td>{escape(', '.join(change.get('joined') or []))}</td>"
            f"<td>{escape(', '.join(change.get('left') or []))}</td></tr></table>")
    if ring is None:
        body.append("<p>No ring is published yet.</p>")
        return _page(title, "".join(body))
    assignment = ring.assignment
    owned = member_shards(ring)
    total = assignment.shards * assignment.spec.replication
    lagging = set((status.get("convergence") or {}).get("lagging") or [])
    handing = set(ring.handover)
    owners = assignment.owners if ring.handover else ()
    receiving = {owner for member, shards in ring.handover.items() for shard in shards
                 for owner in owners[shard] if owner != member}
    # (id, zone, weight, state) of every listed member: owners, then those draining (owning
    # nothing, serving what they still hand over).
    listed = [(m.id, m.zone or "", f"{m.weight:g}", ", ".join(name for name, on in (
        ("handing over", m.id in handing), ("receiving", m.id in receiving),
        ("lagging acknowledgement", m.id in lagging)) if on) or "active")
        for m in assignment.members]
    listed += [(d, "", "", "draining" + (", handing over" if d in handing else ""))
               for d in ring.draining]
    rows = []
    for member_id, zone, weight, state in listed:
        shards = owned.get(member_id, ())
        endpoint = ring.endpoints.get(member_id)
        rows.append(
            f"<tr data-member=\"{escape(member_id)}\"><td>{escape(member_id)}</td>"
            f"<td>{escape(f'{endpoint.address}:{endpoint.port}' if endpoint else '')}</td>"
            f"<td>{escape(zone)}</td><td class=\"n\">{weight}</td>"
            f"<td>{escape(state)}</td><td class=\"n shards\">{len(shards)}</td>"
            f"<td class=\"n\">{100 * len(shards) / total if total else 0:.2f}%</td></tr>")
    body.append(
        f"<h2>Members</h2><p>ring version <span id=\"version\">{ring.version}</span>, "
        f"<span id=\"shards\">{assignment.shards}</span> shards × "
        f"{assignment.spec.replication}, {escape(assignment.spec.algorithm.value)}, "
        f"<code>{escape(ring.hash)}</code></p>"
        "<table id=\"members\"><tr><th>Member</th><th>Address</th><th>Zone</th><th>Weight</th>"
        "<th>State</th><th>Shards</th><th>Ownership</th></tr>" + "".join(rows) + "</table>")
    table = "".join(f"<tr><td>{escape(member_id)}</td><td><code>"
                    f"{escape(_ranges(owned.get(member_id, ())))}</code></td></tr>"
                    for member_id, *_ in listed)
    body.append("<h2>Shard table</h2><table id=\"shard-table\"><tr><th>Member</th>"
                f"<th>Shards</th></tr>{table}</table>")
    return _page(title, "".join(body))
