"""Whole-file passes: the I-frames alone (``keyframes``) and per-frame motion (``mean_motion``)."""

from __future__ import annotations

import av
import numpy as np

from workers.errors import CorruptMediaError
from workers.io import open_container
from workers.motion._field import mean_magnitude
from workers.motion._vectors import (
    iter_motion_vectors,
    packet_index,
    pts_orders_frames,
    set_threads,
    video_stream,
)


def mean_motion(uri: str, *, threads: int = 1) -> np.ndarray:
    """Per-frame mean motion-vector magnitude of a whole video, float32 (num_frames,).

    Each value is the area-weighted mean of the frame's forward motion in pixels per frame
    (see ``forward_motion``); 0 for I-frames and frames without inter blocks. What
    ``clipstream index --motion`` stores, and what high-motion planners sample by.

    Raises:
        UnsupportedCodecError: the codec exports no motion vectors (VP8/VP9, AV1, HEVC).
        CorruptMediaError: the file cannot be decoded.
    """
    values = [mean_magnitude(frame) for frame in iter_motion_vectors(uri, threads=threads)]
    return np.asarray(values, dtype=np.float32)


def keyframes(
    uri: str, size: tuple[int, int] | None = None, *, threads: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Decode only the keyframes (I-frames a decoder can start from) of ``uri``, as RGB.

    The decoder skips every other frame (``skip_frame = "NONKEY"``), so this runs at the rate
    of decoding the I-frames alone. Their presentation indices come from the ranks of the
    packets' timestamps (MP4/MOV, Matroska/WebM); other containers (AVI, raw streams) are
    decoded in full to count frames, converting only the keyframes.

    Args:
        uri: a local path or ``pyarrow.fs`` URI; any codec FFmpeg decodes.
        size: (H, W) to resize to (bilinear, FFmpeg's swscale), in displayed orientation;
            None for the native size.
        threads: decoder threads (1: one core; 0: FFmpeg's choice).
    Returns:
        int64 (K,) presentation indices and uint8 (K, H, W, 3) RGB frames, upright (display
        rotation applied, as the video decoders return them).
    Raises:
        CorruptMediaError: the file cannot be decoded.
    """
    with open_container(uri) as container:
        stream = video_stream(uri, container)
        set_threads(stream, threads)
        index = None
        try:
            if pts_orders_frames(container):
                index = packet_index(container, stream)
                first = min(index[1]) if index is not None and index[1] else 0
                container.seek(first, stream=stream, backward=True)
            if index is None:
                found = _keyframes_counted(container, stream, size)
            else:
                stream.codec_context.skip_frame = "NONKEY"
                ranks = index[0]
                found = [(_index_of(ranks, f), _rgb(f, size)) for f in container.decode(stream)]
        except (av.FFmpegError, KeyError) as e:
            raise CorruptMediaError(uri, f"keyframe decode failed: {e!r}") from e
    indices = np.array([i for i, _ in found], dtype=np.int64)
    if not found:
        h, w = size or (stream.height, stream.width)
        return indices, np.zeros((0, h, w, 3), np.uint8)
    return indices, np.stack([f for _, f in found])


def _index_of(ranks: dict[int, int], frame: av.VideoFrame) -> int:
    if frame.pts is None or frame.pts not in ranks:
        raise KeyError(f"a keyframe's pts ({frame.pts}) is not among the packets' pts")
    return ranks[frame.pts]


def _keyframes_counted(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    size: tuple[int, int] | None,
) -> list[tuple[int, np.ndarray]]:
    """Every frame decoded and counted; only key frames are converted."""
    return [
        (i, _rgb(frame, size)) for i, frame in enumerate(container.decode(stream)) if frame.key_frame
    ]


def _rgb(frame: av.VideoFrame, size: tuple[int, int] | None) -> np.ndarray:
    """The frame as upright uint8 RGB, resized in displayed orientation."""
    turns = (frame.rotation // 90) % 4
    if size is None:
        rgb = frame.to_ndarray(format="rgb24")
    else:
        h, w = size if turns % 2 == 0 else size[::-1]
        rgb = frame.reformat(width=w, height=h, format="rgb24").to_ndarray()
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb
