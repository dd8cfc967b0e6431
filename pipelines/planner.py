"""Driver-side planning: which sample each position of an epoch is, as a pure function.

The order of videos in epoch e is ``default_rng((seed, e)).permutation(n)``; the sample at
position i is planned with ``default_rng((seed, e, i))`` and gets id ``e << 32 | i``. Nothing
else is random, so an epoch can be re-planned anywhere (a resumed run, another worker count)
and comes out identical.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipelines.tasks import SamplePlan, Task, get_task, make_sample_id
from workers.meta import VideoMeta


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of ``n`` videos in ``epoch``: a permutation that depends only on (seed, epoch)."""
    return np.random.default_rng((seed, epoch)).permutation(n)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng((seed, epoch, index))


class ManifestPool:
    """Other videos of the manifest, for tasks that draw a second video (negatives)."""

    def __init__(self, metas: Sequence[VideoMeta]) -> None:
        self.metas = list(metas)

    def draw(self, rng: np.random.Generator, exclude_video_id: int) -> VideoMeta:
        if len(self.metas) < 2:
            raise ValueError("a task that needs a second video needs a manifest of >= 2 videos")
        while True:  # expected tries: n / (n - 1)
            meta = self.metas[int(rng.integers(len(self.metas)))]
            if meta.video_id != exclude_video_id:
                return meta


@dataclass
class Visit:
    """One sample position: the plans of every task for one video, and the metas they read."""

    sample_id: int
    plans: tuple[SamplePlan, ...]
    metas: dict[int, VideoMeta]


@dataclass
class EpochPlan:
    """The samples of one epoch in planned order, and what was left out and why.

    ``padded``: extra visits appended so the sample count divides evenly among the ranks
    (each is a fresh sample: its own id and rng, a video taken from the top of the order).
    Example: 37 usable videos, 2 ranks -> 38 visits; visit 37 revisits order[0] with
    ``default_rng((seed, e, 37))``, so it plans other frames and has id ``e << 32 | 37``.
    """

    epoch: int
    visits: list[Visit]
    skipped_short: list[int] = field(default_factory=list)  # video_ids no task could plan
    padded: int = 0

    @property
    def sample_ids(self) -> list[int]:
        return [v.sample_id for v in self.visits]


class Planner:
    """Plans epochs of visits for one or more tasks over a manifest.

    Args:
        metas: the manifest's ok rows.
        tasks: task name -> params (``get_task(name, **params)``), or built Task objects.
        seed: the run's seed.
        size: clip size (h, w) given to every plan that does not set its own.
        divisible_by: pad each epoch to a multiple of this (the number of ranks).
    """

    def __init__(
        self,
        metas: Sequence[VideoMeta],
        tasks: Mapping[str, Mapping[str, object]] | Iterable[Task],
        *,
        seed: int,
        size: tuple[int, int],
        divisible_by: int = 1,
    ) -> None:
        if not metas:
            raise ValueError("the manifest has no usable (status ok) videos")
        if divisible_by < 1:
            raise ValueError(f"divisible_by ({divisible_by}) must be >= 1")
        self.metas = list(metas)
        if isinstance(tasks, Mapping):
            self.tasks = [get_task(name, **dict(params)) for name, params in tasks.items()]
        else:
            self.tasks = list(tasks)
        self.seed, self.size, self.divisible_by = seed, size, divisible_by
        self.pool = ManifestPool(self.metas)
        self.by_id = {m.video_id: m for m in self.metas}

    def _visit(self, epoch: int, index: int, meta: VideoMeta) -> Visit | None:
        rng = sample_rng(self.seed, epoch, index)
        sid = make_sample_id(epoch, index)
        plans = []
        for task in self.tasks:
            plan = task.plan(meta, rng, sample_id=sid, pool=self.pool)
            if plan is None:
                return None
            if plan.size is None:
                plan = dataclasses.replace(plan, size=self.size)
            plans.append(plan)
        ids = {meta.video_id} | {r.video_id for p in plans for r in p.reads()}
        return Visit(sid, tuple(plans), {i: self.by_id[i] for i in ids})

    def plan_epoch(self, epoch: int) -> EpochPlan:
        """All visits of ``epoch``, padded to a multiple of ``divisible_by``."""
        for task in self.tasks:
            if hasattr(task, "set_epoch"):
                task.set_epoch(epoch)
        order = epoch_order(self.seed, epoch, len(self.metas))
        out = EpochPlan(epoch, [])
        index = 0
        for pos in order:
            visit = self._visit(epoch, index, self.metas[pos])
            index += 1
            if visit is None:
                out.skipped_short.append(self.metas[pos].video_id)
            else:
                out.visits.append(visit)
        if not out.visits:
            raise ValueError(f"no video of the manifest is long enough for tasks "
                             f"{[t.name for t in self.tasks]}")
        usable = [self.metas[p] for p in order if self.metas[p].video_id not in set(out.skipped_short)]
        k = 0
        while len(out.visits) % self.divisible_by:
            visit = self._visit(epoch, index, usable[k % len(usable)])
            index += 1
            k += 1
            if visit is not None:
                out.visits.append(visit)
                out.padded += 1
        return out
