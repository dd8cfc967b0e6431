"""Shuffle & Learn: temporal order verification (Misra, Zitnick and Hebert, "Shuffle and
Learn: Unsupervised Learning using Temporal Order Verification", ECCV 2016)."""

from __future__ import annotations

import numpy as np

from pipelines.tasks import register
from pipelines.tasks._arrays import frames_as_inputs, label_array
from pipelines.tasks._sampling import (
    Sampled,
    SampledTask,
    check_share,
    check_short_video,
    composition,
    motion_weighted_start,
)
from pipelines.tasks.base import ClipRead, Decoded, SamplePlan, ShortVideoPolicy, VideoPool
from pipelines.tasks.vcop import clamp_frames
from workers.meta import VideoMeta


@register
class ShuffleLearn(SampledTask):
    """Is a tuple of three frames in temporal order?

    Five frames a < b < c < d < e come from one window of ``window`` frames, drawn with
    probability proportional to its motion (``meta.motion``, the manifest's per-frame mean
    motion-vector magnitude; uniform when the manifest has none): the compressed-domain
    stand-in for the paper's optical-flow high-motion windows. b - a and e - d are at least
    ``min_gap`` frames, so the odd frame of a negative is clearly away from b..d.
    ``negative_share`` of the samples (the paper's 75%) are negatives, whose middle frame is
    replaced by a or e (half each): (b, a, d) or (b, e, d); the rest are (b, c, d). As in the
    paper, a tuple and its reverse are the same class, so half of all tuples are fed reversed.

    Example (window 60, min_gap 15): frames (a..e) = (103, 121, 130, 140, 158). Positive:
    label 1, fed (121, 130, 140) or (140, 130, 121); negative with e: label 0, fed
    (121, 158, 140) or (140, 158, 121).

    Labels: 0 ``shuffled``, 1 ``ordered``. Output: ``video`` uint8 (3, 1, H, W, 3), the three
    frames in fed order as three inputs of a shared 2D backbone (the paper's siamese
    CaffeNet); ``label`` int64.

    Not done here: the paper drops tuples whose c looks like a or e (SSD on pixels); a plan
    sees no pixels.
    """

    name = "shuffle_learn"
    num_classes = 2

    def __init__(
        self,
        window: int = 60,
        min_gap: int = 15,
        negative_share: float = 0.75,
        short_video: ShortVideoPolicy = "skip",
    ) -> None:
        if min_gap < 1:
            raise ValueError(f"min_gap ({min_gap}) must be >= 1")
        # a..b and d..e take min_gap each, b < c < d one more frame each: ``a....bcd....e``.
        self.need = 2 * min_gap + 3
        if window < self.need:
            raise ValueError(f"window ({window}) must be >= 2 * min_gap + 3 = {self.need}")
        self.window, self.min_gap = window, min_gap
        self.negative_share = check_share("negative_share", negative_share)
        self.short_video = check_short_video(short_video)

    def sample(
        self, meta: VideoMeta, rng: np.random.Generator, pool: VideoPool | None
    ) -> Sampled | None:
        n = meta.num_frames
        # A video shorter than the window uses all of it; one shorter than ``need`` (pad)
        # gets the minimal window with its tail clamped to the last frame.
        span = max(min(self.window, n), self.need)
        start = motion_weighted_start(meta, span, rng)
        offset, ga, gc, gd, ge = composition(span - self.need, 5, rng)
        a = start + offset
        b = a + self.min_gap + ga
        c = b + 1 + gc
        d = c + 1 + gd
        e = d + self.min_gap + ge
        negative = bool(rng.random() < self.negative_share)
        middle = (a, e)[int(rng.integers(2))] if negative else c
        fed = (b, middle, d)
        if rng.integers(2):
            fed = fed[::-1]
        return Sampled(
            label=0 if negative else 1,
            clips=(ClipRead(meta.uri, meta.video_id, clamp_frames(np.array(fed), n)),),
            params={"tuple": (a, b, c, d, e)},
        )

    def assemble(self, decoded: Decoded, plan: SamplePlan) -> dict[str, np.ndarray]:
        return {"video": frames_as_inputs(decoded.clips[0]), "label": label_array(plan.label)}

    def label_names(self) -> list[str]:
        return ["shuffled", "ordered"]

    def expected_label_distribution(self) -> dict[int, float]:
        return {0: self.negative_share, 1: 1.0 - self.negative_share}
