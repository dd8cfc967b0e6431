"""The pretext-task protocol: a pure planner and an array arranger.

A task never decodes. ``plan(meta, rng)`` decides which frames, audio windows and motion
windows a sample needs, and the pseudo-label; decode workers fetch exactly those reads;
``assemble(decoded, plan)`` arranges the decoded arrays into fixed-shape named arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

from workers.meta import VideoMeta

ShortVideoPolicy = Literal["skip", "pad"]
"""What a planner does with a video too short for its plan.

- ``skip``: ``plan`` returns ``None``; the planner counts the video under ``skipped_short``.
  E.g. vcop needs 3*16 + 2*8 = 64 frames; a 40-frame video yields no sample.
- ``pad``: indices past the end are clamped to the last frame (the last frame repeats).
  E.g. a 40-frame video gives clip 3 = [32..39, 39, 39, ...].
"""


@dataclass(frozen=True)
class ClipRead:
    """Frames of one video, in the order the model receives them."""

    uri: str
    video_id: int
    frames: tuple[int, ...]


@dataclass(frozen=True)
class AudioRead:
    """An audio window [start_s, end_s) of one video."""

    uri: str
    video_id: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class MotionRead:
    """Motion vectors of frames [start, stop) of one video."""

    uri: str
    video_id: int
    start: int
    stop: int


@dataclass(frozen=True)
class SamplePlan:
    """Everything the workers need to fetch for one sample, and its label.

    ``sample_id`` is unique in a run (see :func:`make_sample_id`). ``clips``, ``audio`` and
    ``motion`` are read lists; the decode stages return one array per read, in order.
    ``label`` is the pseudo-label (an int class, or -1 for tasks whose target is not a class,
    like contrastive pairs). ``params`` carries small per-sample choices that ``assemble``
    needs (e.g. a jitter offset), all decided here, from the rng.
    """

    sample_id: int
    task: str
    video_id: int
    label: int
    clips: tuple[ClipRead, ...] = ()
    audio: tuple[AudioRead, ...] = ()
    motion: tuple[MotionRead, ...] = ()
    size: tuple[int, int] | None = None
    params: dict[str, Any] = field(default_factory=dict, compare=False)

    def reads(self) -> tuple[ClipRead | AudioRead | MotionRead, ...]:
        """Every read of the plan: clips, then audio windows, then motion windows."""
        return (*self.clips, *self.audio, *self.motion)


def make_sample_id(epoch: int, index: int) -> int:
    """The id of the index-th sample of an epoch: ``epoch << 32 | index``.

    Example: epoch 2, index 7 -> 8589934599. Unique across epochs of a run and readable back
    with ``divmod(sample_id, 2**32)``.
    """
    if not 0 <= index < 2**32:
        raise ValueError(f"sample index ({index}) must be in [0, 2**32)")
    return (epoch << 32) | index


class VideoPool(Protocol):
    """Other videos of the dataset, for tasks that need a second video (negatives)."""

    def draw(self, rng: np.random.Generator, exclude_video_id: int) -> VideoMeta: ...


class Task:
    """Base class of a pretext task. Subclasses set ``name`` and ``num_classes``."""

    name: ClassVar[str] = ""
    num_classes: int = 0  # 0: not a classification task; may depend on the params (opn, pace)
    needs_audio: ClassVar[bool] = False
    needs_motion: ClassVar[bool] = False
    needs_pool: ClassVar[bool] = False
    # True when ``assemble``'s ``video`` is exactly the decoded clips stacked in read order
    # (no pixel work), so a trainer that decodes on its own GPU (colocated placement) can
    # build it from the clips alone.
    video_is_clips: ClassVar[bool] = False
    # For a task without classes: what its loss trains on, in words (previews show it).
    target: ClassVar[str] = "a loss on the inputs themselves"

    def plan(
        self,
        meta: VideoMeta,
        rng: np.random.Generator,
        *,
        sample_id: int = 0,
        pool: VideoPool | None = None,
    ) -> SamplePlan | None:
        raise NotImplementedError

    def assemble(self, decoded: Decoded, plan: SamplePlan) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def label_names(self) -> Sequence[str]:
        return [str(i) for i in range(self.num_classes)]

    def expected_label_distribution(self) -> dict[int, float]:
        """The share of each label the task's design produces: uniform over its classes
        unless the task says otherwise (e.g. Shuffle & Learn: {0: 0.75, 1: 0.25}); ``{}`` for
        tasks whose label is always -1. Label metrics compare what a run delivered against it.
        """
        if self.num_classes <= 0:
            return {}
        return {c: 1.0 / self.num_classes for c in range(self.num_classes)}

    def set_epoch(self, epoch: int) -> None:
        """Called by the planner before it plans ``epoch``. A no-op unless the task's design
        changes with the epoch (a curriculum, as AVTS's share of hard negatives)."""


@dataclass
class Decoded:
    """What the decode stages return for one plan: one array per read, in read order.

    ``clips[i]``: uint8 (T, H, W, 3) for ``plan.clips[i]``, resized to ``plan.size``;
    ``audio[i]``: float32 log-mel (C, n_mels, n_frames) for ``plan.audio[i]`` (the audio stage
    decodes, resamples to the run's rate and computes the features);
    ``motion[i]``: float32 (T, h, w, 2) dense motion fields (pixels per frame) for
    ``plan.motion[i]``.

    Task outputs (``assemble``) follow one convention, without batch dimension:
    ``video`` uint8 (K, T, H, W, 3), the K inputs of a shared backbone in fed order;
    ``audio`` float32 (A, C, n_mels, n_frames); ``motion`` float32 (M, T, h, w, 2);
    ``label`` int64 (a class, or -1 where the target is not a class); other keys are named
    in the task's docstring.
    """

    clips: list[np.ndarray] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)
    motion: list[np.ndarray] = field(default_factory=list)
