"""Sampling helpers shared by the task planners: pure functions of (meta, rng, numbers).

Frame index i is shown at ``i / fps`` seconds (the manifest's ``avg_fps``); for a variable
frame rate video that is the average position, close enough for choosing windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.tasks.base import (
    AudioRead,
    ClipRead,
    MotionRead,
    SamplePlan,
    ShortVideoPolicy,
    Task,
    VideoPool,
)
from pipelines.tasks.vcop import clamp_frames
from workers.meta import VideoMeta

SHORT_VIDEO_POLICIES: tuple[ShortVideoPolicy, ...] = ("skip", "pad")


def check_short_video(short_video: str) -> ShortVideoPolicy:
    """Validate a ``short_video`` argument."""
    if short_video not in SHORT_VIDEO_POLICIES:
        raise ValueError(f"short_video ({short_video!r}) must be 'skip' or 'pad'")
    return short_video  # type: ignore[return-value]


def check_clip(clip_len: int, stride: int, min_len: int = 1) -> None:
    """Validate a clip's length and stride."""
    if clip_len < min_len or stride < 1:
        raise ValueError(f"clip_len ({clip_len}) must be >= {min_len} and stride ({stride}) >= 1")


def check_share(name: str, value: float) -> float:
    """Validate a probability-like argument (a share of samples)."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} ({value}) must be in [0, 1]")
    return float(value)


def check_positive(**values: float) -> None:
    """Raise a ValueError naming the first argument that is not > 0."""
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} ({value}) must be > 0")


def uniform_start(num_frames: int, span: int, rng: np.random.Generator) -> int:
    """A start frame for ``span`` frames, uniform over the places they fit (0 when none)."""
    return int(rng.integers(0, max(num_frames - span, 0) + 1))


def strided(start: int, length: int, stride: int, num_frames: int) -> tuple[int, ...]:
    """``length`` frames from ``start`` every ``stride``, past-the-end ones clamped (the pad
    policy). Example: start 5, length 3, stride 2 in a 9-frame video: (5, 7, 8)."""
    return clamp_frames(start + stride * np.arange(length), num_frames)


def motion_weighted_start(meta: VideoMeta, span: int, rng: np.random.Generator) -> int:
    """A window start for ``span`` frames, drawn with probability proportional to the window's
    total motion (``meta.motion``: per-frame mean motion-vector magnitude); uniform when the
    manifest has no motion or the video is still.

    Example: motion (0, 0, 0, 9, 9, 9), span 3: starts 0..3 carry 0, 9, 18, 27; start 3
    comes 27/54 of the time, start 0 never.
    """
    n = meta.num_frames
    if span >= n or len(meta.motion) < n:
        return uniform_start(n, span, rng)
    motion = np.clip(np.asarray(meta.motion[:n], dtype=np.float64), 0.0, None)
    csum = np.concatenate([[0.0], np.cumsum(motion)])
    weight = csum[span:] - csum[:-span]  # weight[s] = motion of frames s .. s+span-1
    total = weight.sum()
    if not total > 0:
        return uniform_start(n, span, rng)
    return int(rng.choice(len(weight), p=weight / total))


def composition(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    """``parts`` non-negative ints summing to ``total``, uniform over all such splits (stars
    and bars). Example: total 2, parts 3 gives one of (2,0,0), (1,1,0), ... (0,0,2)."""
    if parts == 1:
        return np.array([total])
    bars = np.sort(rng.choice(total + parts - 1, size=parts - 1, replace=False))
    edges = np.concatenate([[-1], bars, [total + parts - 1]])
    return np.diff(edges) - 1


def fps_of(meta: VideoMeta) -> float:
    """Frames per second of a video: ``avg_fps``, else frames over duration."""
    if meta.avg_fps > 0:
        return meta.avg_fps
    if meta.duration_s > 0 and meta.num_frames > 0:
        return meta.num_frames / meta.duration_s
    raise ValueError(f"{meta.uri}: avg_fps ({meta.avg_fps}) and duration_s ({meta.duration_s}) "
                     "are unknown; re-index the manifest")


def av_extent(meta: VideoMeta) -> float:
    """Seconds where both picture and sound exist: min(video duration, audio duration)."""
    return min(meta.num_frames / fps_of(meta), meta.audio_duration_s)


def frame_at(meta: VideoMeta, t: float) -> int:
    """The frame shown at ``t`` seconds, within the video."""
    return int(min(max(math.floor(t * fps_of(meta)), 0), meta.num_frames - 1))


def synced_window(
    meta: VideoMeta, audio_s: float, span: int, rng: np.random.Generator
) -> tuple[float, int]:
    """An audio window start ``t`` (seconds) and the start frame of ``span`` frames centred on
    the window, so picture and sound are simultaneous.

    Example: 25 fps, audio_s 1.0, span 5, t drawn 2.0 -> window [2.0, 3.0) centred at 2.5 s =
    frame 62.5 -> frames 60..64.
    """
    t = float(rng.uniform(0.0, max(av_extent(meta) - audio_s, 0.0)))
    centre = (t + audio_s / 2) * fps_of(meta)
    start = round(centre - span / 2)
    return t, int(min(max(start, 0), max(meta.num_frames - span, 0)))


def random_audio_start(meta: VideoMeta, audio_s: float, rng: np.random.Generator) -> float:
    """A window start uniform over where ``audio_s`` seconds of sound fit (0 when none)."""
    return float(rng.uniform(0.0, max(av_extent(meta) - audio_s, 0.0)))


def shifted_audio_start(
    t: float, audio_s: float, extent: float, min_shift: float, rng: np.random.Generator
) -> float | None:
    """A window start at least ``min_shift`` seconds from ``t``, uniform over the starts that
    fit in ``[0, extent - audio_s]``; None when there is no such start.

    Example: t 2.0, min_shift 1.0, audio 1.0, extent 6.0: starts in [0, 1] or [3, 5] (the
    second twice as likely, being twice as long).
    """
    candidates = ((0.0, t - min_shift), (t + min_shift, extent - audio_s))
    intervals = [(lo, hi) for lo, hi in candidates if hi >= lo]
    if not intervals:
        return None
    lengths = np.array([hi - lo for lo, hi in intervals])
    if lengths.sum() == 0:  # only single points are left
        return intervals[int(rng.integers(len(intervals)))][0]
    u = float(rng.uniform(0.0, lengths.sum()))
    for (lo, hi), length in zip(intervals, lengths):
        if u <= length:
            return min(lo + u, hi)
        u -= length
    return intervals[-1][1]


def draw_other(
    pool: VideoPool | None,
    rng: np.random.Generator,
    meta: VideoMeta,
    *,
    task: str,
    need_audio: bool = False,
    tries: int = 8,
) -> VideoMeta | None:
    """Another video of the dataset (never ``meta`` itself), with a sound track when
    ``need_audio``; None when ``tries`` draws find none with sound."""
    if pool is None:
        raise ValueError(f"task {task!r} draws a second video and needs a pool; got None")
    for _ in range(tries):
        other = pool.draw(rng, exclude_video_id=meta.video_id)
        if other.video_id == meta.video_id:
            raise ValueError(f"the pool returned the excluded video {meta.video_id}")
        if not need_audio or has_sound(other):
            return other
    return None


def has_sound(meta: VideoMeta) -> bool:
    """Whether a video has a sound track with some duration."""
    return meta.has_audio and meta.audio_duration_s > 0


def av_usable(meta: VideoMeta, span: int, audio_s: float, short_video: ShortVideoPolicy) -> bool:
    """Whether an audio-visual task can plan ``meta``: it needs a sound track whatever the
    policy (there is nothing to pad a missing track from), and under ``skip`` also ``span``
    frames and ``audio_s`` seconds where picture and sound overlap.

    Example: a 0.8 s video with sound, audio_s 1.0: skip -> False; pad -> True (the window
    [0, 1.0) runs past the sound, and the audio stage fills the rest with silence).
    """
    if not has_sound(meta):
        return False
    if short_video == "pad":
        return True
    return meta.num_frames >= span and av_extent(meta) >= audio_s


@dataclass(frozen=True)
class Sampled:
    """What :meth:`SampledTask.sample` decides: the reads, the label and small choices for
    ``assemble``; ``plan`` adds the ids."""

    label: int
    clips: tuple[ClipRead, ...]
    audio: tuple[AudioRead, ...] = ()
    motion: tuple[MotionRead, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)


class SampledTask(Task):
    """Base of the catalog's tasks: ``plan`` applies the short-video policy to the ``need``
    frames a sample spans (and, when ``needs_audio``, to its ``audio_s`` seconds of sound),
    then :meth:`sample` draws the reads and the label.

    Example: pace with 16 frames at paces up to 8 sets ``need = 121``; a 100-frame video is
    skipped under ``skip`` and sampled with clamped indices under ``pad``. A video with no
    frames at all is always skipped.
    """

    short_video: ShortVideoPolicy = "skip"
    need: int = 1
    audio_s: float = 0.0

    def plan(
        self,
        meta: VideoMeta,
        rng: np.random.Generator,
        *,
        sample_id: int = 0,
        pool: VideoPool | None = None,
    ) -> SamplePlan | None:
        if meta.num_frames < 1:
            return None
        if self.needs_audio:
            usable = av_usable(meta, self.need, self.audio_s, self.short_video)
        else:
            usable = meta.num_frames >= self.need or self.short_video == "pad"
        got = self.sample(meta, rng, pool) if usable else None
        if got is None:
            return None
        return SamplePlan(
            sample_id=sample_id, task=self.name, video_id=meta.video_id, label=got.label,
            clips=got.clips, audio=got.audio, motion=got.motion, params=got.params,
        )

    def sample(
        self, meta: VideoMeta, rng: np.random.Generator, pool: VideoPool | None
    ) -> Sampled | None:
        """The reads and label of one sample of ``meta`` (long enough, or padded); None when
        no sample can be made (e.g. no other video with sound for a negative)."""
        raise NotImplementedError
