"""ρ-persistence: positives from one video (Feichtenhofer, Fan, Xiong, Girshick and He, "A
Large-Scale Study on Unsupervised Spatiotemporal Representation Learning", CVPR 2021)."""

from __future__ import annotations

import numpy as np

from pipelines.tasks import register
from pipelines.tasks._arrays import label_array
from pipelines.tasks._sampling import (
    Sampled,
    SampledTask,
    check_clip,
    check_short_video,
    fps_of,
    strided,
    uniform_start,
)
from pipelines.tasks.base import ClipRead, Decoded, SamplePlan, ShortVideoPolicy, VideoPool
from pipelines.tasks.vcop import clip_span
from workers.meta import VideoMeta


@register
class RhoPersistence(SampledTask):
    """``rho`` clips of one video, each ``clip_len`` frames every ``stride`` (the paper's
    8x8 Slow pathway), at independent uniform start times within ``max_span_s`` seconds: the
    positives of BYOL / MoCo / SimCLR (the other videos of a batch are the negatives). The
    paper's default leaves the span unrestricted (the whole video; ``max_span_s=None``).

    Example (rho 2, 8x8, 30 fps, max_span_s 2.0): a 60-frame window is placed at 300; the
    clips start uniformly in 300..303 (a clip spans 57 frames): e.g. 301 -> 301, 309, ... 357
    and 300 -> 300, 308, ... 356.

    Output: ``video`` uint8 (rho, clip_len, H, W, 3); ``label`` int64 -1 (not a class).
    """

    name = "rho_persistence"
    target = "the clips are each other's positives"
    video_is_clips = True

    def __init__(
        self,
        rho: int = 2,
        clip_len: int = 8,
        stride: int = 8,
        max_span_s: float | None = None,
        short_video: ShortVideoPolicy = "skip",
    ) -> None:
        if rho < 2:
            raise ValueError(f"rho ({rho}) must be >= 2 (one clip has no positive)")
        check_clip(clip_len, stride)
        if max_span_s is not None and not max_span_s > 0:
            raise ValueError(f"max_span_s ({max_span_s}) must be > 0 or None (unrestricted)")
        self.rho, self.clip_len, self.stride, self.max_span_s = rho, clip_len, stride, max_span_s
        self.need = clip_span(1, clip_len, 0, stride)
        self.short_video = check_short_video(short_video)

    def sample(
        self, meta: VideoMeta, rng: np.random.Generator, pool: VideoPool | None
    ) -> Sampled | None:
        n = meta.num_frames
        window = n
        if self.max_span_s is not None:
            # The window holds whole clips: a span shorter than one clip means one clip time.
            window = min(max(int(self.max_span_s * fps_of(meta)), self.need), n)
        base = uniform_start(n, window, rng)
        starts = [base + uniform_start(window, self.need, rng) for _ in range(self.rho)]
        clips = [strided(s, self.clip_len, self.stride, n) for s in starts]
        return Sampled(label=-1, clips=tuple(ClipRead(meta.uri, meta.video_id, c) for c in clips))

    def assemble(self, decoded: Decoded, plan: SamplePlan) -> dict[str, np.ndarray]:
        return {"video": np.stack(decoded.clips), "label": label_array(-1)}
