"""O3N: odd-one-out (Fernando, Bilen, Gavves and Gould, "Self-Supervised Video Representation
Learning With Odd-One-Out Networks", CVPR 2017)."""

from __future__ import annotations

import math

import numpy as np

from pipelines.tasks import register
from pipelines.tasks._arrays import label_array
from pipelines.tasks._sampling import (
    Sampled,
    SampledTask,
    check_short_video,
    uniform_start,
)
from pipelines.tasks.base import ClipRead, Decoded, SamplePlan, ShortVideoPolicy, VideoPool
from pipelines.tasks.vcop import clamp_frames
from workers.meta import VideoMeta


@register
class O3N(SampledTask):
    """Which of ``num_elements`` subsequences is not in temporal order?

    Each element is ``seq_len`` frames drawn from a window of ceil(1.5 * seq_len) consecutive
    frames placed at random in the video (the paper's constrained consecutive sampling),
    sorted. N = num_elements - 1 elements keep that order; the odd one, at a uniformly random
    position, is fed in a random order other than the sorted one. The label is the odd
    element's position.

    Example (6 elements of 6 frames, windows of 9): element 2 from window 40..48 takes frames
    (40, 42, 43, 45, 46, 48) and is fed as (45, 40, 48, 42, 46, 43); the other five are sorted:
    label 2.

    Output: ``video`` uint8 (num_elements, seq_len, H, W, 3), the elements in fed order, each
    an input of a shared backbone (the paper fuses them after the backbone); ``label`` int64.
    """

    name = "o3n"
    video_is_clips = True

    def __init__(
        self,
        num_elements: int = 6,
        seq_len: int = 6,
        short_video: ShortVideoPolicy = "skip",
    ) -> None:
        if num_elements < 2:
            raise ValueError(f"num_elements ({num_elements}) must be >= 2")
        if seq_len < 2:
            raise ValueError(f"seq_len ({seq_len}) must be >= 2 (one frame has no order)")
        self.num_elements, self.seq_len = num_elements, seq_len
        self.window = self.need = math.ceil(1.5 * seq_len)
        self.short_video = check_short_video(short_video)
        self.num_classes = num_elements

    def sample(
        self, meta: VideoMeta, rng: np.random.Generator, pool: VideoPool | None
    ) -> Sampled | None:
        n = meta.num_frames
        odd = int(rng.integers(self.num_elements))
        clips = []
        for i in range(self.num_elements):
            start = uniform_start(n, self.window, rng)
            frames = start + np.sort(rng.choice(self.window, size=self.seq_len, replace=False))
            if i == odd:
                order = rng.permutation(self.seq_len)
                if np.all(order == np.arange(self.seq_len)):
                    order = np.roll(order, 1)  # the identity is not out of order
                frames = frames[order]
            clips.append(ClipRead(meta.uri, meta.video_id, clamp_frames(frames, n)))
        return Sampled(label=odd, clips=tuple(clips))

    def assemble(self, decoded: Decoded, plan: SamplePlan) -> dict[str, np.ndarray]:
        return {"video": np.stack(decoded.clips), "label": label_array(plan.label)}

    def label_names(self) -> list[str]:
        return [f"odd {i}" for i in range(self.num_elements)]
