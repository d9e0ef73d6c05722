"""A served namespace the API server refuses to the operator: said once, asked again, the others
served meanwhile.

In namespaced mode the operator serves names and patterns (``SHARDRING_NAMESPACES``), and each
namespace needs its RoleBinding. kopf watches every resource in every served namespace; a watch
the API server refuses (403) it retries for about a minute and then stops the whole operator,
and until every namespace's ConfigMaps are listed (the index) it hands no ring to any worker.
So each of kopf's per-namespace watches starts only once the operator may list and watch the
resource there (``Kube.may_list``: a list of at most one object, and a SelfSubjectAccessReview
for the watch): while refused, the namespace is said once, the index does not wait for it, and it is
asked again every ``RECHECK`` seconds; a watch refused later (its RoleBinding removed) goes
back to waiting the same way. A watch whose resource is not found (its CRD deleted under the
operator) would stop kopf too, when it fails before kopf sees the CRD go: it waits instead, and
kopf ends it (or, the resource still there, it is watched again).

kopf has no public hook for this: the wrap replaces its watcher function while the operator
runs (``install``), and does nothing if kopf's internals are not as expected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("shardring")
RECHECK = 10.0

# Whether the operator may list and watch (group, version, plural) in a namespace.
MayList = Callable[[str, str, str, str], Awaitable[bool]]


class Refusals:
    def __init__(self, may_list: MayList, recheck: float = RECHECK,
                 ended: Callable[[str | None, str], None] | None = None) -> None:
        self._may_list = may_list
        self._recheck = recheck
        # Told (namespace, plural) when a watch finds its resource gone (the CRD deleted: no
        # deletion event comes for its objects), or kopf ends it (the same, the namespace no
        # longer served, or exit).
        self._ended = ended
        self.refused: dict[str, set[str]] = {}  # namespace -> plurals refused there

    def wrap(self, watcher: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        async def watch(*, namespace: str | None, resource: Any, **kwargs: Any) -> None:
            try:
                await self._watch(watcher, namespace, resource, kwargs)
            finally:
                if self._ended is not None:
                    self._ended(namespace, resource.plural)
        return watch

    async def _watch(self, watcher: Callable[..., Awaitable[None]], namespace: str | None,
                     resource: Any, kwargs: dict[str, Any]) -> None:
        while True:
            if namespace is not None:
                await self._allowed(namespace, resource, kwargs)
            try:
                return await watcher(namespace=namespace, resource=resource, **kwargs)
            except Exception as error:
                status = getattr(error, "status", None)
                if status == 403 and namespace is not None:
                    self._refuse(namespace, resource.plural)  # its RoleBinding went away
                    await asyncio.sleep(self._recheck)  # (whatever the pre-check says)
                elif status == 404:
                    # The resource itself is gone (its CRD deleted): kopf stops this watch
                    # once it sees the CRD go (if ever: it may take minutes), and would stop
                    # the operator if the watch failed first. Should the resource still be
                    # there, it is watched again. Its objects are said gone at once.
                    log.debug("%s: not found; watched again in %.0f s", resource.plural,
                              self._recheck)
                    if self._ended is not None:
                        self._ended(namespace, resource.plural)
                    await asyncio.sleep(self._recheck)
                else:
                    raise

    async def _allowed(self, namespace: str, resource: Any, kwargs: dict[str, Any]) -> None:
        """Returns once the operator may list the resource in the namespace."""
        while not await self._asked(namespace, resource):
            self._refuse(namespace, resource.plural)
            indexed, toggle = kwargs.get("operator_indexed"), kwargs.get("resource_indexed")
            if indexed is not None and toggle is not None:
                await indexed.drop_toggle(toggle)  # the other namespaces' rings go ahead
                kwargs["resource_indexed"] = None
            await asyncio.sleep(self._recheck)
        plurals = self.refused.get(namespace)
        if plurals is not None and resource.plural in plurals:
            plurals.discard(resource.plural)
            if not plurals:
                del self.refused[namespace]
                log.info("namespace %s: the operator is allowed there now; serving it", namespace)

    async def _asked(self, namespace: str, resource: Any) -> bool:
        try:
            return await self._may_list(resource.group, resource.version, resource.plural,
                                        namespace)
        except Exception:  # noqa: BLE001 - not a refusal (an outage): kopf's watch retries it
            return True

    def _refuse(self, namespace: str, plural: str) -> None:
        if namespace not in self.refused:
            log.warning("namespace %s is to be served, but the API server refuses the operator "
                        "there (403 listing %s): it needs a RoleBinding to the ClusterRole "
                        "shardring-operator-namespace in that namespace (see "
                        "examples/namespaced-tenants); the other namespaces are served, and this "
                        "one once it is allowed (asked again every %.0f s)",
                        namespace, plural, self._recheck)
        self.refused.setdefault(namespace, set()).add(plural)


# The operators of this process (one, but for the test suite's in-process ones), by their kopf
# settings' identity: each watch runs under its own operator's Refusals, so that one operator's
# watches ending say nothing to another's rings.
_OPERATORS: dict[int, Refusals] = {}


def install(refusals: Refusals, settings: Any) -> Callable[[], None]:
    """Wrap kopf's per-namespace watches of the operator whose settings these are; returns
    what undoes it (nothing, if kopf's internals are not as expected: then a refused namespace
    is kopf's to handle, as before)."""
    try:
        from kopf._core.reactor import queueing
    except ImportError:
        return lambda: None
    original = getattr(queueing, "watcher", None)
    if original is None:
        return lambda: None
    if not getattr(original, "wrapped_by_shardring", False):
        async def watch(*, settings: Any = None, **kwargs: Any) -> None:
            found = _OPERATORS.get(id(settings))
            run = original if found is None else found.wrap(original)
            await run(settings=settings, **kwargs)
        watch.wrapped_by_shardring = True  # type: ignore[attr-defined]
        watch.original = original  # type: ignore[attr-defined]
        queueing.watcher = watch
    _OPERATORS[id(settings)] = refusals

    def undo() -> None:
        _OPERATORS.pop(id(settings), None)
        current = queueing.watcher
        if not _OPERATORS and getattr(current, "wrapped_by_shardring", False):
            queueing.watcher = current.original  # type: ignore[attr-defined]
    return undo
