"""DSM: decoupling the scene and the motion (Wang, Gao, Li, Jiang, Xu, Yang, Huang and Ji,
"Enhancing Unsupervised Video Representation Learning by Decoupling the Scene and the
Motion", AAAI 2021)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from pipelines.tasks import register
from pipelines.tasks._arrays import label_array, resize_nearest
from pipelines.tasks._sampling import (
    Sampled,
    SampledTask,
    check_clip,
    check_short_video,
    draw_other,
    strided,
    uniform_start,
)
from pipelines.tasks.base import ClipRead, Decoded, SamplePlan, ShortVideoPolicy, VideoPool
from pipelines.tasks.vcop import clip_span
from workers.meta import VideoMeta

SceneSource = Literal["cross", "intra"]
NegativeKind = Literal["static", "shuffle"]


@register
class DSM(SampledTask):
    """A triplet for a contrastive/triplet loss that wants motion, not scene:

    - anchor: a clip of ``clip_len`` frames every ``stride``;
    - positive (scene broken, motion kept): the anchor's frames, each blended with one static
      distractor frame, ``(1 - m) * anchor + m * distractor`` with m drawn from ``mix`` per
      sample. ``scene="cross"``: the distractor is a frame of another video (from the pool),
      so the background changes while every motion stays; ``scene="intra"``: a frame of the
      same video outside the clip's time (weaker: the scene mostly survives);
    - negative (motion broken, scene kept): ``negative="static"`` repeats one frame of the
      anchor clip ``clip_len`` times (the same scene, no motion); ``negative="shuffle"`` feeds
      the anchor's frames in a random order (the same frames, broken motion).

    Example (clip_len 4): anchor frames (20, 21, 22, 23) of video A; distractor frame 57 of
    video B, mix 0.41; static index 2 -> positive = 0.59 * A[20..23] + 0.41 * B[57],
    negative = A[22] four times.

    Output: ``video`` uint8 (3, clip_len, H, W, 3) = (anchor, positive, negative), one shared
    backbone; ``label`` int64 -1. The distractor frame is read at the anchor's size (the
    plan's size), resized by nearest neighbour only if it came back otherwise.
    """

    name = "dsm"
    target = "the positive keeps the anchor's motion, the negative its scene"
    needs_pool = True  # scene="cross"; "intra" ignores the pool

    def __init__(
        self,
        clip_len: int = 16,
        stride: int = 1,
        mix: tuple[float, float] = (0.3, 0.5),
        scene: SceneSource = "cross",
        negative: NegativeKind = "static",
        short_video: ShortVideoPolicy = "skip",
    ) -> None:
        check_clip(clip_len, stride, min_len=2)
        lo, hi = mix
        if not 0.0 < lo <= hi < 1.0:
            raise ValueError(f"mix ({lo}, {hi}) must satisfy 0 < low <= high < 1")
        if scene not in ("cross", "intra"):
            raise ValueError(f"scene ({scene!r}) must be 'cross' or 'intra'")
        if negative not in ("static", "shuffle"):
            raise ValueError(f"negative ({negative!r}) must be 'static' or 'shuffle'")
        self.clip_len, self.stride, self.mix = clip_len, stride, (float(lo), float(hi))
        self.scene, self.negative = scene, negative
        self.need = clip_span(1, clip_len, 0, stride)
        self.short_video = check_short_video(short_video)

    def sample(
        self, meta: VideoMeta, rng: np.random.Generator, pool: VideoPool | None
    ) -> Sampled | None:
        n = meta.num_frames
        start = uniform_start(n, self.need, rng)
        anchor = strided(start, self.clip_len, self.stride, n)
        if self.scene == "cross":
            other = draw_other(pool, rng, meta, task=self.name)
            if other is None:
                return None
            src = other
        else:
            src = meta
        distractor = self._distractor_frame(src, meta, start, rng)
        if self.negative == "static":
            negative: tuple[int, ...] = (int(rng.integers(self.clip_len)),) * self.clip_len
        else:
            negative = tuple(int(i) for i in rng.permutation(self.clip_len))
        return Sampled(
            label=-1,
            clips=(ClipRead(meta.uri, meta.video_id, anchor),
                   ClipRead(src.uri, src.video_id, (distractor,))),
            params={"mix": float(rng.uniform(*self.mix)), "negative": negative},
        )

    def _distractor_frame(
        self, src: VideoMeta, meta: VideoMeta, start: int, rng: np.random.Generator
    ) -> int:
        if src is not meta:
            return int(rng.integers(src.num_frames))
        # Same video: a frame outside the clip when there is one, else any frame.
        outside = np.setdiff1d(np.arange(meta.num_frames), np.arange(start, start + self.need))
        pick = outside if len(outside) else np.arange(meta.num_frames)
        return int(pick[rng.integers(len(pick))])

    def assemble(self, decoded: Decoded, plan: SamplePlan) -> dict[str, np.ndarray]:
        anchor = decoded.clips[0]
        distractor = resize_nearest(decoded.clips[1], anchor.shape[1:3]).astype(np.float32)
        m = plan.params["mix"]
        positive = np.rint((1.0 - m) * anchor.astype(np.float32) + m * distractor)
        negative = anchor[list(plan.params["negative"])]
        video = np.stack([anchor, positive.clip(0, 255).astype(np.uint8), negative])
        return {"video": video, "label": label_array(-1)}
