"""What the kopf wiring (controller/operator/handlers.py) relies on, checked on kopf's own
registry: a kopf upgrade or a new handler that breaks an assumption fails here."""

from __future__ import annotations

import kopf

from controller.operator import handlers


def test_no_handler_compares_essences_so_none_is_built():
    """NoEssence builds no essence: right only while no handler detects changes (on.create,
    on.update, on.resume, on.field...). One that needs them must bring the essence back."""
    registry = kopf.get_default_registry()
    assert registry._changing._handlers == []
    assert registry._watching._handlers and registry._spawning._handlers  # it does see ours
    body = kopf.Body({"metadata": {"name": "r", "annotations": {"a": "b"}}, "spec": {"x": 1}})
    assert handlers.NoEssence(prefix="shardring.io").build(body=body) == {}


def test_daemons_guard_their_rings_with_no_finalizer():
    registry = kopf.get_default_registry()
    assert [h.requires_finalizer for h in registry._spawning._handlers] == [False]
