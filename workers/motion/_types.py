"""The record of one frame's motion vectors, and FFmpeg's vector layout."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# FFmpeg's AVMotionVector (libavutil/motion_vector.h), as it lies in memory: 40 bytes.
MV_DTYPE = np.dtype(
    [
        ("source", "<i4"),  # -1: reference in the past, +1: in the future (direction only)
        ("w", "u1"),  # block width and height: 16 or 8
        ("h", "u1"),
        ("src_x", "<i2"),  # block centre in the reference picture
        ("src_y", "<i2"),
        ("dst_x", "<i2"),  # block centre in this picture
        ("dst_y", "<i2"),
        ("flags", "<u8"),
        ("motion_x", "<i4"),  # src = dst + motion / motion_scale
        ("motion_y", "<i4"),
        ("motion_scale", "<u2"),  # 4 for quarter-pel H.264, 2 for half-pel MPEG-4
    ],
    align=True,
)

EMPTY_VECTORS = np.zeros(0, MV_DTYPE)


@dataclass(frozen=True, slots=True)
class MotionFrame:
    """The motion vectors of one decoded frame.

    Attributes:
        index: presentation index (the i-th frame the decoder outputs).
        pict_type: ``"I"``, ``"P"``, ``"B"`` (or ``"S"``, ... for rarer picture types).
        vectors: structured array of :data:`MV_DTYPE` exactly as FFmpeg exports it, one
            record per block and direction; empty for I-frames.
        size: coded (height, width) of the picture, before display rotation.
        rotation: display rotation in degrees counter-clockwise (PyAV's ``frame.rotation``).
        past: frames to the reference its past vectors point to (see ``_references``).
        future: frames to the reference its future vectors point to (1 when it has none).
        exported: False where the decoder exports placeholder vectors: FFmpeg's MPEG-4
            part 2 decoder gives every B-frame block a (0, 0) vector, which would read as
            "no motion".
        stand_in: for a frame with ``exported=False``, the frame whose vectors describe its
            motion: the next P-frame, whose vectors span the interval this frame lies in
            (``I0 B1 B2 P3``: P3's vectors cover frames 1..3, divided by its distance 3), or
            the previous P-frame where an I-frame comes next (``P9 B10 B11 I12``: P9).
            ``motion_grid`` and ``mean_magnitude`` use it in place of the placeholders.
    """

    index: int
    pict_type: str
    vectors: np.ndarray
    size: tuple[int, int]
    rotation: int = 0
    past: int = 1
    future: int = 1
    exported: bool = True
    stand_in: MotionFrame | None = None

    def motion_source(self) -> MotionFrame | None:
        """The frame whose vectors give this frame's motion (itself, its stand-in, or None)."""
        return self if self.exported else self.stand_in
