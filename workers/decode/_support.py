"""Which backend decodes which codec, and how close its frames must come to PyAV's.

The conformance suite asks these before running a (backend, file) pair, so a codec a
backend lacks is a skip with a reason, never a failure; the stages ask the same question
to route a video (see the DALI backend's ``codec_policy``).
"""

from __future__ import annotations

from functools import lru_cache

import av


@lru_cache(maxsize=64)
def _ffmpeg_decodes(codec: str) -> bool:
    try:
        av.codec.Codec(codec, "r")
    except (av.codec.codec.UnknownCodecError, ValueError):
        return False
    return True


def supports(backend: str, device: str, codec: str) -> bool:
    """Whether ``backend`` on ``device`` decodes ``codec`` (a manifest ``video_codec``).

    Example: ``supports("dali", "cpu", "h264")`` is False (DALI's CPU decoder has VP8,
    VP9 and MJPEG only); ``supports("pyav", "cpu", "h264")`` is True.
    """
    if backend == "pyav":
        return device == "cpu" and _ffmpeg_decodes(codec)
    if backend == "dali":
        from workers.decode._dali_batch import supports as dali_supports

        return dali_supports("gpu" if device == "gpu" else "cpu", codec)
    raise ValueError(f"backend {backend!r} is not one of 'pyav', 'dali'")


def psnr_bound(backend: str, device: str) -> float | None:
    """The PSNR (dB) a backend's frames keep against PyAV's; None: bit-exact (PyAV itself)."""
    if backend == "pyav":
        return None
    if backend == "dali":
        from workers.decode._dali_batch import psnr_bound as dali_bound

        return dali_bound("gpu" if device == "gpu" else "cpu")
    raise ValueError(f"backend {backend!r} is not one of 'pyav', 'dali'")
