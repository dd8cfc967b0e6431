"""Runner processes: one long-lived child per compared system.

Each system runs in its own child of the benchmark process, so everything it starts (Ray's
processes and actors, DataLoader workers, pool processes) is a separate subtree whose CPU and
memory can be read apart (:mod:`pipelines._bench_monitor`), and a system's start-up cost that
is paid once per process (starting Ray, importing torch) is paid once, not per round. Runners
are started with ``spawn``: a clean interpreter, so the DataLoader's forked workers never
inherit Ray's threads, and Ray never shares a process with the baseline.
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
from multiprocessing.connection import Connection
from typing import Any, Self


def serve(conn: Connection) -> None:
    """The runner's loop: call ``pipelines._bench_systems.<name>(**kwargs)`` per message."""
    from pipelines import _bench_systems

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the benchmark process is gone: stop, do not linger
            break
        if message is None:
            break
        name, kwargs = message
        try:
            reply = ("ok", getattr(_bench_systems, name)(**kwargs))
        except Exception:  # noqa: BLE001  sent back and raised in the driver, with the traceback
            reply = ("error", traceback.format_exc())
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            break
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except ImportError:
        pass


class RunnerError(RuntimeError):
    """A system failed inside its runner; the message holds the runner's traceback."""


class Runner:
    """A child process that runs one system's measurements on request."""

    def __init__(self, name: str) -> None:
        ctx = mp.get_context("spawn")
        self.name = name
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=serve, args=(child,), name=f"bench-{name}")
        self._proc.start()
        child.close()

    @property
    def pid(self) -> int:
        if self._proc.pid is None:
            raise RuntimeError(f"runner {self.name} was not started")
        return self._proc.pid

    def call(self, name: str, **kwargs: Any) -> Any:
        """Run ``_bench_systems.<name>(**kwargs)`` in the runner and return its result."""
        self._conn.send((name, kwargs))
        status, value = self._conn.recv()
        if status != "ok":
            raise RunnerError(f"{self.name}: {name} failed in the runner:\n{value}")
        return value

    def close(self, timeout_s: float = 60.0) -> None:
        """Ask the runner to stop (it shuts Ray down), then make sure it has."""
        try:
            self._conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._proc.join(timeout_s)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
