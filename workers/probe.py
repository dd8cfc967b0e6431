"""Probing one video file with PyAV into a :class:`~workers.meta.VideoMeta` (a manifest row).

Nothing is taken from the header on trust: the frame count, the keyframe index, the frame
timing (and so VFR detection) and the audio duration come from reading every packet, because
raw ``.264`` streams and MPEG-PS carry no frame count and headers of damaged files lie.
One demux pass does it all; frames are decoded only as far as needed (the first frame for the
display rotation; every frame with ``verify=True`` or when packets carry no timestamps).

Example (B-frames, decode order I P B B, pts 0 3 1 2): sorting packets by pts gives
presentation order I B B P, so ``num_frames=4`` and ``keyframes=(0,)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, cast
from urllib.parse import urlparse

import av
import av.logging
import numpy as np

from workers.errors import CorruptMediaError, TooManyPixelsError
from workers.io import REMOTE_SCHEMES, _reason, open_container, scheme_of
from workers.meta import VideoMeta, video_id_of

VideoStream = av.video.stream.VideoStream
AudioStream = av.audio.stream.AudioStream

# A frame-to-frame gap may differ from the typical one by this fraction (plus one tick of the
# time base, for millisecond-rounded Matroska timestamps: 33, 34, 33 ms is still 30 fps).
VFR_TOLERANCE = 0.1
# The bound the index command uses by default: 4096x4096 covers every Kinetics/YFCC video
# and refuses 8K (7680x4320) streams, whose frames would cost ~100 MB each as RGB.
DEFAULT_MAX_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class FrameTable:
    """Timing of a video stream's frames in presentation order.

    Attributes:
        pts: presentation timestamp of each frame (stream time base), ascending; empty when
            the stream has no timestamps (raw ``.264``, some MPEG-PS).
        keyframes: indices of the frames a decoder can start from.
        time_base: the stream's time base.
        num_frames: number of frames (packets with data).
    """

    pts: tuple[int, ...]
    keyframes: tuple[int, ...]
    time_base: Fraction
    num_frames: int

    def times_s(self) -> np.ndarray:
        """Presentation times in seconds (float64), empty without timestamps."""
        return np.asarray(self.pts, dtype=np.float64) * float(self.time_base)


@dataclass
class _Scan:
    """What one demux pass collects."""

    pts: list[int | None] = field(default_factory=list)
    keys: list[bool] = field(default_factory=list)
    durations: list[int] = field(default_factory=list)
    audio_start: int | None = None
    audio_end: int | None = None


class _Decoder:
    """Decodes video packets as the demuxer hands them over, as far as the probe needs.

    Always decodes until the first frame (its display matrix gives the rotation; its format
    and size the pixel format and frame size); with ``decode_all`` it decodes everything,
    counting frames, keyframes and errors.
    """

    def __init__(self, stream: VideoStream, decode_all: bool) -> None:
        self.stream = stream
        self.decode_all = decode_all
        self.rotation: int | None = None
        self.pix_fmt = ""
        self.size = (0, 0)
        self.decoded = 0
        self.keyframes: list[int] = []
        self.frame_pts: list[int | None] = []
        self.error = ""

    def feed(self, packet: av.Packet | None) -> None:
        """Decode one packet (``None`` flushes); errors are recorded, not raised."""
        if not self.decode_all and self.rotation is not None:
            return
        try:
            for frame in self.stream.decode(packet):
                self._take(frame)
        except av.FFmpegError as e:
            # Keep going: a damaged packet in the middle still lets us count the rest.
            self.error = self.error or _describe(e)

    def _take(self, frame: av.VideoFrame) -> None:
        if self.rotation is None:
            # frame.rotation is FFmpeg's counter-clockwise angle; store the clockwise turn
            # a viewer applies (iPhone portrait: -90 -> 90).
            self.rotation = round(-frame.rotation) % 360
            self.pix_fmt = frame.format.name
            self.size = (frame.width, frame.height)
        if frame.key_frame:
            self.keyframes.append(self.decoded)
        self.frame_pts.append(frame.pts)
        self.decoded += 1


def file_size(uri: str) -> int:
    """Size of ``uri`` in bytes (local path, ``file://`` or ``pyarrow.fs`` URI).

    Raises:
        CorruptMediaError: the file does not exist.
    """
    scheme = scheme_of(uri)
    if scheme in REMOTE_SCHEMES:
        import pyarrow.fs as pafs

        fs, path = pafs.FileSystem.from_uri(uri)
        info = fs.get_file_info(path)
        if info.type != pafs.FileType.File:
            raise CorruptMediaError(uri, "file not found")
        return int(info.size)
    path = urlparse(uri).path if scheme == "file" else uri
    try:
        return os.stat(path).st_size
    except FileNotFoundError as e:
        raise CorruptMediaError(uri, "file not found") from e


def probe(uri: str, *, verify: bool = False, max_pixels: int | None = None) -> VideoMeta:
    """Probe one video file.

    Args:
        uri: local path, ``file://`` or ``pyarrow.fs`` URI.
        verify: decode every frame and fail unless all of them decode.
        max_pixels: refuse streams declaring more pixels per frame (None: no bound).
    Returns:
        The manifest row, ``status="ok"``.
    Raises:
        CorruptMediaError: empty, unreadable or damaged file, no video stream, a frame that
            does not decode with ``verify``; TooManyPixelsError past ``max_pixels``.
    """
    size = file_size(uri)
    if size == 0:
        raise CorruptMediaError(uri, "empty file")
    with _ffmpeg_reasons(uri), open_container(uri) as container:
        video = _best_video(uri, container)
        _check_pixels(uri, video, max_pixels)
        audio = cast("AudioStream | None", container.streams.best("audio"))
        meta = _probe_open(uri, container, video, audio, verify)
    return replace(meta, size_bytes=size)


@contextmanager
def _ffmpeg_reasons(uri: str) -> Iterator[None]:
    """Add FFmpeg's own error line to a CorruptMediaError raised inside.

    The error code alone says "Invalid data found when processing input" for a truncated
    MP4; FFmpeg's log says why ("moov atom not found"), which is what a person can act on.
    PyAV attaches that line to its exceptions only while FFmpeg logging is on, so it is on
    here, captured rather than printed, and restored afterwards.
    """
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture(local=False):
            try:
                yield
            except CorruptMediaError as e:
                detail = _log_line(e.__cause__)
                if not detail or detail in e.reason:
                    raise
                raise type(e)(uri, f"{e.reason} ({detail})") from e
    finally:
        av.logging.set_level(level)


def _log_line(e: BaseException | None) -> str:
    """FFmpeg's log line attached to an FFmpegError (``""`` when none)."""
    log = getattr(e, "log", None)
    return str(log[2]).strip() if log else ""


def _describe(e: av.FFmpegError) -> str:
    """The error's reason with FFmpeg's log line: "Invalid data ... (Invalid NAL unit size)"."""
    detail = _log_line(e)
    return f"{_reason(e)} ({detail})" if detail else _reason(e)


def frame_table(uri: str) -> FrameTable:
    """Frame timing and keyframe index of the best video stream of ``uri`` (no verify).

    Raises:
        CorruptMediaError: as :func:`probe`.
    """
    with _ffmpeg_reasons(uri), open_container(uri) as container:
        video = _best_video(uri, container)
        scan, decoder = _scan(uri, container, video, None, decode_all=False)
        return _frame_table(uri, video, scan, decoder)


def _best_video(uri: str, container: av.container.InputContainer) -> VideoStream:
    """The stream FFmpeg picks as best (``av_find_best_stream``), as every backend does."""
    video = container.streams.best("video")
    if video is None:
        raise CorruptMediaError(uri, "no video stream")
    return cast(VideoStream, video)


def _probe_open(
    uri: str,
    container: av.container.InputContainer,
    video: VideoStream,
    audio: AudioStream | None,
    verify: bool,
) -> VideoMeta:
    scan, decoder = _scan(uri, container, video, audio, decode_all=verify)
    if verify:
        _check_all_decoded(uri, scan, decoder)
    table = _frame_table(uri, video, scan, decoder)
    rotation = decoder.rotation or 0
    # The decoded frame's size, not the header's: it is what every reader will get.
    coded_w, coded_h = decoder.size
    width, height = (coded_h, coded_w) if rotation in (90, 270) else (coded_w, coded_h)
    fps = _avg_fps(video, table)
    duration = _duration_s(table, scan, fps)
    return VideoMeta(
        video_id=video_id_of(uri),
        uri=uri,
        container=container.format.name.split(",")[0],
        video_codec=_codec_name(video),
        width=int(width),
        height=int(height),
        rotation=rotation,
        avg_fps=fps,
        num_frames=table.num_frames,
        duration_s=duration,
        keyframes=table.keyframes,
        is_vfr=is_vfr(table.pts),
        pix_fmt=decoder.pix_fmt,
        **_audio_fields(audio, scan),
    )


def _check_pixels(uri: str, video: VideoStream, max_pixels: int | None) -> None:
    """Refuse oversized streams from the declared size, before any frame is allocated."""
    cc = video.codec_context
    if cc.width <= 0 or cc.height <= 0:
        raise CorruptMediaError(
            uri, f"video stream declares no frame size ({cc.width}x{cc.height})"
        )
    if max_pixels is not None and cc.width * cc.height > max_pixels:
        raise TooManyPixelsError(
            uri, f"{cc.width}x{cc.height} = {cc.width * cc.height} pixels > bound {max_pixels}"
        )


def _scan(
    uri: str,
    container: av.container.InputContainer,
    video: VideoStream,
    audio: AudioStream | None,
    decode_all: bool,
) -> tuple[_Scan, _Decoder]:
    """One pass over the packets of ``video`` (and ``audio``), decoding as needed."""
    if decode_all:
        video.thread_type = "AUTO"  # frame threads: a full decode is the slow part of verify
    scan, decoder = _Scan(), _Decoder(video, decode_all)
    streams = [s for s in (video, audio) if s is not None]
    try:
        for packet in container.demux(*streams):
            if packet.size == 0:  # the demuxer's end-of-stream marker, not a frame
                continue
            if packet.stream.index == video.index:
                _add_video(scan, packet)
                decoder.feed(packet)
            else:
                _add_audio(scan, packet)
    except av.FFmpegError as e:
        raise CorruptMediaError(
            uri, f"demuxing failed after {len(scan.pts)} frames: {_describe(e)}"
        ) from e
    decoder.feed(None)
    if not scan.pts:
        raise CorruptMediaError(uri, "video stream has no frames")
    if decoder.rotation is None:
        raise CorruptMediaError(
            uri, f"no frame decodes: {decoder.error or 'decoder output nothing'}"
        )
    return scan, decoder


def _add_video(scan: _Scan, packet: av.Packet) -> None:
    scan.pts.append(packet.pts)
    scan.keys.append(bool(packet.is_keyframe))
    scan.durations.append(int(packet.duration or 0))


def _add_audio(scan: _Scan, packet: av.Packet) -> None:
    if packet.pts is None:
        return
    end = packet.pts + int(packet.duration or 0)
    scan.audio_start = packet.pts if scan.audio_start is None else min(scan.audio_start, packet.pts)
    scan.audio_end = end if scan.audio_end is None else max(scan.audio_end, end)


def _check_all_decoded(uri: str, scan: _Scan, decoder: _Decoder) -> None:
    total = len(scan.pts)
    if decoder.error or decoder.decoded < total:
        why = decoder.error or "decoder output fewer frames than packets"
        raise CorruptMediaError(uri, f"only {decoder.decoded} of {total} frames decode: {why}")


def _frame_table(uri: str, video: VideoStream, scan: _Scan, decoder: _Decoder) -> FrameTable:
    """Presentation-order timing and keyframes.

    With a pts on every packet, sorting by pts is presentation order. Without (raw streams,
    MPEG-PS that stamps only some packets), only the decoder knows the order, so the frames
    are decoded and the keyframe flags read in output order.
    """
    tb = Fraction(video.time_base) if video.time_base else Fraction(0)
    n = len(scan.pts)
    if all(p is not None for p in scan.pts):
        order = sorted(range(n), key=lambda i: scan.pts[i])  # type: ignore[arg-type,return-value]
        pts = tuple(int(scan.pts[i]) for i in order)  # type: ignore[arg-type]
        keys = tuple(k for k, i in enumerate(order) if scan.keys[i])
        return FrameTable(pts=pts, keyframes=keys, time_base=tb, num_frames=n)
    if not decoder.decode_all:
        decoder = _decode_all(uri, video)
    return FrameTable(pts=(), keyframes=tuple(decoder.keyframes), time_base=tb, num_frames=n)


def _decode_all(uri: str, video: VideoStream) -> _Decoder:
    """Decode the whole video stream of ``uri`` again (a fresh container: no seeking needed)."""
    with open_container(uri) as container:
        stream = cast(VideoStream, container.streams[video.index])
        decoder = _Decoder(stream, decode_all=True)
        stream.thread_type = "AUTO"
        for packet in container.demux(stream):
            if packet.size:
                decoder.feed(packet)
        decoder.feed(None)
    return decoder


def is_vfr(pts: tuple[int, ...] | list[int]) -> bool:
    """Whether frame-to-frame gaps (sorted pts, one time base) are not constant.

    A gap may differ from the median gap by ``VFR_TOLERANCE`` of it plus one tick.
    Example: 512, 512, 1024, 512 -> True; 33, 34, 33, 33 (ms) -> False.
    """
    if len(pts) < 3:
        return False
    gaps = np.diff(np.asarray(pts, dtype=np.int64))
    median = float(np.median(gaps))
    return bool(np.max(np.abs(gaps.astype(np.float64) - median)) > VFR_TOLERANCE * median + 1)


def _avg_fps(video: VideoStream, table: FrameTable) -> float:
    """FFmpeg's average frame rate (from timestamps), else its guess, else frames / span."""
    for rate in (video.average_rate, video.guessed_rate, video.base_rate):
        if rate:
            return float(rate)
    if len(table.pts) > 1:
        return (len(table.pts) - 1) / float((table.pts[-1] - table.pts[0]) * table.time_base)
    return 0.0


def _duration_s(table: FrameTable, scan: _Scan, fps: float) -> float:
    """From the first frame's start to the last frame's end; frames / fps without pts."""
    if not table.pts:
        return table.num_frames / fps if fps else 0.0
    last = table.pts[-1]
    last_duration = max((d for p, d in zip(scan.pts, scan.durations) if p == last), default=0)
    if last_duration <= 0 and len(table.pts) > 1:
        last_duration = int(np.median(np.diff(table.pts)))
    return float((last + last_duration - table.pts[0]) * table.time_base)


def _codec_name(stream: Any) -> str:
    """The codec's own name (``av1``), not the decoder's (``libdav1d``, ``mp3float``)."""
    codec = stream.codec_context.codec
    return str(getattr(codec, "canonical_name", None) or codec.name)


def _audio_fields(audio: AudioStream | None, scan: _Scan) -> dict[str, Any]:
    if audio is None:
        return {"has_audio": False}
    cc = audio.codec_context
    return {
        "has_audio": True,
        "audio_codec": _codec_name(audio),
        "audio_sample_rate": int(cc.sample_rate or 0),
        "audio_channels": int(cc.layout.nb_channels if cc.layout else cc.channels),
        "audio_duration_s": _audio_duration_s(audio, scan),
    }


def _audio_duration_s(audio: AudioStream, scan: _Scan) -> float:
    """Span of the audio packets; the stream header's duration if packets have no pts."""
    tb = audio.time_base
    if scan.audio_start is not None and scan.audio_end is not None and tb:
        return float((scan.audio_end - scan.audio_start) * tb)
    if audio.duration and tb:
        return float(audio.duration * tb)
    return 0.0


def audio_info(uri: str) -> dict[str, Any]:
    """The audio fields of a manifest row for the best audio stream of ``uri``.

    Works on audio-only files too (a ``.wav`` has no video, so :func:`probe` refuses it).

    Returns:
        ``has_audio``, ``audio_codec``, ``audio_sample_rate``, ``audio_channels``,
        ``audio_duration_s`` (from the packets).
    """
    with _ffmpeg_reasons(uri), open_container(uri) as container:
        audio = cast("AudioStream | None", container.streams.best("audio"))
        scan = _Scan()
        if audio is not None:
            try:
                for packet in container.demux(audio):
                    if packet.size:
                        _add_audio(scan, packet)
            except av.FFmpegError as e:
                raise CorruptMediaError(uri, f"demuxing audio failed: {_describe(e)}") from e
        return _audio_fields(audio, scan)
