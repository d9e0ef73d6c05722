"""The operator's shell: kopf's handlers (``handlers``), one worker per ring that gathers, plans
and carries out (``worker``), the writes (``publish``) and the operator's settings."""
