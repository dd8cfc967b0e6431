"""AVTS: audio-visual temporal synchronization (Korbar, Tran and Torresani, "Cooperative
Learning of Audio and Video Models from Self-Supervised Synchronization", NeurIPS 2018)."""

from __future__ import annotations

import numpy as np

from pipelines.tasks import register
from pipelines.tasks._arrays import label_array
from pipelines.tasks._sampling import (
    Sampled,
    SampledTask,
    av_extent,
    check_clip,
    check_positive,
    check_share,
    check_short_video,
    draw_other,
    random_audio_start,
    shifted_audio_start,
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

IN_SYNC, EASY, HARD = 0, 1, 2


@register
class AVTS(SampledTask):
    """Are this clip and this sound in sync? A clip of ``clip_len`` frames every ``stride``
    and ``audio_s`` seconds of sound centred on it. Positives (label 1, ``positive_share``)
    keep the clip's own sound; negatives (label 0) are easy, ``audio_s`` seconds of another
    video (``pool.draw``), or hard, this video's sound shifted by at least ``min_shift_s``.

    Curriculum: the share of hard negatives among negatives is a function of the epoch,
    :meth:`hard_share_at`: 0 for the first ``easy_epochs`` epochs, then ``hard_share`` (the
    paper starts with easy negatives only and then mixes in a quarter of hard ones). The
    planner calls :meth:`set_epoch` before it plans an epoch; plans record the epoch in
    ``params["epoch"]``. A hard negative that does not fit (a video shorter than
    ``audio_s + min_shift_s``) becomes an easy one.

    Example (25 fps, clip 25 frames, audio 1 s, min shift 0.5 s): clip 100..124 (4.0-5.0 s).
    Positive: audio [4.0, 5.0); easy: video B [7.3, 8.3); hard: this video [1.2, 2.2) or
    [5.5, 6.5) (any start at least 0.5 s away from 4.0).

    Output: ``video`` uint8 (1, clip_len, H, W, 3); ``audio`` float32 (1, C, n_mels,
    n_frames); ``label`` int64; ``negative`` int64: 0 in sync, 1 easy, 2 hard. Videos without
    a sound track are skipped whatever the short-video policy.
    """

    name = "avts"
    video_is_clips = True
    num_classes = 2
    needs_audio = True
    needs_pool = True

    def __init__(
        self,
        clip_len: int = 25,
        stride: int = 1,
        audio_s: float = 1.0,
        positive_share: float = 0.5,
        hard_share: float = 0.25,
        easy_epochs: int = 50,
        min_shift_s: float = 0.5,
        short_video: ShortVideoPolicy = "skip",
    ) -> None:
        check_clip(clip_len, stride)
        check_positive(audio_s=audio_s, min_shift_s=min_shift_s)
        if easy_epochs < 0:
            raise ValueError(f"easy_epochs ({easy_epochs}) must be >= 0")
        self.clip_len, self.stride = clip_len, stride
        self.audio_s, self.min_shift_s = float(audio_s), float(min_shift_s)
        self.positive_share = check_share("positive_share", positive_share)
        self.hard_share = check_share("hard_share", hard_share)
        self.easy_epochs = easy_epochs
        self.need = clip_span(1, clip_len, 0, stride)
        self.short_video = check_short_video(short_video)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def hard_share_at(self, epoch: int) -> float:
        """The share of hard negatives among the negatives of ``epoch``."""
        return 0.0 if epoch < self.easy_epochs else self.hard_share

    def sample(
        self, meta: VideoMeta, rng: np.random.Generator, pool: VideoPool | None
    ) -> Sampled | None:
        t, start = synced_window(meta, self.audio_s, self.need, rng)
        clip = ClipRead(meta.uri, meta.video_id,
                        strided(start, self.clip_len, self.stride, meta.num_frames))
        kind, src, t_audio = IN_SYNC, meta, t
        if rng.random() >= self.positive_share:
            kind = HARD if rng.random() < self.hard_share_at(self.epoch) else EASY
        if kind == HARD:
            shifted = shifted_audio_start(t, self.audio_s, av_extent(meta), self.min_shift_s, rng)
            if shifted is None:
                kind = EASY
            else:
                t_audio = shifted
        if kind == EASY:
            other = draw_other(pool, rng, meta, task=self.name, need_audio=True)
            if other is None:
                return None
            src, t_audio = other, random_audio_start(other, self.audio_s, rng)
        return Sampled(
            label=int(kind == IN_SYNC), clips=(clip,),
            audio=(AudioRead(src.uri, src.video_id, t_audio, t_audio + self.audio_s),),
            params={"negative": kind, "epoch": self.epoch},
        )

    def assemble(self, decoded: Decoded, plan: SamplePlan) -> dict[str, np.ndarray]:
        return {
            "video": decoded.clips[0][None],
            "audio": decoded.audio[0][None].astype(np.float32, copy=False),
            "label": label_array(plan.label),
            "negative": label_array(plan.params["negative"]),
        }

    def label_names(self) -> list[str]:
        return ["out of sync", "in sync"]

    def expected_label_distribution(self) -> dict[int, float]:
        return {0: 1.0 - self.positive_share, 1: self.positive_share}
