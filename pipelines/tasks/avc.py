"""AVC: audio-visual correspondence (Arandjelović and Zisserman, "Look, Listen and Learn",
ICCV 2017)."""

from __future__ import annotations

import numpy as np

from pipelines.tasks import register
from pipelines.tasks._arrays import label_array
from pipelines.tasks._sampling import (
    Sampled,
    SampledTask,
    check_positive,
    check_share,
    check_short_video,
    draw_other,
    frame_at,
    random_audio_start,
)
from pipelines.tasks.base import (
    AudioRead,
    ClipRead,
    Decoded,
    SamplePlan,
    ShortVideoPolicy,
    VideoPool,
)
from workers.meta import VideoMeta


@register
class AVC(SampledTask):
    """Do this frame and this sound belong together? A window of ``audio_s`` seconds (the
    paper's 1 s) and one frame shown inside it. Positives (label 1, ``positive_share`` of the
    samples, the paper's half) keep the window's own sound; negatives (label 0) take
    ``audio_s`` seconds at a random time of another video (``pool.draw``, never this
    ``video_id``).

    Example (25 fps): window [4.2, 5.2) of video A, frame 117 (4.68 s). Positive: audio A
    [4.2, 5.2); negative: audio B [0.9, 1.9).

    Output: ``video`` uint8 (1, 1, H, W, 3); ``audio`` float32 (1, C, n_mels, n_frames);
    ``label`` int64. A video without a sound track is skipped whatever the short-video
    policy (``plan`` returns None), and so is a sample whose pool has no other video with
    sound; ``pad`` lets a video shorter than ``audio_s`` through (the audio stage fills the
    window past the sound with silence).
    """

    name = "avc"
    video_is_clips = True
    num_classes = 2
    needs_audio = True
    needs_pool = True

    def __init__(
        self,
        audio_s: float = 1.0,
        positive_share: float = 0.5,
        short_video: ShortVideoPolicy = "skip",
    ) -> None:
        check_positive(audio_s=audio_s)
        self.audio_s = float(audio_s)
        self.positive_share = check_share("positive_share", positive_share)
        self.short_video = check_short_video(short_video)

    def sample(
        self, meta: VideoMeta, rng: np.random.Generator, pool: VideoPool | None
    ) -> Sampled | None:
        t = random_audio_start(meta, self.audio_s, rng)
        frame = frame_at(meta, t + rng.uniform(0.0, self.audio_s))
        positive = bool(rng.random() < self.positive_share)
        if positive:
            audio = AudioRead(meta.uri, meta.video_id, t, t + self.audio_s)
        else:
            other = draw_other(pool, rng, meta, task=self.name, need_audio=True)
            if other is None:
                return None
            t_other = random_audio_start(other, self.audio_s, rng)
            audio = AudioRead(other.uri, other.video_id, t_other, t_other + self.audio_s)
        return Sampled(
            label=int(positive),
            clips=(ClipRead(meta.uri, meta.video_id, (frame,)),), audio=(audio,),
        )

    def assemble(self, decoded: Decoded, plan: SamplePlan) -> dict[str, np.ndarray]:
        return {
            "video": decoded.clips[0][None],
            "audio": decoded.audio[0][None].astype(np.float32, copy=False),
            "label": label_array(plan.label),
        }

    def label_names(self) -> list[str]:
        return ["mismatch", "match"]

    def expected_label_distribution(self) -> dict[int, float]:
        return {0: 1.0 - self.positive_share, 1: self.positive_share}
