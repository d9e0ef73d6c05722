"""The functional core: pure functions and frozen values, no I/O. From a ring's spec, its
source's instances and what it published before, it decides the next ring, its ConfigMap and its
status (``planner.plan_pass``); the ring engine (``ring``) assigns shards."""
