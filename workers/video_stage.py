"""The video stage on CPUs: PyAV decodes exactly the frames each plan names."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from pipelines.tasks.base import Decoded, SamplePlan
from workers.decode import open_video
from workers.stage import Stage


def clip_size(plan: SamplePlan, default: tuple[int, int]) -> tuple[int, int]:
    return plan.size or default


class VideoStage(Stage):
    """Fills ``Decoded.clips`` for every ClipRead of a row.

    FFmpeg gets as many decoder threads as the actor has CPUs (not one per core of the
    machine, which would oversubscribe it once several actors share a node).

    All reads of one video in a row (several clips, several tasks) are decoded in one pass:
    the union of their frame indices goes to ``frames`` once, then is split back.
    Example: clips [4,5,6] and [6,7] -> decode [4,5,6,7] once, clip 2 takes rows [2,3].
    """

    name = "video"

    def fill(self, plans: tuple[SamplePlan, ...], decoded: list[Decoded]) -> None:
        wanted: dict[tuple[str, int, tuple[int, int]], set[int]] = defaultdict(set)
        for plan in plans:
            size = clip_size(plan, self.data.size)
            for read in plan.clips:
                wanted[(read.uri, read.video_id, size)].update(read.frames)
        got: dict[tuple[str, int, tuple[int, int]], tuple[dict[int, int], np.ndarray]] = {}
        for (uri, video_id, size), idx in wanted.items():
            order = sorted(idx)
            meta = self.metas.get(video_id)
            with open_video(uri, backend="pyav", meta=meta, max_pixels=self.data.max_pixels,
                            threads=max(1, int(self.stage.num_cpus))) as r:
                got[(uri, video_id, size)] = ({f: i for i, f in enumerate(order)}, r.frames(order, size=size))
        for plan, d in zip(plans, decoded):
            size = clip_size(plan, self.data.size)
            d.clips = []
            for read in plan.clips:
                pos, arr = got[(read.uri, read.video_id, size)]
                d.clips.append(arr[[pos[f] for f in read.frames]])

    def fill_zeros(self, plans: tuple[SamplePlan, ...], decoded: list[Decoded]) -> None:
        for plan, d in zip(plans, decoded):
            h, w = clip_size(plan, self.data.size)
            d.clips = [np.zeros((len(r.frames), h, w, 3), np.uint8) for r in plan.clips]
