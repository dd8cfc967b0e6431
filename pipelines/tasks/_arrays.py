"""Array helpers shared by the tasks' ``assemble``: deterministic, no randomness."""

from __future__ import annotations

import numpy as np


def frames_as_inputs(frames: np.ndarray) -> np.ndarray:
    """N single frames (N, H, W, 3) as N one-frame inputs (N, 1, H, W, 3) of a shared backbone."""
    return frames[:, None]


def resize_nearest(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Frames (..., H, W, C) resized to ``size`` (h, w) by nearest neighbour; a no-op when
    they already have that size. Used where two videos of different sizes meet in one input
    (the pipeline normally decodes both at the plan's size, so this rarely runs)."""
    h, w = frames.shape[-3], frames.shape[-2]
    if (h, w) == tuple(size):
        return frames
    rows = (np.arange(size[0]) * h // size[0]).astype(np.intp)
    cols = (np.arange(size[1]) * w // size[1]).astype(np.intp)
    return frames[..., rows, :, :][..., cols, :]


def crop_size(h: int, w: int, fraction: float) -> tuple[int, int]:
    """The (h, w) of a crop that keeps ``fraction`` of each side, at least 1 pixel."""
    return max(round(h * fraction), 1), max(round(w * fraction), 1)


def crop_at(frame: np.ndarray, fy: float, fx: float, size: tuple[int, int]) -> np.ndarray:
    """A ``size`` crop of ``frame`` (H, W, C) whose offset is the fraction (fy, fx) of the
    free room. Example: H 112, crop 98, fy 0.5 -> rows 7..104."""
    h, w = frame.shape[:2]
    y = round(fy * (h - size[0]))
    x = round(fx * (w - size[1]))
    return frame[y : y + size[0], x : x + size[1]]


def label_array(label: int) -> np.ndarray:
    """A label as the int64 0-d array every task outputs under ``label``."""
    return np.asarray(label, dtype=np.int64)
