"""VCOP: video clip order prediction (Xu et al., "Self-supervised Spatiotemporal Learning
via Video Clip Order Prediction", CVPR 2019)."""

from __future__ import annotations

import itertools

import numpy as np

from pipelines.tasks import register
from pipelines.tasks._arrays import label_array
from pipelines.tasks.base import ClipRead, Decoded, SamplePlan, ShortVideoPolicy, Task


def clip_span(num_clips: int, clip_len: int, interval: int, stride: int = 1) -> int:
    """Frames covered by ``num_clips`` clips of ``clip_len`` frames at ``stride``, ``interval``
    frames apart. Example: 3 clips of 4 at stride 1, 2 apart: ``cccc..cccc..cccc`` = 16."""
    return num_clips * ((clip_len - 1) * stride + 1) + (num_clips - 1) * interval


def clamp_frames(frames: np.ndarray, num_frames: int) -> tuple[int, ...]:
    """The ``pad`` policy: indices past the end repeat the last frame."""
    return tuple(int(i) for i in np.minimum(frames, num_frames - 1))


@register
class VCOP(Task):
    """Clip order prediction: ``num_clips`` clips of ``clip_len`` frames, ``interval`` frames
    apart, fed in a shuffled order; the label is the index of that order among the
    ``num_clips!`` permutations in ``itertools.permutations`` order.

    With the paper's defaults (3 clips x 16 frames, 8 apart) a sample spans 64 frames and
    the 6 classes are (0,1,2), (0,2,1), (1,0,2), (1,2,0), (2,0,1), (2,1,0). Label 3 means
    the model receives clips (1, 2, 0): the second clip first.

    Output: ``video`` uint8 (num_clips, clip_len, H, W, 3) in fed order, ``label`` int64.
    """

    name = "vcop"
    video_is_clips = True

    def __init__(
        self,
        num_clips: int = 3,
        clip_len: int = 16,
        interval: int = 8,
        stride: int = 1,
        short_video: ShortVideoPolicy = "skip",
    ) -> None:
        if num_clips < 2:
            raise ValueError(f"num_clips ({num_clips}) must be >= 2")
        if clip_len < 1 or stride < 1 or interval < 0:
            raise ValueError(
                f"clip_len ({clip_len}) and stride ({stride}) must be >= 1, interval ({interval}) >= 0"
            )
        if short_video not in ("skip", "pad"):
            raise ValueError(f"short_video ({short_video!r}) must be 'skip' or 'pad'")
        self.num_clips, self.clip_len, self.interval, self.stride = num_clips, clip_len, interval, stride
        self.short_video = short_video
        self.permutations = list(itertools.permutations(range(num_clips)))
        self.num_classes = len(self.permutations)

    def plan(self, meta, rng, *, sample_id=0, pool=None):  # type: ignore[override]
        span = clip_span(self.num_clips, self.clip_len, self.interval, self.stride)
        if meta.num_frames < span and self.short_video == "skip":
            return None
        start = int(rng.integers(0, max(meta.num_frames - span, 0) + 1))
        clip_step = (self.clip_len - 1) * self.stride + 1 + self.interval
        label = int(rng.integers(self.num_classes))
        clips = []
        for c in self.permutations[label]:
            frames = start + c * clip_step + self.stride * np.arange(self.clip_len)
            clips.append(ClipRead(meta.uri, meta.video_id, clamp_frames(frames, meta.num_frames)))
        return SamplePlan(sample_id=sample_id, task=self.name, video_id=meta.video_id,
                          label=label, clips=tuple(clips))

    def assemble(self, decoded: Decoded, plan: SamplePlan) -> dict[str, np.ndarray]:
        return {"video": np.stack(decoded.clips), "label": label_array(plan.label)}

    def label_names(self) -> list[str]:
        return ["".join(str(i) for i in p) for p in self.permutations]
