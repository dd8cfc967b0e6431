"""Motion vectors straight from the decoder: FFmpeg's ``+export_mvs``, one record per frame.

The decoder parses the vectors while it decodes; nothing here converts pixels, and the
deblocking filter is skipped (``skip_loop_filter``: it changes pixels, never vectors). Per
frame the cost on top of the decode is one ``bytearray`` copy of the side data (about a
microsecond), so extraction runs at the decoder's own rate.

Frames come out in presentation order, as the decoder outputs them. To divide a vector by
how far its reference picture is, we also need the *decode* order: every packet is tagged
with its decode position (written into ``packet.pts``, which the decoder hands back on the
frame it belongs to), and ``_references`` works the distances out from it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import av
import numpy as np

from workers.errors import CorruptMediaError, UnsupportedCodecError
from workers.io import open_container
from workers.motion._references import H264RefFlags, RawFrame, References
from workers.motion._types import EMPTY_VECTORS, MV_DTYPE, MotionFrame

# Decoders (libavcodec names) that fill AV_FRAME_DATA_MOTION_VECTORS: H.264 and the
# mpegvideo family. Checked with FFmpeg 8.1 by decoding a clip of each codec PyAV can
# encode (h264, mpeg1/2/4, h263, flv, msmpeg4v2/v3, wmv1/2, h261); h263i and msmpeg4v1 go
# through the same h263 decoding code. VP8/VP9, AV1 and HEVC export nothing, and an empty
# field there would read as "no motion".
MV_DECODERS = frozenset(
    {
        "h264",
        "mpeg4",
        "mpeg1video",
        "mpeg2video",
        "h263",
        "h263i",
        "h263p",
        "h261",
        "flv",
        "msmpeg4v1",
        "msmpeg4v2",
        "msmpeg4",
        "wmv1",
        "wmv2",
    }
)

# AVPictureType, by value: 1 is I, 2 is P, 3 is B, 4 is an MPEG-4 sprite (S) picture.
_PICT_TYPES = ("?", "I", "P", "B", "S", "SI", "SP", "BI")
# Containers whose packet pts are presentation times and whose seeks land on a keyframe
# exactly, so a frame's index can be read from the rank of its pts. AVI stores decode
# times (with packed B-frames, 1, 2, 4, 3, ...); raw streams have none.
_PTS_FORMATS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm")
# H.264 lets a decoder hold at most 16 frames for reordering; MPEG-2/4 hold one.
_MAX_REORDER = 16
# Decoders whose B-frame vectors are placeholders: FFmpeg's MPEG-4 part 2 decoder keeps no
# motion for B-VOPs and exports (0, 0) for every block (checked on a clip panning 3 px per
# frame: P-frames give 3 px, B-frames 0).
_PLACEHOLDER_B_DECODERS = frozenset({"mpeg4"})


def check_motion_codec(uri: str, stream: av.video.stream.VideoStream) -> None:
    """Refuse a stream whose decoder exports no motion vectors, before decoding anything.

    Raises:
        UnsupportedCodecError: naming the file and the codec.
    """
    name = stream.codec_context.codec.name
    if name not in MV_DECODERS:
        raise UnsupportedCodecError(
            uri,
            f"codec {name!r} has no motion-vector export in FFmpeg "
            f"(supported: {', '.join(sorted(MV_DECODERS))}); re-encode to H.264 or MPEG-4 "
            "to use motion tasks",
        )


def video_stream(uri: str, container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The first video stream of ``container``.

    Raises:
        CorruptMediaError: the file has no video stream.
    """
    if not container.streams.video:
        raise CorruptMediaError(uri, "no video stream")
    return container.streams.video[0]


def set_threads(stream: av.video.stream.VideoStream, threads: int) -> None:
    """One decoder thread (``threads=1``), FFmpeg's choice (``0``) or ``threads`` threads.

    Frame threads are allowed: with ``+export_mvs`` they give the same vectors as one
    thread (checked on the 337-frame references), only later.
    """
    if threads < 0:
        raise ValueError(f"threads ({threads}) must be >= 0 (0: let FFmpeg choose)")
    stream.thread_type = "SLICE" if threads == 1 else "AUTO"
    stream.thread_count = threads


def iter_motion_vectors(
    uri: str, start: int = 0, stop: int | None = None, *, threads: int = 1
) -> Iterator[MotionFrame]:
    """Motion vectors of frames [start, stop) of ``uri``, one :class:`MotionFrame` per frame.

    Decodes from the nearest keyframe at or before ``start`` when the container has
    trustworthy timestamps (MP4/MOV, Matroska/WebM), else from the first frame.

    Args:
        uri: a local path or ``pyarrow.fs`` URI.
        start: first presentation index.
        stop: one past the last index; ``None`` for the end of the video.
        threads: decoder threads (1: one core; 0: FFmpeg's choice).
    Returns:
        an iterator of frames in presentation order; fewer than ``stop - start`` when the
        video ends first.
    Raises:
        UnsupportedCodecError: the codec exports no motion vectors (raised before decoding).
        CorruptMediaError: the file cannot be demuxed or decoded.
    """
    if start < 0 or (stop is not None and stop < start):
        raise ValueError(f"frame range [{start}, {stop}) must satisfy 0 <= start <= stop")
    end = stop if stop is not None else sys.maxsize
    with open_container(uri) as container:
        stream = video_stream(uri, container)
        check_motion_codec(uri, stream)
        stream.codec_context.options = {"flags2": "+export_mvs", "skip_loop_filter": "all"}
        set_threads(stream, threads)
        ranks = None
        if start > 0 and pts_orders_frames(container):
            try:
                ranks = _seek_to_keyframe(container, stream, start, end)
            except av.FFmpegError as e:
                raise CorruptMediaError(uri, f"demuxing for a seek failed: {e}") from e
        decoder, done = _Decoder(uri, container, stream), start
        try:
            for frame in decoder.frames(start, end, ranks):
                done = frame.index + 1
                yield frame
        except _LostTrack:
            # Timestamps disagree with the decoder's output order: count frames from the
            # first one instead, resuming after the frames already given.
            container.seek(0, stream=stream, backward=True)
            stream.codec_context.flush_buffers()
            yield from decoder.frames(done, end, None)


def motion_vectors(
    uri: str, start: int = 0, stop: int | None = None, *, threads: int = 1
) -> list[MotionFrame]:
    """All frames of :func:`iter_motion_vectors` as a list (same arguments)."""
    return list(iter_motion_vectors(uri, start, stop, threads=threads))


class _LostTrack(Exception):
    """After a seek, a frame's pts is not where the demux pass put it."""


class _Decoder:
    """One open video stream, decoded with motion-vector export."""

    def __init__(
        self, uri: str, container: av.container.InputContainer, stream: av.video.stream.VideoStream
    ) -> None:
        self.uri, self.container, self.stream = uri, container, stream

    def frames(self, start: int, end: int, ranks: dict[int, int] | None) -> Iterator[MotionFrame]:
        """The frames of [start, end), distances resolved, from where the container stands."""
        for frame in References().resolve(self._raw_frames(start, end, ranks)):
            if frame.index >= end:
                return
            if frame.index >= start:
                yield frame

    def _raw_frames(self, start: int, end: int, ranks: dict[int, int] | None) -> Iterator[RawFrame]:
        """Decode and yield raw frames; vectors are copied from ``start`` on.

        ``ranks`` maps a packet's pts to its presentation index after a seek; without it the
        index is the count of frames output so far.
        """
        codec = self.stream.codec_context
        name = codec.codec.name
        ref_flags = H264RefFlags(codec.extradata) if name == "h264" else None
        placeholder_b = name in _PLACEHOLDER_B_DECODERS
        container_pts: list[int | None] = []  # decode position -> the packet's own pts
        is_ref: list[bool | None] = []  # decode position -> reference picture (H.264)
        count, last = 0, -1
        try:
            for packet in _packets_then_flush(self.container, self.stream):
                if packet is not None:
                    is_ref.append(ref_flags(packet) if ref_flags is not None else None)
                    container_pts.append(packet.pts)
                    packet.pts = len(container_pts) - 1  # comes back as frame.pts
                for frame in codec.decode(packet):
                    dpos = frame.pts if frame.pts is not None else count
                    index = count if ranks is None else _rank(ranks, container_pts[dpos])
                    if index <= last and ranks is not None and frame.pts is not None:
                        raise _LostTrack
                    count, last = count + 1, index
                    raw = _raw(frame, index, dpos, index >= start)
                    raw.is_ref = is_ref[dpos] if frame.pts is not None else None
                    raw.exported = not (placeholder_b and raw.pict_type == "B")
                    raw.wanted = start <= index < end
                    yield raw
        except av.FFmpegError as e:
            raise CorruptMediaError(self.uri, f"decode failed after {count} frames: {e}") from e


def _rank(ranks: dict[int, int], pts: int | None) -> int:
    """The presentation index of a packet's pts; -1 when the demux pass did not see it."""
    return ranks.get(pts, -1) if pts is not None else -1


def _packets_then_flush(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> Iterator[av.Packet | None]:
    """The stream's packets (without PyAV's empty end packet), then ``None`` to drain."""
    for packet in container.demux(stream):
        if packet.size:
            yield packet
    yield None


def _raw(frame: av.VideoFrame, index: int, dpos: int, copy: bool) -> RawFrame:
    vectors = EMPTY_VECTORS
    if copy:
        side = frame.side_data.get("MOTION_VECTORS")
        if side is not None:
            # A copy: the side data lives in the frame's buffer, which the decoder recycles.
            # bytearray + frombuffer copies at memcpy speed; .copy() of an aligned
            # structured array goes field by field, 10x slower.
            vectors = np.frombuffer(bytearray(side), MV_DTYPE)
    pict = _PICT_TYPES[frame.pict_type] if 0 <= frame.pict_type < len(_PICT_TYPES) else "?"
    rotation = int(frame.rotation) if copy else 0
    size = (frame.height, frame.width)
    return RawFrame(index, pict, vectors, size, rotation, dpos, None, True, False)


def packet_index(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    limit: int | None = None,
) -> tuple[dict[int, int], list[int]] | None:
    """pts -> presentation index of the frames, and the keyframes' pts, from one demux pass.

    The rank of a packet's pts is its frame's index: packets in decode order with pts
    0, 1536, 512, 1024 give {0: 0, 512: 1, 1024: 2, 1536: 3}. Packets FFmpeg marks as
    discard (before an MP4 edit list starts) produce no frame and get no index.

    Args:
        limit: stop after this many packets. A frame is shown at most ``_MAX_REORDER``
            packets away from where it is decoded, so the ranks below
            ``limit - _MAX_REORDER`` are already final.
    Returns:
        None where a packet has no pts or two share one. The container is left where the
        pass stopped: seek before decoding. Call only where :func:`pts_orders_frames` holds.
    """
    pts: list[int] = []
    keyframes: list[int] = []
    for packet in container.demux(stream):
        if not packet.size or packet.is_discard:
            continue
        if packet.pts is None:
            return None
        pts.append(packet.pts)
        if packet.is_keyframe:
            keyframes.append(packet.pts)
        if limit is not None and len(pts) >= limit:
            break
    ranks = {p: i for i, p in enumerate(sorted(pts))}
    return (ranks, keyframes) if len(ranks) == len(pts) else None


def pts_orders_frames(container: av.container.InputContainer) -> bool:
    """Whether the container's pts give presentation order and seek exactly (MP4, MKV)."""
    return container.format.name in _PTS_FORMATS


def _seek_to_keyframe(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    start: int,
    end: int,
) -> dict[int, int] | None:
    """Seek to the last keyframe at or before frame ``start``; return pts -> frame index.

    The demux pass reads only as far as the window [start, end) needs, not the whole file.

    Returns:
        the ranks of :func:`packet_index`, or None (container back at its start, frames to
        be counted from the first one) when there is none or no keyframe to seek to.
    """
    limit = end + 2 * _MAX_REORDER if end < sys.maxsize else None
    index = packet_index(container, stream, limit)
    usable = [p for p in index[1] if index[0][p] <= start] if index is not None else []
    if index is None or not usable:
        container.seek(0, stream=stream, backward=True)
        return None
    ranks = index[0]
    container.seek(max(usable, key=ranks.__getitem__), stream=stream, backward=True)
    return ranks
