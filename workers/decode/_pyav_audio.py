"""Audio windows with PyAV: decode the best audio stream, resample with FFmpeg's resampler.

Times are seconds from the start of the file (its ``start_time``, which ffmpeg's command
line also counts from), and a window [start_s, end_s) at rate ``sr`` is exactly the output
samples ``round(start_s * sr) .. round(end_s * sr) - 1``: sample n sits at n / sr.
Example: an MP3 whose first frame has pts 0.138 s (its start_time) has its first sample at
0.0 here, as ``ffmpeg -i x.mp3 out.wav`` writes it; MPEG-TS video starting at pts 1.4 s has
frame 0 and its audio at 0.0. (One quirk: audio-only Matroska whose Opus packets carry the
codec delay reports that delay, ~13 ms, as its start_time while the decoder starts at 0, so
its first ~13 ms fall before time 0. With a video stream starting at 0 this cannot happen.)

Edge-case policies:

- **No audio track** (``no_audio``): ``"error"`` raises :class:`~workers.errors.NoAudioError`
  (a CorruptMediaError, kind ``no_audio``, so the pipeline quarantines the video);
  ``"zeros"`` returns silence of shape (1 if mono else 2, S).
  Example: ``audio(1.0, 2.0, 16000, mono=True)`` of test.mp4 (no audio) -> NoAudioError,
  or with ``no_audio="zeros"`` float32 zeros (1, 16000).
- **Audio shorter than the window** (always ``pad``): the samples the file does not have,
  before its first sample or after its last, are zeros; the shape is always
  (C, round(end_s * sr) - round(start_s * sr)).
  Example: 10.0 s of stereo audio, ``audio(9.5, 10.5, 16000)`` -> (2, 16000), of which
  ``[:, 8000:]`` are zeros; ``audio(12, 13, 16000)`` -> zeros (2, 16000).
- **Silent audio** is data, not an error: a silent track gives zeros (what it holds).

Mono is FFmpeg's downmix with the matrix normalised so it cannot clip: stereo -> (L + R) / 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, cast

import av
import numpy as np

from workers.errors import CorruptMediaError, NoAudioError
from workers.io import _reason, open_container

NoAudioPolicy = Literal["error", "zeros"]
NO_AUDIO_POLICIES: tuple[NoAudioPolicy, ...] = ("error", "zeros")

# Decoding starts this long before a window: after a seek a codec needs a frame or two of
# history (AAC's overlap-add, MP3's bit reservoir, Opus' pre-roll) before it is exact.
PREROLL_S = 0.5
# Decoding goes this far past a window so the resampler's filter sees the samples after it.
TAIL_S = 0.05
# Normalise the downmix matrix to a gain of at most 1 (stereo -> mono is the mean).
RESAMPLER_OPTIONS = {"rematrix_maxval": "1.0"}


@dataclass(frozen=True)
class Block:
    """Decoded audio at the stream's own rate: ``data[:, j]`` is sample ``start + j``
    of the timeline (sample k at k / rate seconds)."""

    data: np.ndarray  # float32 (C, N)
    start: int
    rate: int
    layout: str
    from_start: bool  # decoding began at the stream's first packet
    eof: bool  # decoding ran to the end of the stream

    @property
    def end(self) -> int:
        return self.start + self.data.shape[1]

    def covers(self, lo: int, hi: int) -> bool:
        """Whether samples [lo, hi) are all here or known to be outside the stream."""
        return (self.from_start or lo >= self.start) and (self.eof or hi <= self.end)


class AudioDecoder:
    """Audio windows of one file; the container opens on the first call and stays open.

    Args:
        uri: local path, ``file://`` or ``pyarrow.fs`` URI.
        no_audio: policy for a file without an audio stream (see the module docstring).
    """

    def __init__(self, uri: str, *, no_audio: NoAudioPolicy = "error") -> None:
        if no_audio not in NO_AUDIO_POLICIES:
            raise ValueError(f"no_audio ({no_audio!r}) must be one of {NO_AUDIO_POLICIES}")
        self.uri = uri
        self.no_audio = no_audio
        self._container: av.container.InputContainer | None = None
        self._stream: av.audio.stream.AudioStream | None = None
        self._fresh = False  # the container has not been read since it was opened
        self._origin_s = 0.0  # the file's start_time: time 0 of the windows
        self._block: Block | None = None

    def window(
        self, start_s: float, end_s: float, sample_rate: int | None = None, mono: bool = False
    ) -> np.ndarray:
        """Samples [round(start_s * sr), round(end_s * sr)) of the best audio stream.

        Args:
            start_s: window start, seconds on the file's timeline.
            end_s: window end (exclusive), >= start_s.
            sample_rate: output rate; None keeps the stream's rate.
            mono: downmix to one channel.
        Returns:
            float32 (C, S), C = 1 with ``mono``, else the stream's channel count.
        Raises:
            ValueError: bad arguments.
            NoAudioError: no audio stream and ``no_audio="error"``.
            CorruptMediaError: the audio cannot be demuxed or decoded.
        """
        _check_window(start_s, end_s, sample_rate)
        stream = self._audio_stream()
        if stream is None:
            return self._no_audio(start_s, end_s, sample_rate, mono)
        rate = sample_rate or int(stream.codec_context.sample_rate)
        first, last = round(start_s * rate), round(end_s * rate)
        block = self._decoded(start_s - PREROLL_S, end_s + TAIL_S)
        data, at = resample(block, rate, mono)
        return cut(data, at, first, last - first)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container, self._stream, self._block = None, None, None

    # -- the stream -------------------------------------------------------------------------

    def _audio_stream(self) -> av.audio.stream.AudioStream | None:
        if self._container is None:
            self._container = open_container(self.uri)
            self._stream = cast("av.audio.stream.AudioStream | None", self._container.streams.best("audio"))
            self._fresh = True
            start = self._container.start_time  # microseconds (AV_TIME_BASE), None when unknown
            self._origin_s = start / 1e6 if start is not None else 0.0
        return self._stream

    def _no_audio(self, start_s: float, end_s: float, sample_rate: int | None, mono: bool) -> np.ndarray:
        if self.no_audio == "error":
            raise NoAudioError(self.uri, "no audio stream")
        if sample_rate is None:
            raise ValueError(f"{self.uri}: no audio stream, so no_audio='zeros' needs a sample_rate")
        n = round(end_s * sample_rate) - round(start_s * sample_rate)
        return np.zeros((1 if mono else 2, n), dtype=np.float32)

    # -- decoding ---------------------------------------------------------------------------

    def _decoded(self, lo_s: float, hi_s: float) -> Block:
        """Native-rate samples covering [lo_s, hi_s), reusing the last block when it does."""
        stream = cast(av.audio.stream.AudioStream, self._stream)
        rate = int(stream.codec_context.sample_rate)
        lo, hi = math.floor(lo_s * rate), math.ceil(hi_s * rate)
        if self._block is not None and self._block.covers(lo, hi):
            return self._block
        block = self._decode_from(lo_s, hi) if lo_s > self._start_s() else None
        if block is None or block.start > lo:  # landed after the window: decode from the start
            block = self._decode_from(None, hi)
        self._block = block
        return block

    def _start_s(self) -> float:
        stream = cast(av.audio.stream.AudioStream, self._stream)
        if stream.start_time is None or stream.time_base is None:
            return 0.0
        return float(stream.start_time * stream.time_base) - self._origin_s

    def _decode_from(self, seek_s: float | None, hi: int) -> Block:
        """Decode from ``seek_s`` (None: the first packet) until sample ``hi`` or the end."""
        if seek_s is None:
            self._rewind()
        else:
            self._seek(seek_s)
        stream = cast(av.audio.stream.AudioStream, self._stream)  # after a rewind: the new one
        rate, layout = int(stream.codec_context.sample_rate), stream.codec_context.layout.name
        # With nothing decoded, the block is empty where decoding began (no audio after it).
        start = 0 if seek_s is None else round(seek_s * rate)
        chunks: list[np.ndarray] = []
        length, eof = 0, True
        for frame in self._frames():
            if not chunks:
                # The first frame is placed by its pts (rounded to a sample); the rest follow
                # it back to back, as FFmpeg plays them.
                rate, layout = frame.sample_rate, frame.layout.name
                start = round(self._seconds(frame) * rate)
            elif frame.sample_rate != rate or frame.layout.name != layout:
                raise CorruptMediaError(
                    self.uri, f"audio changes format mid-stream ({rate} Hz {layout} -> "
                    f"{frame.sample_rate} Hz {frame.layout.name})"
                )
            chunks.append(frame.to_ndarray())
            length += frame.samples
            if start + length >= hi:
                eof = False
                break
        channels = stream.codec_context.layout.nb_channels
        data = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
        return Block(data, start, rate, layout, from_start=seek_s is None, eof=eof)

    def _seconds(self, frame: av.AudioFrame) -> float:
        """A frame's time on the windows' timeline (0 when it has no pts: the first frame)."""
        if frame.pts is None or frame.time_base is None:
            return 0.0
        return float(frame.pts * frame.time_base) - self._origin_s

    def _rewind(self) -> None:
        if not self._fresh:
            self.close()
            self._audio_stream()
        self._fresh = False

    def _seek(self, seconds: float) -> None:
        stream = cast(av.audio.stream.AudioStream, self._stream)
        container = cast(av.container.InputContainer, self._container)
        self._fresh = False
        try:
            target = (seconds + self._origin_s) / float(stream.time_base or 1)
            container.seek(int(target), stream=stream, backward=True)
        except av.FFmpegError as e:
            raise CorruptMediaError(self.uri, f"audio seek to {seconds:.3f} s failed: {_reason(e)}") from e

    def _frames(self) -> Iterator[av.AudioFrame]:
        """Decoded frames as float planar (``fltp``), at the stream's rate and layout."""
        stream = cast(av.audio.stream.AudioStream, self._stream)
        container = cast(av.container.InputContainer, self._container)
        to_float = av.AudioResampler(format="fltp")  # sample format only: exact, stateless
        try:
            for packet in container.demux(stream):
                for frame in stream.codec_context.decode(packet):
                    yield from to_float.resample(cast(av.AudioFrame, frame))
        except av.FFmpegError as e:
            raise CorruptMediaError(self.uri, f"audio decoding failed: {_reason(e)}") from e


def _check_window(start_s: float, end_s: float, sample_rate: int | None) -> None:
    if not (math.isfinite(start_s) and math.isfinite(end_s)) or end_s < start_s:
        raise ValueError(f"audio window [{start_s}, {end_s}) must be finite with end >= start")
    if sample_rate is not None and sample_rate < 1:
        raise ValueError(f"sample_rate ({sample_rate}) must be >= 1 or None")


def resample(block: Block, rate: int, mono: bool) -> tuple[np.ndarray, int]:
    """``block`` at ``rate`` (and downmixed), with the output index of its first sample.

    The resampler's output grid starts at its first input sample, so the block is first
    padded with zeros back to a sample that lies on both grids.
    Example: 44.1 kHz -> 16 kHz, gcd 100: input samples 0, 441, 882, ... are output samples
    0, 160, 320, ...; a block starting at input sample 1000 gets 118 zeros in front
    (1000 - 882) and its output starts at sample 320.
    """
    data = block.data
    out_channels = 1 if mono else data.shape[0]
    if rate == block.rate and out_channels == data.shape[0]:
        return data, block.start
    if data.shape[1] == 0:
        return np.zeros((out_channels, 0), np.float32), 0
    g = math.gcd(block.rate, rate)
    step = block.rate // g
    pad = block.start % step  # Python's % is >= 0, also for negative starts
    if pad:
        data = np.concatenate([np.zeros((data.shape[0], pad), np.float32), data], axis=1)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp", layout=block.layout)
    frame.sample_rate = block.rate
    layout = "mono" if mono else block.layout
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate, options=RESAMPLER_OPTIONS)
    out = [f.to_ndarray() for f in resampler.resample(frame) + resampler.resample(None)]
    at = (block.start - pad) // step * (rate // g)
    return np.concatenate(out, axis=1), at


def cut(data: np.ndarray, at: int, first: int, length: int) -> np.ndarray:
    """Samples [first, first + length) of a signal whose column 0 is sample ``at``; zeros
    where the signal has none.

    Example: data covers samples 100..199, first=150, length=100 -> columns 50..99 of data,
    then 50 zeros.
    """
    out = np.zeros((data.shape[0], length), dtype=np.float32)
    lo, hi = max(first, at), min(first + length, at + data.shape[1])
    if hi > lo:
        out[:, lo - first : hi - first] = data[:, lo - at : hi - at]
    return out
