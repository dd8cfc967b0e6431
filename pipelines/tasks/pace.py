"""Pace prediction (Wang, Jiao and Liu, "Self-supervised Video Representation Learning by
Pace Prediction", ECCV 2020; the speed classes of SpeedNet, Benaim et al., CVPR 2020)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipelines.tasks import register
from pipelines.tasks._arrays import label_array
from pipelines.tasks._sampling import (
    Sampled,
    SampledTask,
    check_short_video,
    strided,
    uniform_start,
)
from pipelines.tasks.base import ClipRead, Decoded, SamplePlan, ShortVideoPolicy, VideoPool
from pipelines.tasks.vcop import clip_span
from workers.meta import VideoMeta


@register
class Pace(SampledTask):
    """At what speed is the clip played? A clip of ``clip_len`` frames taken every ``s``
    frames, s drawn uniformly from ``paces``; the label is the index of s.

    A video must fit the largest pace (or be padded), whatever pace a sample draws, so the
    labels stay uniform: with a 16-frame clip and paces (1, 2, 4, 8) every video needs
    15 * 8 + 1 = 121 frames.

    Example: paces (1, 2, 4, 8), drawn s = 4 (label 2), start 10 -> frames 10, 14, ... 70.

    Output: ``video`` uint8 (1, clip_len, H, W, 3); ``label`` int64.
    """

    name = "pace"
    video_is_clips = True

    def __init__(
        self,
        clip_len: int = 16,
        paces: Sequence[int] = (1, 2, 4, 8),
        short_video: ShortVideoPolicy = "skip",
    ) -> None:
        if clip_len < 2:
            raise ValueError(f"clip_len ({clip_len}) must be >= 2")
        self.paces = tuple(int(p) for p in paces)
        if not self.paces or min(self.paces) < 1 or len(set(self.paces)) != len(self.paces):
            raise ValueError(f"paces ({paces}) must be distinct ints >= 1, at least one")
        self.clip_len = clip_len
        self.need = clip_span(1, clip_len, 0, max(self.paces))
        self.short_video = check_short_video(short_video)
        self.num_classes = len(self.paces)

    def sample(
        self, meta: VideoMeta, rng: np.random.Generator, pool: VideoPool | None
    ) -> Sampled | None:
        label = int(rng.integers(self.num_classes))
        stride = self.paces[label]
        start = uniform_start(meta.num_frames, clip_span(1, self.clip_len, 0, stride), rng)
        frames = strided(start, self.clip_len, stride, meta.num_frames)
        return Sampled(label=label, clips=(ClipRead(meta.uri, meta.video_id, frames),),
                       params={"stride": stride})

    def assemble(self, decoded: Decoded, plan: SamplePlan) -> dict[str, np.ndarray]:
        return {"video": np.stack(decoded.clips), "label": label_array(plan.label)}

    def label_names(self) -> list[str]:
        return [f"x{p}" for p in self.paces]
