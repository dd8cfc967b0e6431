"""Arrow of time (Wei, Lim, Zisserman and Freeman, "Learning and Using the Arrow of Time",
CVPR 2018)."""

from __future__ import annotations

import numpy as np

from pipelines.tasks import register
from pipelines.tasks._arrays import label_array
from pipelines.tasks._sampling import (
    Sampled,
    SampledTask,
    check_clip,
    check_short_video,
    strided,
    uniform_start,
)
from pipelines.tasks.base import ClipRead, Decoded, SamplePlan, ShortVideoPolicy, VideoPool
from pipelines.tasks.vcop import clip_span
from workers.meta import VideoMeta


@register
class ArrowOfTime(SampledTask):
    """Is the clip played forward or backward? One clip of ``clip_len`` frames at ``stride``
    (the paper's T-CAM reads 10 frames), fed in time order (label 0) or reversed (label 1),
    half each.

    Example (clip_len 10, stride 1): start 31 -> frames 31..40; label 1 feeds (40, 39, ... 31).

    Output: ``video`` uint8 (1, clip_len, H, W, 3) in fed order; ``label`` int64.
    """

    name = "arrow_of_time"
    video_is_clips = True
    num_classes = 2

    def __init__(
        self, clip_len: int = 10, stride: int = 1, short_video: ShortVideoPolicy = "skip"
    ) -> None:
        check_clip(clip_len, stride, min_len=2)
        self.clip_len, self.stride = clip_len, stride
        self.need = clip_span(1, clip_len, 0, stride)
        self.short_video = check_short_video(short_video)

    def sample(
        self, meta: VideoMeta, rng: np.random.Generator, pool: VideoPool | None
    ) -> Sampled | None:
        start = uniform_start(meta.num_frames, self.need, rng)
        frames = strided(start, self.clip_len, self.stride, meta.num_frames)
        label = int(rng.integers(2))
        if label:
            frames = frames[::-1]
        return Sampled(label=label, clips=(ClipRead(meta.uri, meta.video_id, frames),))

    def assemble(self, decoded: Decoded, plan: SamplePlan) -> dict[str, np.ndarray]:
        return {"video": np.stack(decoded.clips), "label": label_array(plan.label)}

    def label_names(self) -> list[str]:
        return ["forward", "backward"]
