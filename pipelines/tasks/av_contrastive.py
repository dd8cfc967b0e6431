"""Audio-visual contrastive pairs (Arandjelović and Zisserman, "Objects that Sound",
ECCV 2018)."""

from __future__ import annotations

import numpy as np

from pipelines.tasks import register
from pipelines.tasks._arrays import label_array
from pipelines.tasks._sampling import (
    Sampled,
    SampledTask,
    check_clip,
    check_positive,
    check_short_video,
    strided,
    synced_window,
)
from pipelines.tasks.base import (
    AudioRead,
    ClipRead,
    Decoded,
    SamplePlan,
    ShortVideoPolicy,
    VideoPool,
)
from pipelines.tasks.vcop import clip_span
from workers.meta import VideoMeta


@register
class AVContrastive(SampledTask):
    """A synchronized pair: ``audio_s`` seconds of sound and a clip of ``clip_len`` frames
    every ``stride`` centred on it (the paper's one frame and 1 s). Every other pair of the
    batch is a negative of an in-batch contrastive loss, so a plan names no second video.

    Example (25 fps, clip_len 1): window [2.0, 3.0) -> frame 62 (2.5 s), audio [2.0, 3.0).

    Output: ``video`` uint8 (1, clip_len, H, W, 3); ``audio`` float32 (1, C, n_mels,
    n_frames); ``label`` int64 -1. Videos without a sound track are skipped whatever the
    short-video policy.
    """

    name = "av_contrastive"
    target = "the clip and its own audio are positives, the batch's others negatives"
    video_is_clips = True
    needs_audio = True

    def __init__(
        self,
        clip_len: int = 1,
        stride: int = 1,
        audio_s: float = 1.0,
        short_video: ShortVideoPolicy = "skip",
    ) -> None:
        check_clip(clip_len, stride)
        check_positive(audio_s=audio_s)
        self.clip_len, self.stride, self.audio_s = clip_len, stride, float(audio_s)
        self.need = clip_span(1, clip_len, 0, stride)
        self.short_video = check_short_video(short_video)

    def sample(
        self, meta: VideoMeta, rng: np.random.Generator, pool: VideoPool | None
    ) -> Sampled | None:
        t, start = synced_window(meta, self.audio_s, self.need, rng)
        frames = strided(start, self.clip_len, self.stride, meta.num_frames)
        return Sampled(
            label=-1,
            clips=(ClipRead(meta.uri, meta.video_id, frames),),
            audio=(AudioRead(meta.uri, meta.video_id, t, t + self.audio_s),),
        )

    def assemble(self, decoded: Decoded, plan: SamplePlan) -> dict[str, np.ndarray]:
        return {
            "video": decoded.clips[0][None],
            "audio": decoded.audio[0][None].astype(np.float32, copy=False),
            "label": label_array(-1),
        }
