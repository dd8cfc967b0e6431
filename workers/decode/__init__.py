"""Video decoding behind one protocol.

    with open_video(uri, backend="pyav") as r:
        r.meta                                   # VideoMeta
        r.frames([0, 5, 9], size=None)           # uint8 (N, H, W, 3) RGB, displayed orientation
        r.audio(1.0, 2.0, sample_rate=16000, mono=True)   # float32 (C, S)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, Self, runtime_checkable

import numpy as np

from workers.decode._support import psnr_bound, supports
from workers.meta import VideoMeta

Backend = Literal["pyav", "dali"]
Device = Literal["cpu", "gpu"]


@runtime_checkable
class VideoReader(Protocol):
    """One open video. Frame index i is the i-th frame the decoder outputs in presentation
    order; no frame is duplicated or dropped to force a constant rate."""

    @property
    def meta(self) -> VideoMeta: ...

    def frames(self, indices: Sequence[int], size: tuple[int, int] | None = None) -> np.ndarray: ...

    def audio(
        self,
        start_s: float,
        end_s: float,
        sample_rate: int | None = None,
        mono: bool = False,
    ) -> np.ndarray: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


def open_video(
    uri: str,
    backend: Backend = "pyav",
    *,
    device: Device = "cpu",
    meta: VideoMeta | None = None,
    **options: object,
) -> VideoReader:
    """Open ``uri`` with a decoder backend.

    Args:
        uri: a local path or a ``pyarrow.fs`` URI (``s3://``, ``gs://``, ``hdfs://``).
        backend: ``"pyav"`` (FFmpeg on CPU) or ``"dali"`` (NVIDIA DALI).
        device: for DALI, ``"gpu"`` (NVDEC) or ``"cpu"`` (VP8/VP9/MJPEG only).
        meta: the manifest row, when known; saves probing (keyframe index, frame count).
        options: backend options (e.g. ``max_pixels``).
    Returns:
        a :class:`VideoReader`; close it, or use it as a context manager.
    """
    if backend == "pyav":
        from workers.decode._pyav import PyAVReader

        return PyAVReader(uri, meta=meta, **options)  # type: ignore[arg-type]
    if backend == "dali":
        from workers.decode._dali import DALIReader

        return DALIReader(uri, device=device, meta=meta, **options)  # type: ignore[arg-type]
    raise ValueError(f"backend {backend!r} is not one of 'pyav', 'dali'")


__all__ = ["Backend", "Device", "VideoReader", "open_video", "psnr_bound", "supports"]
