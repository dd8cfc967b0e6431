"""The decode stages as Ray Data callables: thin shells around plain decode code.

A row of the dataset is one *visit* of a video: ``sample_id``, ``video_id``, ``plans`` (the
pickled tuple of SamplePlans, one per task, all of the same visit), ``metas`` (the pickled
``{video_id: VideoMeta}`` of every video the plans read, so workers seek with the manifest's
keyframe index instead of probing) and ``decoded`` (the pickled list of :class:`Decoded`,
one per plan). Each stage fills its part of ``decoded``:
the video stage the clips, the audio stage the audio windows, the motion stage the fields.

A per-file problem (``CorruptMediaError``) never crashes a stage: the row keeps flowing
with ``error`` set and zero arrays of the planned shapes, so every rank still receives the
same number of rows, and the trainer masks it out and counts it.

Example: a batch of 4 rows where row 2's file is truncated -> rows 0, 1, 3 carry frames;
row 2 carries zeros, ``error="…/b.mp4: moov atom not found"``, ``error_kind="corrupt"``.

Two guards turn a file that hangs or kills the decoder into such a row:

- the :class:`Watchdog` gives each row ``DataConfig.sample_timeout_s``; a row still
  decoding then becomes ``error_kind="timeout"`` and the stage moves on. Example: a file
  on a stalled mount, timeout 60 s -> the batch returns after ~60 s with that row masked;
- under Ray, a run's :class:`~pipelines.quarantine.CrashLedger` counts the decodes a
  process death interrupted; a sample that killed its actor ``MAX_CRASHES`` times is not
  decoded again but masked with ``error_kind="crash"`` (see ``pipelines.quarantine``).
"""

from __future__ import annotations

import copy
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from pipelines.config import DataConfig, StageConfig
from pipelines.tasks.base import Decoded, SamplePlan
from pipelines.telemetry import Reporter
from workers.errors import CorruptMediaError, DecodeTimeoutError
from workers.meta import VideoMeta

Batch = dict[str, np.ndarray]
T = TypeVar("T")

# Abandoned decode threads an actor tolerates before it exits so Ray restarts it fresh
# (each holds an open file and a decoder; a few are harmless, hundreds are a leak).
MAX_STUCK_THREADS = 4
# Sent to an abandoned decode thread: a blocking read() returns EINTR, and FFmpeg then asks
# its interrupt callback (PyAV's read timeout, when the container was opened with one)
# whether to give up instead of reading again. SIGURG's default action is to do nothing.
KICK_SIGNAL = signal.SIGURG


class DecoderCrashError(CorruptMediaError):
    """The sample killed its decoder process too often; it is not decoded again."""

    kind = "crash"


class Watchdog:
    """Runs one decode at a time on a helper thread and stops waiting after ``timeout_s``.

    A read that hangs (a stalled network mount, a pipe that never delivers) blocks inside
    FFmpeg, where Python cannot raise; so the decode runs on its own thread, and past the
    deadline the caller gets :class:`DecodeTimeoutError` while the thread is left behind
    (a daemon; its result, if it ever comes, is dropped) and kicked with ``KICK_SIGNAL``.

    Example: ``Watchdog(2.0).run(lambda: r.frames([0, 1]), "/d/a.mp4")`` returns the frames,
    or after 2 s raises ``DecodeTimeoutError("/d/a.mp4: decode did not finish within 2 s
    (watchdog)")``. ``timeout_s <= 0`` runs ``fn`` inline, without a deadline.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.abandoned: list[threading.Thread] = []
        self.timeouts = 0
        self._can_kick = _install_kick_handler()

    def run(self, fn: Callable[[], T], uri: str) -> T:
        if self.timeout_s <= 0:
            return fn()
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = fn()
            except Exception as e:  # noqa: BLE001  raised again in the caller's thread below
                box["error"] = e

        thread = threading.Thread(target=target, name="clipstream-decode", daemon=True)
        thread.start()
        thread.join(self.timeout_s)
        if thread.is_alive():
            self.timeouts += 1
            self.abandoned.append(thread)
            self._kick(thread)
            raise DecodeTimeoutError(uri, f"decode did not finish within {self.timeout_s:g} s (watchdog)")
        if "error" in box:
            raise box["error"]
        if "value" not in box:
            raise RuntimeError(f"{uri}: the decode thread ended without a result")
        return box["value"]

    def stuck(self) -> int:
        """Abandoned threads still running (each kicked again)."""
        self.abandoned = [t for t in self.abandoned if t.is_alive()]
        for t in self.abandoned:
            self._kick(t)
        return len(self.abandoned)

    def _kick(self, thread: threading.Thread) -> None:
        if self._can_kick and thread.ident is not None:
            try:
                signal.pthread_kill(thread.ident, KICK_SIGNAL)
            except (ProcessLookupError, OSError):
                pass  # it ended meanwhile


def _install_kick_handler() -> bool:
    """A no-op Python handler for ``KICK_SIGNAL``, so that it interrupts system calls
    (only the main thread may install one; elsewhere the watchdog just abandons)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(KICK_SIGNAL) in (signal.SIG_DFL, signal.SIG_IGN, None):
        signal.signal(KICK_SIGNAL, lambda signum, frame: None)
    return True


def encode_row(plans: tuple[SamplePlan, ...], metas: dict[int, VideoMeta]) -> dict[str, Any]:
    """The initial row (driver side) of one visit."""
    return {
        "sample_id": plans[0].sample_id,
        "video_id": plans[0].video_id,
        "plans": pickle.dumps(plans, protocol=5),
        "metas": pickle.dumps(metas, protocol=5),
        "decoded": pickle.dumps([Decoded() for _ in plans], protocol=5),
        "error": "",
        "error_kind": "",
    }


class Stage:
    """Base of the decode stages. Subclasses implement :meth:`fill` (and may override
    :meth:`fill_batch` to decode many rows at once, as DALI does)."""

    name = "stage"

    def __init__(self, data: DataConfig, stage: StageConfig) -> None:
        self.data = data
        self.stage = stage
        self.busy_s = 0.0
        self.rows = 0
        self.metas: dict[int, VideoMeta] = {}  # of the row being filled
        self.watchdog = Watchdog(data.sample_timeout_s)
        self.pid = os.getpid()
        self.ledger: Any = _find_ledger()  # a Ray actor handle, or None
        if self.ledger is not None:
            self.ledger.register.remote(self.name, self.pid)
        self.reporter = Reporter("stage", self.name, sink=data.telemetry)

    def fill(self, plans: tuple[SamplePlan, ...], decoded: list[Decoded]) -> None:
        raise NotImplementedError

    def fill_zeros(self, plans: tuple[SamplePlan, ...], decoded: list[Decoded]) -> None:
        """Zero arrays of the planned shapes, for a row whose file failed."""

    def fill_batch(
        self, plans: list[tuple[SamplePlan, ...]], decoded: list[list[Decoded]], errors: list[str]
    ) -> list[CorruptMediaError | None]:
        """Fill every row that has no error yet; return the new error of each row (or None)."""
        out: list[CorruptMediaError | None] = []
        for p, d, err in zip(plans, decoded, errors):
            if err:
                out.append(None)
                continue
            try:
                self._fill_watched(p, d)
                out.append(None)
            except CorruptMediaError as e:
                out.append(e)
        return out

    def _fill_watched(self, plans: tuple[SamplePlan, ...], decoded: list[Decoded]) -> None:
        """:meth:`fill` under the watchdog. It fills copies, adopted only when it finishes
        in time, so a late abandoned thread can never write into a row already sent on."""
        copies = [copy.copy(d) for d in decoded]
        self.watchdog.run(lambda: self.fill(plans, copies), self._uri(plans))
        decoded[:] = copies

    def _uri(self, plans: tuple[SamplePlan, ...]) -> str:
        meta = self.metas.get(plans[0].video_id)
        if meta is not None:
            return meta.uri
        reads = [r for p in plans for r in p.reads()]
        return reads[0].uri if reads else f"video {plans[0].video_id}"

    def _fill_guarded(
        self, plans: list[tuple[SamplePlan, ...]], decoded: list[list[Decoded]], errors: list[str],
        sample_ids: list[int],
    ) -> list[CorruptMediaError | None]:
        """:meth:`fill_batch`, with every decode attempt recorded in the run's crash ledger.

        The batch is started as a whole; if some row was under a process death before, the
        ledger answers ``suspect`` and the rows go one at a time (each started, decoded and
        finished on its own), so the next death is charged to the row that caused it and a
        row past ``MAX_CRASHES`` is masked as :class:`DecoderCrashError` without decoding.
        """
        import ray

        from pipelines.quarantine import GO

        video_ids = [p[0].video_id for p in plans]
        todo = [i for i, e in enumerate(errors) if not e]
        mode, verdicts = ray.get(self.ledger.start_batch.remote(
            self.name, self.pid, [(sample_ids[i], video_ids[i]) for i in todo]))
        out: list[CorruptMediaError | None] = [None] * len(plans)
        skip = list(errors)
        for i, why in zip(todo, verdicts):
            if why:
                out[i] = DecoderCrashError(self._uri(plans[i]), why)
                skip[i] = why
        if mode == GO:
            new = self.fill_batch(plans, decoded, skip)
            self.ledger.finish.remote(self.name, self.pid, [sample_ids[i] for i in todo])
            return [o or n for o, n in zip(out, new)]
        for i in todo:
            if skip[i]:
                continue
            why = str(ray.get(self.ledger.start_row.remote(self.name, self.pid, sample_ids[i], video_ids[i])))
            if why:
                out[i] = DecoderCrashError(self._uri(plans[i]), why)
                continue
            (out[i],) = self.fill_batch([plans[i]], [decoded[i]], [""])
            ray.get(self.ledger.finish.remote(self.name, self.pid, [sample_ids[i]]))
        return out

    def _release_stuck(self) -> None:
        """Exit the actor process, so Ray restarts it, once too many decode threads hang in it.

        Only under a run's ledger (a Ray actor that Ray Data restarts and retries); the
        batch about to start has not begun, so the retry loses nothing.
        """
        if self.ledger is None or self.watchdog.stuck() < MAX_STUCK_THREADS:
            return
        print(f"{self.name} stage (pid {self.pid}): {MAX_STUCK_THREADS} decodes hang past the "
              f"watchdog; exiting so that Ray restarts this actor", file=sys.stderr, flush=True)
        os._exit(70)

    def __call__(self, batch: Batch) -> Batch:
        start = time.perf_counter()
        self._release_stuck()
        plans = [pickle.loads(b) for b in batch["plans"]]
        self.metas = {}
        for b in batch["metas"]:
            self.metas.update(pickle.loads(b))
        decoded = [pickle.loads(b) for b in batch["decoded"]]
        errors = [str(e) for e in batch["error"]]
        kinds = [str(k) for k in batch["error_kind"]]
        if self.ledger is None:
            new = self.fill_batch(plans, decoded, errors)
        else:
            new = self._fill_guarded(plans, decoded, errors, [int(s) for s in batch["sample_id"]])
        for i, exc in enumerate(new):
            if exc is not None:
                errors[i], kinds[i] = str(exc), exc.kind
            if errors[i]:
                self.fill_zeros(plans[i], decoded[i])
        batch = dict(batch)
        batch["decoded"] = np.array([pickle.dumps(d, protocol=5) for d in decoded], dtype=object)
        batch["error"] = np.array(errors, dtype=object)
        batch["error_kind"] = np.array(kinds, dtype=object)
        elapsed = time.perf_counter() - start
        self.busy_s += elapsed
        self.rows += len(plans)
        self.reporter.add(rows=len(plans), errors=sum(e is not None for e in new), busy_s=elapsed)
        return batch


def _find_ledger() -> Any | None:
    from pipelines.quarantine import find_ledger

    return find_ledger()
