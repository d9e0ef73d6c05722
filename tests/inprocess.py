"""The operator run by kopf in a thread of the test process, exactly as ``cli.run_operator`` runs
it, with its memo (the ``Operator``: workers, adapters, source registry) at hand for assertions."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import kopf

import controller.operator.handlers  # noqa: F401 - registers the handlers with kopf
from controller.operator.handlers import Operator
from controller.operator.settings import OperatorConfig


class InProcessOperator:
    def __init__(self, namespaces: Sequence[str] = (), config: OperatorConfig | None = None):
        self.namespaces = list(namespaces)
        self.memo = Operator(config or OperatorConfig.from_env())
        self._stop, self._ready = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            kopf.run(clusterwide=not self.namespaces, namespaces=self.namespaces,
                     standalone=True, memo=self.memo, stop_flag=self._stop,
                     ready_flag=self._ready)
        except BaseException as error:  # noqa: BLE001 - reported by stop()
            self.error = error

    def start(self) -> Operator:
        self._thread = threading.Thread(target=self._run, name="operator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while self.memo.sources is None and time.monotonic() < deadline:
            if self.error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the operator did not start: {self.error!r}")
            time.sleep(0.02)
        if self.memo.sources is None:
            raise RuntimeError("the operator did not start within 30 s")
        return self.memo

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
            assert not self._thread.is_alive(), "the operator did not stop within 60 s"
        if self.error is not None:
            raise self.error

    def __enter__(self) -> Operator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
