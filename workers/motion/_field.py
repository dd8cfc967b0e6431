"""Dense motion fields from block vectors: one (dx, dy) per grid cell, in pixels per frame.

Conventions, shared by every function here:

- A field is float32 (h, w, 2): channel 0 is x (right is positive), channel 1 is y (down is
  positive), like optical flow. It is *forward* motion: a cell of (2, -1) holds content
  that moves 2 px right and 1 px up from this frame to the next.
- A cell covers ``grid x grid`` pixels of the frame the field describes; a frame of H x W
  pixels gives ceil(H/grid) x ceil(W/grid) cells (a 256-high, 340-wide frame gives 16 x 22
  cells at grid 16: the last column holds the 4-pixel strip of the partial macroblock).
- Intra-coded blocks and I-frames have no vector: their cells are 0 and the mask says so.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from workers.motion._types import EMPTY_VECTORS, MV_DTYPE, MotionFrame

_RECORD = np.dtype((np.void, MV_DTYPE.itemsize))


def forward_motion(
    vectors: np.ndarray, past: int | np.ndarray = 1, future: int | np.ndarray = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Per-vector forward motion in pixels per frame, and each block's area.

    FFmpeg's vector points from the block to where it comes from:
    ``src = dst + motion / motion_scale``. Content moving by ``u`` px per frame sits
    ``past`` frames earlier at ``dst - u * past``, so for a past reference (``source < 0``)
    ``u = -(motion / motion_scale) / past``; for a future one (``source > 0``) it sits at
    ``dst + u * future`` and ``u = (motion / motion_scale) / future``.
    Example: H.264 (quarter-pel, scale 4), P-frame, ``motion_x = -8``, past 1 -> u = +2 px.

    Args:
        vectors: structured array of ``MV_DTYPE``.
        past, future: distances in frames to the references (see ``MotionFrame``), one
            for all vectors or one per vector.
    Returns:
        float32 (N, 2) motion and float32 (N,) block areas in pixels.
    """
    scale = np.maximum(vectors["motion_scale"], 1).astype(np.float32)
    past_f = np.asarray(past, np.float32)
    divisor = np.where(vectors["source"] > 0, np.asarray(future, np.float32), -past_f) * scale
    motion = np.empty((len(vectors), 2), np.float32)
    motion[:, 0] = vectors["motion_x"] / divisor
    motion[:, 1] = vectors["motion_y"] / divisor
    area = vectors["w"].astype(np.float32) * vectors["h"]
    return motion, area


def motion_grid(
    mvs: MotionFrame | np.ndarray,
    frame_size: tuple[int, int] | None = None,
    out_size: tuple[int, int] | None = None,
    grid: int = 16,
) -> np.ndarray:
    """The dense forward-motion field of one frame, float32 (h, w, 2) in pixels per frame.

    Each cell is the area-weighted mean of the motion of the blocks that overlap it: four
    8x8 blocks moving (0, 0), (0, 0), (4, 0), (4, 0) give one 16x16 cell (2, 0); a B-block
    with a past and a future vector counts both. See :func:`motion_grid_with_mask`.
    """
    return motion_grid_with_mask(mvs, frame_size, out_size, grid)[0]


def motion_grid_with_mask(
    mvs: MotionFrame | np.ndarray,
    frame_size: tuple[int, int] | None = None,
    out_size: tuple[int, int] | None = None,
    grid: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """The field of :func:`motion_grid` and where it is backed by vectors.

    Args:
        mvs: a :class:`MotionFrame` (its size, reference distances, display rotation and
            stand-in are used) or a bare ``MV_DTYPE`` array (distances 1, no rotation).
        frame_size: coded (H, W) of the picture; required with a bare array.
        out_size: (H', W') of the frame the field should describe, in displayed
            orientation, e.g. the clip size of the run. Vectors are scaled to its pixels
            (x by W'/W, y by H'/H) and blocks are area-averaged onto its grid.
            None: the frame's own displayed size.
        grid: cell size in pixels of the output frame.
    Returns:
        float32 (ceil(H'/grid), ceil(W'/grid), 2) field and bool mask of the same (h, w):
        True where at least one inter-coded block overlaps the cell; masked-out cells are 0.
    """
    if not isinstance(mvs, MotionFrame):
        if frame_size is None:
            raise ValueError("frame_size (H, W) is required when mvs is a bare vector array")
        mvs = MotionFrame(0, "?", mvs, (int(frame_size[0]), int(frame_size[1])))
    elif frame_size is not None:
        mvs = dataclasses.replace(mvs, size=(int(frame_size[0]), int(frame_size[1])))
    fields, masks = motion_grids([mvs], out_size, grid)
    return fields[0], masks[0]


def motion_grids(
    frames: Sequence[MotionFrame], out_size: tuple[int, int] | None = None, grid: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`motion_grid_with_mask` of T frames of one video at once, faster than T calls.

    Returns:
        float32 (T, h, w, 2) fields and bool (T, h, w) masks.
    Raises:
        ValueError: no frames, or frames of several sizes without an ``out_size``.
    """
    if grid < 1:
        raise ValueError(f"grid ({grid}) must be >= 1")
    if not frames:
        raise ValueError("motion_grids needs at least one frame")
    if len({(f.size, f.rotation) for f in frames}) > 1:  # the stream changed size midway
        if out_size is None:
            raise ValueError("frames of several sizes need an out_size to share one grid")
        each = [motion_grids([f], out_size, grid) for f in frames]
        return np.concatenate([f for f, _ in each]), np.concatenate([m for _, m in each])
    (height, width), turns = frames[0].size, (frames[0].rotation // 90) % 4
    out_h, out_w = out_size if out_size is not None else _turned((height, width), turns)
    out_h, out_w = _turned((out_h, out_w), turns)  # splat in coded orientation, then turn
    cells = (math.ceil(out_h / grid), math.ceil(out_w / grid))
    vectors, past, future, frame_of = _stack(frames)
    motion, _ = forward_motion(vectors, past, future)
    scale = (out_w / width, out_h / height)
    motion *= np.array(scale, np.float32)
    field, weight = _splat(vectors, frame_of, motion, (height, width), scale, cells, grid, len(frames))
    field = rotate_field(field, turns * 90, axes=(1, 2))
    return field, np.rot90(weight > 0, turns, axes=(1, 2)).copy()


def _turned(size: tuple[int, int], turns: int) -> tuple[int, int]:
    return (size[1], size[0]) if turns % 2 else size


def _stack(frames: Sequence[MotionFrame]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All frames' vectors in one array, with per-vector distances and frame number.

    A frame with placeholder vectors contributes its stand-in's (see ``MotionFrame``).
    """
    sources = [f.motion_source() for f in frames]
    parts = [s.vectors if s is not None else EMPTY_VECTORS for s in sources]
    counts = [len(v) for v in parts]
    past = np.repeat([s.past if s is not None else 1 for s in sources], counts)
    future = np.repeat([s.future if s is not None else 1 for s in sources], counts)
    frame_of = np.repeat(np.arange(len(frames)), counts)
    # Concatenated as opaque 40-byte records: numpy copies an aligned structured dtype field
    # by field, 20x slower.
    records = np.concatenate([v.view(_RECORD) for v in parts]).view(MV_DTYPE)
    return records, past, future, frame_of


def _splat(
    vectors: np.ndarray,
    frame_of: np.ndarray,
    motion: np.ndarray,
    size: tuple[int, int],
    scale: tuple[float, float],
    cells: tuple[int, int],
    grid: int,
    count: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted average of per-block ``motion`` over grid cells (no Python loop per block).

    A block of w x h centred on (dst_x, dst_y), clipped to the frame and scaled to the output,
    is split over the cells it overlaps. Along an axis a block spans at most
    ``span = ceil(size / grid) + 1`` cells, starting at its first cell: so each block adds
    to the ``span x span`` cells at fixed offsets from its first one, with weight 0 where it
    does not reach. The grid gets ``span`` spare rows and columns for those offsets to land
    in, cut off at the end.

    Returns:
        float32 (count, rows, cols, 2) mean motion and float64 (count, rows, cols) weights.
    """
    rows, cols = cells
    x_first, x_overlap = _axis_overlap(vectors["dst_x"], vectors["w"], size[1], scale[0], grid)
    y_first, y_overlap = _axis_overlap(vectors["dst_y"], vectors["h"], size[0], scale[1], grid)
    span_y, span_x = y_overlap.shape[1], x_overlap.shape[1]
    wide_rows, wide_cols = rows + span_y, cols + span_x
    first = frame_of * (wide_rows * wide_cols) + y_first * wide_cols + x_first
    offsets = (np.arange(span_y)[:, None] * wide_cols + np.arange(span_x)).ravel()
    index = (first[:, None] + offsets).ravel()
    area = (y_overlap[:, :, None] * x_overlap[:, None, :]).reshape(len(vectors), span_y * span_x)
    total = count * wide_rows * wide_cols
    sums = [np.bincount(index, w.ravel(), total) for w in (area, area * motion[:, :1], area * motion[:, 1:])]
    shape = (count, wide_rows, wide_cols)
    weight, sum_x, sum_y = (a.reshape(shape)[:, :rows, :cols] for a in sums)
    field = np.zeros((count, rows, cols, 2), np.float32)
    covered = weight > 0
    field[covered, 0] = sum_x[covered] / weight[covered]
    field[covered, 1] = sum_y[covered] / weight[covered]
    return field, weight


def _axis_overlap(
    centre: np.ndarray, length: np.ndarray, limit: int, scale: float, grid: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per block, its first cell along one axis and how many output pixels of it and of the
    next ``span - 1`` cells it covers.

    Example (scale 1, grid 16, span 2): an 8-px block centred at x=20 covers [16, 24) ->
    first cell 1, overlaps (8, 0); a 16-px block centred at x=40 covers [32, 48) -> 2, (16, 0).
    """
    half = length.astype(np.float32) / 2
    lo = np.clip(centre - half, 0, limit) * np.float32(scale)
    hi = np.clip(centre + half, 0, limit) * np.float32(scale)
    span = math.ceil(float(length.max(initial=0)) * scale / grid) + 1
    first = (lo // grid).astype(np.int64)
    edges = (first[:, None] + np.arange(span + 1, dtype=np.int64)) * np.float32(grid)
    overlap = np.minimum(hi[:, None], edges[:, 1:]) - np.maximum(lo[:, None], edges[:, :-1])
    return first, np.maximum(overlap, 0)


def rotate_field(field: np.ndarray, rotation: int, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """Turn a field by ``rotation`` degrees counter-clockwise (a multiple of 90), vectors too.

    Matches ``np.rot90(frame, rotation // 90)`` on the pixels, the turn PyAV's
    ``frame.rotation`` asks for to show a frame upright. Turning the picture a quarter
    counter-clockwise moves a point (x, y) to (y, W-1-x), so a displacement (dx, dy)
    becomes (dy, -dx): rightward motion (1, 0) becomes upward (0, -1).

    Args:
        field: (..., h, w, ..., 2) with the (h, w) axes at ``axes``, e.g. (1, 2) for (T, h, w, 2).
        rotation: degrees counter-clockwise.
    """
    if rotation % 90:
        raise ValueError(f"rotation ({rotation}) must be a multiple of 90 degrees")
    turns = (rotation // 90) % 4
    out = np.rot90(field, turns, axes=axes).copy()
    for _ in range(turns):
        out[..., 0], out[..., 1] = out[..., 1].copy(), -out[..., 0]
    return out


def accumulate(fields: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Total displacement over a window: the per-cell sum of T fields, float32 (h, w, 2).

    A plain (Eulerian) sum at fixed cells, not a trajectory: over 3 frames of (1, 0) a cell
    accumulates (3, 0). Good for windows of a few frames, where content stays near its
    cell; over long windows fast-moving content has left the cell it is summed in.
    """
    stack = np.asarray(fields, dtype=np.float32)
    if stack.ndim != 4 or stack.shape[-1] != 2:
        raise ValueError(f"fields must be (T, h, w, 2), got shape {stack.shape}")
    return stack.sum(axis=0, dtype=np.float32)


def flow_to_color(field: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """A preview picture of a field: hue = direction, value = magnitude, uint8 (h, w, 3) RGB.

    Direction follows the colour wheel from +x (image right): right is red, down (+y) is
    yellow-green, left is cyan, up is violet. Full brightness at ``max_magnitude`` px per
    frame (default: the field's largest magnitude); black where there is no motion.
    """
    vx, vy = field[..., 0].astype(np.float32), field[..., 1].astype(np.float32)
    magnitude = np.hypot(vx, vy)
    top = float(magnitude.max(initial=0.0)) if max_magnitude is None else float(max_magnitude)
    value = np.clip(magnitude / top, 0, 1) if top > 0 else np.zeros_like(magnitude)
    hue = (np.arctan2(vy, vx) / (2 * np.pi)) % 1.0
    return _hsv_to_rgb(hue, value)


def _hsv_to_rgb(hue: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Full-saturation HSV to uint8 RGB: each channel is a clipped triangle wave of hue."""
    sector = hue[..., None] * 6.0 - np.array([0.0, 2.0, 4.0])  # red, green, blue peaks
    sector = (sector + 3.0) % 6.0 - 3.0  # distance from each peak, in sixths, in [-3, 3)
    level = np.clip(2.0 - np.abs(sector), 0.0, 1.0)
    return np.round(level * value[..., None] * 255).astype(np.uint8)


def mean_magnitude(frame: MotionFrame) -> float:
    """Area-weighted mean forward-motion magnitude of a frame's vectors, in pixels per frame.

    0 for a frame without vectors (I-frames, all-intra frames). A frame with placeholder
    vectors takes its stand-in's value (see ``MotionFrame``).
    """
    source = frame.motion_source()
    if source is None or not len(source.vectors):
        return 0.0
    vectors, past, future = source.vectors, source.past, source.future
    motion, area = forward_motion(vectors, past, future)
    return float(np.hypot(motion[:, 0], motion[:, 1]) @ area / area.sum())
