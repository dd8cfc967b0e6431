"""The motion stage: compressed-domain motion fields for every MotionRead of a row, on CPUs.

It runs as its own Ray Data operator (``DataConfig.motion``, with its own
``concurrency=(min, max)``), so frames may come from DALI on a GPU while the vectors come
from PyAV here; both index frames the same way (the i-th frame the decoder outputs in
presentation order), so ``Decoded.motion[i][t]`` is the motion of frame ``read.start + t``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipelines.tasks.base import Decoded, MotionRead, SamplePlan
from workers.errors import CorruptMediaError
from workers.motion import MotionFrame, motion_grids, motion_vectors
from workers.stage import Stage

GRID = 16
# Reads of one video whose windows lie closer than this share one decode: decoding the gap
# costs less than a second seek, which restarts from a keyframe.
MAX_GAP = 32


def field_shape(read: MotionRead, size: tuple[int, int], grid: int = GRID) -> tuple[int, ...]:
    """Shape of the fields of ``read`` for clips of ``size`` = (H, W) pixels.

    One cell per ``grid`` x ``grid`` pixels of the resized clip, rounding up:
    112x112 -> (T, 7, 7, 2); 128x171 -> (T, 8, 11, 2).
    """
    h, w = size
    return (read.stop - read.start, math.ceil(h / grid), math.ceil(w / grid), 2)


@dataclass(frozen=True)
class _Window:
    """Frames [start, stop) of one video, decoded once for the reads inside it."""

    uri: str
    start: int
    stop: int


def merge_windows(reads: list[MotionRead], max_gap: int = MAX_GAP) -> list[_Window]:
    """Decode windows covering ``reads``; reads of one video less than ``max_gap`` apart share one.

    Example: [10, 26) and [20, 36) and [200, 216) of one video -> [10, 36), [200, 216).
    """
    windows: list[_Window] = []
    for read in sorted(reads, key=lambda r: (r.uri, r.start)):
        last = windows[-1] if windows else None
        if last is not None and last.uri == read.uri and read.start - last.stop < max_gap:
            windows[-1] = _Window(read.uri, last.start, max(last.stop, read.stop))
        else:
            windows.append(_Window(read.uri, read.start, read.stop))
    return windows


class MotionStage(Stage):
    """Fills ``Decoded.motion``: for each ``MotionRead``, float32 (stop - start, h, w, 2).

    Sizing rule: the fields describe the clips the video stage returns for the same plan,
    resized to ``plan.size`` (else ``DataConfig.size``) = (H, W) pixels: one cell per 16x16
    pixels of that frame (``field_shape``), vectors in its pixels per frame (x scaled by
    W / coded width, y by H / coded height), displayed orientation (rotation applied). See
    ``workers.motion.motion_grid`` for what a cell holds.

    Policies:
    - a codec without motion-vector export (VP8/VP9, AV1, HEVC) raises
      ``UnsupportedCodecError``: the row carries zeros and ``error_kind="unsupported_codec"``,
      never zero fields posing as "no motion";
    - a window past the frames the file really has (the header promised more) raises
      ``CorruptMediaError``, handled the same way;
    - cells without vectors (I-frames, intra blocks) are 0.
    """

    name = "motion"

    def fill(self, plans: tuple[SamplePlan, ...], decoded: list[Decoded]) -> None:
        reads = [read for plan in plans for read in plan.motion]
        frames = {w: self._decode(w) for w in merge_windows(reads)}
        for plan, d in zip(plans, decoded):
            size = plan.size or self.data.size
            d.motion = [self._fields(read, size, frames) for read in plan.motion]

    def fill_zeros(self, plans: tuple[SamplePlan, ...], decoded: list[Decoded]) -> None:
        for plan, d in zip(plans, decoded):
            size = plan.size or self.data.size
            d.motion = [np.zeros(field_shape(read, size), np.float32) for read in plan.motion]

    def _decode(self, window: _Window) -> list[MotionFrame]:
        threads = max(1, int(self.stage.num_cpus))
        frames = motion_vectors(window.uri, window.start, window.stop, threads=threads)
        if len(frames) < window.stop - window.start:
            raise CorruptMediaError(
                window.uri,
                f"motion of frames [{window.start}, {window.stop}) asked, but the video ends "
                f"after frame {window.start + len(frames) - 1}",
            )
        return frames

    def _fields(
        self, read: MotionRead, size: tuple[int, int], frames: dict[_Window, list[MotionFrame]]
    ) -> np.ndarray:
        window = next(
            w for w in frames if w.uri == read.uri and w.start <= read.start and read.stop <= w.stop
        )
        wanted = frames[window][read.start - window.start : read.stop - window.start]
        if not wanted:
            return np.zeros(field_shape(read, size), np.float32)
        return motion_grids(wanted, out_size=size, grid=GRID)[0]
