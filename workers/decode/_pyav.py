"""The PyAV (FFmpeg on CPU) backend of the :class:`~workers.decode.VideoReader` protocol.

Frame index i is the i-th frame the decoder outputs (presentation order). To fetch a set of
indices the reader decodes forward and jumps with the keyframe index only where that saves
work, so only the GOPs that hold wanted frames are decoded:

    keyframes 0, 100, 200; indices [5, 7, 150, 151]
    -> decode 0..7 from the start, seek to keyframe 100, decode 100..151: 60 frames, not 152.

The container and the decoder stay open across calls: a later call that asks for frames
further on in the same GOP continues decoding where the last one stopped.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from typing import Self, cast

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from workers.decode._frames import ResizeGraph, rotate, wanted_slots
from workers.decode._pyav_audio import AudioDecoder, NoAudioPolicy
from workers.errors import CorruptMediaError, TooManyPixelsError
from workers.io import _reason, open_container
from workers.meta import VideoMeta
from workers.probe import FrameTable, frame_table, probe

VideoStream = av.video.stream.VideoStream
Frames = Iterator[tuple[int, av.VideoFrame]]

DEFAULT_INTERPOLATION = "bilinear"


@dataclass
class DecodeStats:
    """Work counters of one reader, for benchmarks and tests.

    Attributes:
        decoded: frames the decoder output, including those decoded only to reach a wanted one.
        delivered: frames returned to callers (a duplicate index counts each time).
        seeks: container seeks (a reopen to rewind a stream without timestamps counts too).
    """

    decoded: int = 0
    delivered: int = 0
    seeks: int = 0

    def decoded_per_delivered(self) -> float:
        """Decoded frames per delivered frame (1.0: nothing decoded in vain)."""
        return self.decoded / self.delivered if self.delivered else 0.0


class PyAVReader:
    """One open video, decoded by FFmpeg through PyAV.

    Args:
        uri: local path, ``file://`` or ``pyarrow.fs`` URI.
        meta: the manifest row; probed (:func:`workers.probe.probe`) when not given. Its
            ``keyframes`` decide where to seek, ``num_frames`` bounds the indices and
            ``rotation`` turns frames to their displayed orientation.
        max_pixels: refuse streams declaring more pixels per frame (None: no bound).
        threads: decoder threads; ``None`` lets FFmpeg pick (frame and slice threads),
            ``1`` decodes on the calling thread only (a fair per-core measure).
        stream_index: decode this stream instead of the one FFmpeg picks as best. The
            manifest describes the best stream only, so another one is decoded from its
            start (rewinding by reopening), never by seeking.
        interpolation: swscale algorithm for ``size=`` (``bilinear``, ``bicubic``, ``area``...).
        no_audio: what :meth:`audio` does for a file without audio (see ``NoAudioPolicy``).
    Raises:
        CorruptMediaError: the file cannot be opened or has no (such) video stream;
            TooManyPixelsError when the declared frame size exceeds ``max_pixels``.
    """

    def __init__(
        self,
        uri: str,
        *,
        meta: VideoMeta | None = None,
        max_pixels: int | None = None,
        threads: int | None = None,
        stream_index: int | None = None,
        interpolation: str = DEFAULT_INTERPOLATION,
        no_audio: NoAudioPolicy = "error",
    ) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads ({threads}) must be >= 1, or None for FFmpeg's choice")
        self.uri = uri
        self.stats = DecodeStats()
        self._threads = threads
        self._stream_index = stream_index
        self._interpolation = interpolation
        self._container = open_container(uri)
        try:
            self._stream = self._open_stream(max_pixels)
            self._meta = meta if meta is not None else self._probe(max_pixels)
        except BaseException:
            self._container.close()
            raise
        self._keyframes = sorted(set(self._meta.keyframes) | {0})
        self._table: FrameTable | None = None
        self._cursor: Frames = self._numbered(self._packets(), 0, None)
        self._pos = 0  # index of the next frame the cursor yields
        self._reformatter = VideoReformatter()
        self._graph: ResizeGraph | None = None
        self._audio = AudioDecoder(uri, no_audio=no_audio)

    # -- protocol ---------------------------------------------------------------------------

    @property
    def meta(self) -> VideoMeta:
        return self._meta

    def frames(self, indices: Sequence[int], size: tuple[int, int] | None = None) -> np.ndarray:
        """Frames ``indices`` in the order asked (duplicates allowed), RGB, displayed orientation.

        Args:
            indices: frame indices in [0, num_frames).
            size: ``(height, width)`` of the output, resized by FFmpeg's scaler; None: native.
        Returns:
            uint8 array (N, H, W, 3).
        Raises:
            ValueError: an index out of range, or a bad size.
            CorruptMediaError: the decoder fails or stops before a wanted frame.
        """
        wanted = self._check_indices(indices)
        height, width = self._out_size(size)
        out = np.empty((len(wanted), height, width, 3), dtype=np.uint8)
        for index, slots in wanted_slots(wanted):
            out[slots] = self._to_rgb(self._frame_at(index), size, (height, width), index)
        self.stats.delivered += len(wanted)
        return out

    def audio(
        self,
        start_s: float,
        end_s: float,
        sample_rate: int | None = None,
        mono: bool = False,
    ) -> np.ndarray:
        """Audio window [start_s, end_s) as float32 (C, S); see :class:`AudioDecoder`."""
        return self._audio.window(start_s, end_s, sample_rate=sample_rate, mono=mono)

    def close(self) -> None:
        self._cursor = iter(())
        self._graph = None
        self._container.close()
        self._audio.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- opening ----------------------------------------------------------------------------

    def _open_stream(self, max_pixels: int | None) -> VideoStream:
        """The stream to decode, threaded as asked, after the pixel bound is checked."""
        streams = self._container.streams
        best = streams.best("video")
        stream = best
        if self._stream_index is not None:
            stream = next((s for s in streams.video if s.index == self._stream_index), None)
            if stream is not None and best is not None and stream.index == best.index:
                self._stream_index = None  # the manifest's stream after all: seek as usual
        if stream is None:
            which = "no video stream" if self._stream_index is None else f"no video stream #{self._stream_index}"
            raise CorruptMediaError(self.uri, which)
        stream = cast(VideoStream, stream)
        cc = stream.codec_context
        if max_pixels is not None and cc.width * cc.height > max_pixels:
            raise TooManyPixelsError(
                self.uri, f"{cc.width}x{cc.height} = {cc.width * cc.height} pixels > bound {max_pixels}"
            )
        self._set_threads(stream)
        return stream

    def _set_threads(self, stream: VideoStream) -> None:
        # Frame threads pay off on runs of frames; threads=1 keeps every frame on this thread.
        cc = stream.codec_context
        cc.thread_type = "NONE" if self._threads == 1 else "AUTO"
        cc.thread_count = self._threads or 0

    def _probe(self, max_pixels: int | None) -> VideoMeta:
        """The manifest row of the file. It describes the best stream; for another stream
        the size comes from that stream and the frame count and keyframes are left unknown,
        so that stream is decoded from the start (rewinding by reopening) and never seeks."""
        meta = probe(self.uri, max_pixels=max_pixels)
        if self._stream_index is None:
            return meta
        cc = self._stream.codec_context
        turned = meta.rotation in (90, 270)
        width, height = (cc.height, cc.width) if turned else (cc.width, cc.height)
        return replace(meta, width=width, height=height, num_frames=0, keyframes=())

    def _seek_table(self) -> FrameTable:
        """Presentation timestamps of every frame (one demux pass, loaded on the first jump)."""
        if self._table is None:
            self._table = frame_table(self.uri)
        return self._table

    # -- positioning ------------------------------------------------------------------------

    def _frame_at(self, index: int) -> av.VideoFrame:
        """Decode forward to frame ``index``, jumping to its keyframe when that saves work."""
        key = self._keyframes[bisect.bisect_right(self._keyframes, index) - 1]
        if self._pos > index or (self._pos < key and self._can_seek()):
            self._restart(key)
        for i, frame in self._cursor:
            self._pos = i + 1
            if i == index:
                return frame
        raise CorruptMediaError(
            self.uri, f"frame {index} never came out of the decoder (it stopped after {self._pos} frames)"
        )

    def _can_seek(self) -> bool:
        return self._stream_index is None and bool(self._seek_table().pts)

    def _restart(self, key: int) -> None:
        """Point the cursor at keyframe ``key``.

        Frame 0, and every keyframe of a stream without timestamps (raw ``.264``, most
        MPEG-PS), is reached by reopening and counting from the first frame. Otherwise the
        demuxer seeks to the keyframe's pts; should it land past it (MP4 seeks by dts: with
        B-frames a later keyframe's dts can precede this one's pts) the previous keyframe is
        tried, down to frame 0.
        """
        self.stats.seeks += 1
        pts = self._seek_table().pts if key > 0 and self._can_seek() else ()
        while key > 0 and pts:
            target = pts[key]
            self._container.seek(target, stream=self._stream, backward=True)
            packets = self._packets()
            first = next(packets, None)
            if first is not None and (first.pts is None or first.pts <= target):
                self._cursor, self._pos = self._numbered(chain([first], packets), key, target), key
                return
            key = self._keyframes[bisect.bisect_left(self._keyframes, key) - 1]
        self._rewind()

    def _rewind(self) -> None:
        """Back to frame 0 by reopening: works for every container, timestamps or not."""
        index = self._stream.index  # read before closing: a closed container frees its streams
        self._container.close()
        self._container = open_container(self.uri)
        self._stream = cast(VideoStream, self._container.streams[index])
        self._set_threads(self._stream)
        self._cursor, self._pos = self._numbered(self._packets(), 0, None), 0

    def _packets(self) -> Iterator[av.Packet]:
        """Packets of the video stream from the demuxer's position (the last one flushes)."""
        try:
            yield from self._container.demux(self._stream)
        except av.FFmpegError as e:
            raise CorruptMediaError(self.uri, f"demuxing failed: {_reason(e)}") from e

    def _numbered(self, packets: Iterator[av.Packet], index: int, anchor_pts: int | None) -> Frames:
        """Decoded frames numbered from the anchor frame (pts ``anchor_pts``, index ``index``).

        Frames before the anchor are leading pictures of an open GOP (pts before the
        keyframe's, references in the previous GOP) and are skipped. With no anchor pts the
        first frame out is the anchor (decoding from the start of the file).
        Example: seek to keyframe 100 (pts 3200); out come pts 3168 (leading, skipped),
        3200 -> 100, 3232 -> 101, ...
        """
        anchored = anchor_pts is None
        for frame in self._decode(packets):
            self.stats.decoded += 1
            if not anchored:
                if frame.pts != anchor_pts:
                    if frame.pts is not None and frame.pts > anchor_pts:  # type: ignore[operator]
                        raise CorruptMediaError(self.uri, f"keyframe {index} (pts {anchor_pts}) did not decode")
                    continue
                anchored = True
            yield index, frame
            index += 1

    def _decode(self, packets: Iterator[av.Packet]) -> Iterator[av.VideoFrame]:
        codec = self._stream.codec_context
        try:
            for packet in packets:
                yield from cast(list[av.VideoFrame], codec.decode(packet))
        except av.FFmpegError as e:
            raise CorruptMediaError(
                self.uri, f"decoding failed after frame {self._pos - 1}: {_reason(e)}"
            ) from e

    # -- conversion -------------------------------------------------------------------------

    def _check_indices(self, indices: Sequence[int]) -> list[int]:
        arr = np.asarray(indices)
        if arr.size and (arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"indices must be a 1-D sequence of ints; got {arr.dtype} shape {arr.shape}")
        wanted = [int(i) for i in arr.reshape(-1)]
        n = self._meta.num_frames
        bad = [i for i in wanted if i < 0 or (n > 0 and i >= n)]
        if bad:
            raise ValueError(f"{self.uri}: frame indices {bad[:5]} out of range [0, {n}) ({len(bad)} bad)")
        return wanted

    def _out_size(self, size: tuple[int, int] | None) -> tuple[int, int]:
        """(height, width) of the output frames, displayed orientation."""
        if size is not None:
            height, width = size
            if height < 1 or width < 1:
                raise ValueError(f"size ({height}, {width}) must be positive (height, width)")
            return int(height), int(width)
        cc = self._stream.codec_context
        turned = self._meta.rotation in (90, 270)
        return (cc.width, cc.height) if turned else (cc.height, cc.width)

    def _to_rgb(
        self, frame: av.VideoFrame, size: tuple[int, int] | None, shape: tuple[int, int], index: int
    ) -> np.ndarray:
        """RGB24 of one frame: swscale at native size (then a lossless turn), or one filter
        graph doing what ``ffmpeg -vf scale=W:H`` does (turn, then scale) when resizing."""
        if size is None:
            threads = 1 if self._threads == 1 else 0
            rgb = self._reformatter.reformat(frame, format="rgb24", threads=threads).to_ndarray()
            rgb = rotate(rgb, self._meta.rotation)
        else:
            if self._graph is None or not self._graph.accepts(frame):
                self._graph = ResizeGraph(
                    frame, self._stream.time_base, size, self._meta.rotation,
                    self._interpolation, threads=1 if self._threads == 1 else 0,
                )
            rgb = self._graph.convert(frame)
        if rgb.shape[:2] != shape:
            raise CorruptMediaError(
                self.uri, f"frame {index} is {rgb.shape[1]}x{rgb.shape[0]}, stream declares {shape[1]}x{shape[0]}"
            )
        return rgb

