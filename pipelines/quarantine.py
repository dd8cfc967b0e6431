"""What happens to samples that fail at run time: the quarantine file, the error budget, and
the crash ledger that bounds retries of files which kill their decoder process.

Policies, each with a worked example:

- **Mask, don't replace.** A sample whose decode raises ``CorruptMediaError`` stays in its
  batch as a zero row with ``ok=False``; the loss skips it. Every rank still receives the
  same number of rows (an epoch is padded to the rank count), so DDP steps stay in lock
  step. Example: batch of 8 on rank 1, row 3's file is truncated -> the step trains on 7
  rows; ``quarantine.parquet`` gets ``(uri, video_id, sample_id, "corrupt", "moov atom not
  found")``.
- **Error budget.** The run aborts once more than ``max_errors`` samples have failed over
  the whole run (a resumed run counts the failures before its checkpoint too);
  ``error_policy="raise"`` is a budget of 0. Example: ``--max-errors 2`` and a third
  failed sample at step 41 -> every rank stops after step 41, the checkpoint of step 41 is
  written, then ``ErrorBudgetExceeded: 3 samples failed ... past the budget of 2``.
- **Bounded crash retries.** A decode that kills its actor process (a segfault in a codec,
  the OOM killer) is retried by Ray Data on a restarted actor. The :class:`CrashLedger`
  counts, per (stage, sample), attempts that started and never finished; a sample that
  has been under ``max_crashes`` deaths is not tried again: it is quarantined with kind
  ``crash`` and so is every later sample of its video. Example (``max_crashes=2``): batch
  [a, b, c] dies on b -> the retry decodes a, b, c one at a time (a and c finish, b dies
  again) -> the next retry skips b as ``crash`` and delivers a and c.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.config import DataConfig
from workers.meta import VideoMeta, video_id_of

QUARANTINE_FILE = "quarantine.parquet"
LEDGER_NAME = "clipstream-crash-ledger"
MAX_CRASHES = 2

SCHEMA = pa.schema([
    pa.field("uri", pa.string(), nullable=False),
    pa.field("video_id", pa.int64(), nullable=False),
    pa.field("sample_id", pa.int64(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
])


# ------------------------------------------------------------------------ quarantine file


@dataclass(frozen=True)
class QuarantineRow:
    """One failed sample: the file that failed, its video id, the sample, kind and reason."""

    uri: str
    video_id: int
    sample_id: int
    kind: str
    reason: str


def split_error(error: str, uris: Iterable[str]) -> tuple[str, str]:
    """``(uri, reason)`` of an error text ``"{uri}: {reason}"`` (how CorruptMediaError reads).

    The uri must be one the run knows, so a reason containing ``": "`` is not cut wrongly.
    Example: ``split_error("/d/a.mp4: moov atom not found", ["/d/a.mp4"])`` ->
    ``("/d/a.mp4", "moov atom not found")``; an error naming no known file -> ``("", error)``.
    """
    for uri in sorted(uris, key=len, reverse=True):  # "/d/a.mp4.bak" before "/d/a.mp4"
        if error.startswith(uri + ": "):
            return uri, error[len(uri) + 2:]
    return "", error


def quarantine_rows(failed: Iterable[Mapping[str, Any]], metas: Sequence[VideoMeta]) -> list[QuarantineRow]:
    """Rows of the quarantine file from the trainers' failure records.

    Args:
        failed: ``{"sample_id", "video_id", "kind", "error"}`` per failed sample.
        metas: the manifest's rows (to find the uri of the sample's video).
    Returns:
        One row per failed sample, sorted by sample id. The uri is the file the error names
        (the second video of a negative pair can be the one that failed), else the uri of
        the sample's video.
    """
    uris = {m.video_id: m.uri for m in metas}
    out = {}
    for f in failed:
        uri, reason = split_error(str(f["error"]), uris.values())
        video_id = video_id_of(uri) if uri else int(f["video_id"])
        uri = uri or uris.get(int(f["video_id"]), "")
        out[int(f["sample_id"])] = QuarantineRow(uri, video_id, int(f["sample_id"]), str(f["kind"]), reason)
    return [out[k] for k in sorted(out)]


def write_quarantine(rows: Iterable[QuarantineRow], path: str | os.PathLike[str]) -> None:
    """Write the quarantine Parquet (beside its final name, then renamed: never half a file)."""
    table = pa.Table.from_pylist([asdict(r) for r in rows], schema=SCHEMA)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, target)


def read_quarantine(path: str | os.PathLike[str]) -> list[QuarantineRow]:
    return [QuarantineRow(**r) for r in pq.read_table(str(path)).to_pylist()]


# --------------------------------------------------------------------------- error budget


class ErrorBudgetExceeded(RuntimeError):
    """More samples failed than the run's error budget allows."""


def error_budget(data: DataConfig) -> int:
    """How many failed samples a run tolerates: ``max_errors``, or 0 with ``error_policy="raise"``."""
    return 0 if data.error_policy == "raise" else data.max_errors


def budget_message(failed: int, budget: int, first: str = "") -> str | None:
    """The abort message once ``failed`` is past ``budget``; None while within it.

    Example: ``budget_message(3, 2, "/d/a.mp4: moov atom not found")`` -> "3 samples failed
    to decode, past the error budget of 2 (--max-errors); first: /d/a.mp4: moov atom not
    found"; ``budget_message(2, 2)`` -> None.
    """
    if failed <= budget:
        return None
    msg = f"{failed} samples failed to decode, past the error budget of {budget} (--max-errors)"
    return f"{msg}; first: {first}" if first else msg


# --------------------------------------------------------------------------- crash ledger

GO, SUSPECT = "go", "suspect"


class CrashLedger:
    """Counts decode attempts that started and never finished, per (stage, sample).

    A plain class (unit-tested without Ray); a run holds one as a named Ray actor
    (:func:`start_ledger`) that every stage actor reaches (:func:`find_ledger`), because the
    count has to outlive the process that died.

    Protocol of a stage, per batch: :meth:`start_batch`; if it answers ``go``, decode the
    batch and :meth:`finish` it; if ``suspect`` (some row was under a death before), decode
    row by row, each between :meth:`start_row` and :meth:`finish`, so the next death is
    charged to the one row that caused it.
    """

    def __init__(self, max_crashes: int = MAX_CRASHES) -> None:
        if max_crashes < 1:
            raise ValueError(f"max_crashes ({max_crashes}) must be >= 1")
        self.max_crashes = max_crashes
        self.open: dict[tuple[str, int], int] = {}  # (stage, sample_id) -> unfinished starts
        self.crashed_videos: dict[tuple[str, int], str] = {}  # (stage, video_id) -> reason
        self.inflight: dict[int, set[tuple[str, int]]] = defaultdict(set)  # pid -> keys
        self.pids: dict[str, set[int]] = defaultdict(set)
        self.restarts = 0  # starts of a sample that had died before
        self.quarantined = 0
        self.finished = 0

    def register(self, stage: str, pid: int) -> None:
        """A stage actor process came up (tests look pids up here to kill them)."""
        self.pids[stage].add(pid)

    def start_batch(self, stage: str, pid: int, rows: Sequence[tuple[int, int]]) -> tuple[str, list[str]]:
        """Start a batch of ``(sample_id, video_id)`` rows.

        Returns:
            ``(mode, verdicts)``: a verdict per row, ``""`` or the reason it is quarantined
            (its video crashed the decoder before). ``mode`` is ``go`` (the other rows are
            started) or ``suspect`` (nothing started; go row by row).
        """
        verdicts = [self.crashed_videos.get((stage, v), "") for _, v in rows]
        live = [s for (s, _), why in zip(rows, verdicts) if not why]
        if any(self.open.get((stage, s), 0) for s in live):
            return SUSPECT, verdicts
        for s in live:
            self._start(stage, pid, s)
        return GO, verdicts

    def start_row(self, stage: str, pid: int, sample_id: int, video_id: int) -> str:
        """Start one row; returns ``""``, or the reason it is quarantined instead."""
        why = self.crashed_videos.get((stage, video_id), "")
        if why:
            return why
        deaths = self.open.get((stage, sample_id), 0)
        if deaths >= self.max_crashes:
            why = f"the {stage} decoder process died {deaths} times on this sample"
            self.crashed_videos[(stage, video_id)] = why
            self.open.pop((stage, sample_id), None)
            self.quarantined += 1
            return why
        self._start(stage, pid, sample_id)
        return ""

    def finish(self, stage: str, pid: int, sample_ids: Sequence[int]) -> None:
        for s in sample_ids:
            if self.open.pop((stage, s), None) is not None:
                self.finished += 1
            self.inflight[pid].discard((stage, s))

    def _start(self, stage: str, pid: int, sample_id: int) -> None:
        key = (stage, sample_id)
        self.restarts += key in self.open
        self.open[key] = self.open.get(key, 0) + 1
        self.inflight[pid].add(key)

    def busy(self, stage: str) -> list[int]:
        """Pids of ``stage`` actors with a decode in flight right now."""
        return sorted(pid for pid, keys in self.inflight.items()
                      if pid in self.pids[stage] and any(k[0] == stage for k in keys))

    def actors(self, stage: str) -> list[int]:
        """Pids of every ``stage`` actor process seen so far (dead ones included)."""
        return sorted(self.pids[stage])

    def summary(self) -> dict[str, Any]:
        """For metrics.json: how often a sample was retried after a death, and quarantined."""
        return {"retried_after_death": self.restarts, "quarantined_after_deaths": self.quarantined,
                "finished": self.finished, "max_crashes": self.max_crashes,
                "actors_seen": {k: len(v) for k, v in sorted(self.pids.items())}}


def start_ledger(max_crashes: int = MAX_CRASHES) -> Any:
    """Create the run's ledger actor (replacing a leftover one of an earlier run)."""
    import ray

    stop_ledger()
    # Restarted if its process dies: the counts start over (a crashing file then gets
    # max_crashes more tries), which is better than failing every stage that asks it.
    actor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(CrashLedger)
    return actor.options(name=LEDGER_NAME).remote(max_crashes)


def stop_ledger(wait_s: float = 10.0) -> None:
    """Kill the ledger actor, if any, and wait until its name is free again."""
    import ray

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            ray.kill(ray.get_actor(LEDGER_NAME))
        except ValueError:
            return
        time.sleep(0.05)


def find_ledger() -> Any | None:
    """The run's ledger actor, seen from a stage actor; None outside Ray or without a ledger."""
    import ray

    if not ray.is_initialized():
        return None
    try:
        return ray.get_actor(LEDGER_NAME)
    except ValueError:
        return None
