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
"""

from __future__ import annotations

import pickle
import time
from typing import Any

import numpy as np

from pipelines.config import DataConfig, StageConfig
from pipelines.tasks.base import Decoded, SamplePlan
from workers.errors import CorruptMediaError
from workers.meta import VideoMeta

Batch = dict[str, np.ndarray]


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
                self.fill(p, d)
                out.append(None)
            except CorruptMediaError as e:
                out.append(e)
        return out

    def __call__(self, batch: Batch) -> Batch:
        start = time.perf_counter()
        plans = [pickle.loads(b) for b in batch["plans"]]
        self.metas = {}
        for b in batch["metas"]:
            self.metas.update(pickle.loads(b))
        decoded = [pickle.loads(b) for b in batch["decoded"]]
        errors = [str(e) for e in batch["error"]]
        kinds = [str(k) for k in batch["error_kind"]]
        new = self.fill_batch(plans, decoded, errors)
        for i, exc in enumerate(new):
            if exc is not None:
                errors[i], kinds[i] = str(exc), exc.kind
            if errors[i]:
                self.fill_zeros(plans[i], decoded[i])
        batch = dict(batch)
        batch["decoded"] = np.array([pickle.dumps(d, protocol=5) for d in decoded], dtype=object)
        batch["error"] = np.array(errors, dtype=object)
        batch["error_kind"] = np.array(kinds, dtype=object)
        self.busy_s += time.perf_counter() - start
        self.rows += len(plans)
        return batch
