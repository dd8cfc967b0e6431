"""Context and motion decoupling (Huang, Liu, Zeng, Wang, Liu and Qi, "Self-supervised Video
Representation Learning by Context and Motion Decoupling", CVPR 2021)."""

from __future__ import annotations

import bisect

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
from pipelines.tasks.base import (
    ClipRead,
    Decoded,
    MotionRead,
    SamplePlan,
    ShortVideoPolicy,
    VideoPool,
)
from pipelines.tasks.vcop import clip_span
from workers.meta import VideoMeta


@register
class MotionContext(SampledTask):
    """Context from the keyframe, motion from the motion vectors, both from the compressed
    stream: a clip of ``clip_len`` frames every ``stride``; its context, the keyframe
    (I-frame) that opens the clip's GOP (the last ``meta.keyframes`` entry at or before the
    clip's first frame; frame 0 when the manifest lists none); and the target of motion
    prediction, the motion-vector fields of the ``motion_len`` frames right after the clip.
    Context matching pairs the keyframe with its clip against the other clips of the batch;
    motion prediction regresses the next window's fields from the clip.

    Example (clip_len 16, motion_len 16, keyframes (0, 16, 32, ...)): start 21 -> clip
    21..36, keyframe 16, motion of frames [37, 53).

    Output: ``video`` uint8 (1, clip_len, H, W, 3); ``keyframe`` uint8 (1, 1, H, W, 3);
    ``motion`` float32 (1, motion_len, h, w, 2) (the motion stage's macroblock grid, pixels
    per frame); ``label`` int64 -1. With ``pad``, a clip that reaches the end repeats the last
    frame and the motion window is cut at the end; ``assemble`` pads its fields to
    ``motion_len`` with zeros ("no motion").
    """

    name = "motion_context"
    target = "the target is the motion field of the next window"
    needs_motion = True

    def __init__(
        self,
        clip_len: int = 16,
        stride: int = 1,
        motion_len: int = 16,
        short_video: ShortVideoPolicy = "skip",
    ) -> None:
        check_clip(clip_len, stride)
        if motion_len < 1:
            raise ValueError(f"motion_len ({motion_len}) must be >= 1")
        self.clip_len, self.stride, self.motion_len = clip_len, stride, motion_len
        self.span = clip_span(1, clip_len, 0, stride)
        self.need = self.span + motion_len
        self.short_video = check_short_video(short_video)

    def sample(
        self, meta: VideoMeta, rng: np.random.Generator, pool: VideoPool | None
    ) -> Sampled | None:
        n = meta.num_frames
        start = uniform_start(n, self.need, rng)
        clip = strided(start, self.clip_len, self.stride, n)
        keys = sorted(k for k in meta.keyframes if 0 <= k < n) or [0]
        keyframe = keys[max(bisect.bisect_right(keys, min(start, n - 1)) - 1, 0)]
        m_start = min(start + self.span, n - 1)
        m_stop = min(m_start + self.motion_len, n)
        return Sampled(
            label=-1,
            clips=(ClipRead(meta.uri, meta.video_id, clip),
                   ClipRead(meta.uri, meta.video_id, (keyframe,))),
            motion=(MotionRead(meta.uri, meta.video_id, m_start, m_stop),),
        )

    def assemble(self, decoded: Decoded, plan: SamplePlan) -> dict[str, np.ndarray]:
        motion = decoded.motion[0]
        if len(motion) < self.motion_len:  # a padded window cut at the end of the video
            pad = np.zeros((self.motion_len - len(motion), *motion.shape[1:]), np.float32)
            motion = np.concatenate([motion, pad])
        return {
            "video": decoded.clips[0][None],
            "keyframe": decoded.clips[1][None],
            "motion": motion[None].astype(np.float32, copy=False),
            "label": label_array(-1),
        }
