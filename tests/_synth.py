"""Media the tests write themselves: lossless video (so decoded frames equal the written
ones exactly) with a sine tone, and small audio files in every codec/layout/rate we claim."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np

TONE_HZ = 440.0


def frame_pixels(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """``n`` distinct RGB frames: a seeded noise texture moving one pixel per frame (cheap to
    predict, so GOPs have real P/B-frames) with the frame number in the first pixels, so a
    frame delivered at the wrong index can never pass for the right one."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, size=(height, width + n, 3), dtype=np.uint8)
    frames = np.stack([texture[:, i : i + width] for i in range(n)])
    frames[:, 0, 0, 0] = np.arange(n) % 256
    frames[:, 0, 0, 1] = np.arange(n) // 256
    return frames


def tone(seconds: float, rate: int, channels: int, amplitude: float = 0.5) -> np.ndarray:
    """float32 (C, S) sine at ``TONE_HZ``; channel c scaled by 1 / (c + 1), so a swapped or
    dropped channel shows."""
    t = np.arange(round(seconds * rate)) / rate
    wave = amplitude * np.sin(2 * np.pi * TONE_HZ * t)
    return np.stack([wave / (c + 1) for c in range(channels)]).astype(np.float32)


def write_video(
    path: Path,
    *,
    n: int = 48,
    height: int = 48,
    width: int = 64,
    fps: int = 25,
    gop: int = 12,
    lossless: bool = True,
    audio_rate: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Write an H.264 clip with a keyframe every ``gop`` frames and, with ``audio_rate``, a
    stereo PCM tone as long as the video (use a ``.mkv`` path for the tone).

    ``lossless``: RGB at qp 0 (x264 then codes no B-frames), so decoded frames equal the
    written ones; else 4:2:0 with two B-frames between references (decode order differs
    from presentation order), compared against a sequential decode instead.

    Returns:
        The frames written, uint8 (n, height, width, 3).
    """
    frames = frame_pixels(n, height, width, seed)
    with av.open(str(path), "w") as container:
        video: Any = container.add_stream("libx264rgb" if lossless else "libx264", rate=fps)
        video.width, video.height = width, height
        video.pix_fmt = "rgb24" if lossless else "yuv420p"
        x264 = f"keyint={gop}:min-keyint={gop}:scenecut=0"  # keyframes exactly every gop
        video.options = (
            {"qp": "0", "x264-params": x264} if lossless else {"x264-params": f"{x264}:bframes=2:b-adapt=0"}
        )
        audio: Any = None
        if audio_rate is not None:
            audio = container.add_stream("pcm_s16le", rate=audio_rate, layout="stereo")
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio_rate is not None:
            _encode_audio(container, audio, tone(n / fps, audio_rate, 2), audio_rate, "stereo")
    return frames


def write_audio(
    path: Path, codec: str, rate: int, layout: str, seconds: float = 1.5, **options: str
) -> np.ndarray:
    """Write a tone with an audio encoder (``aac``, ``libmp3lame``, ``libopus``, ``vorbis``,
    ``pcm_s16le``, ``flac``) into the container ``path``'s suffix names.

    Returns:
        The tone that went in, float32 (C, S) at ``rate``.
    """
    channels = av.AudioLayout(layout).nb_channels
    wave = tone(seconds, rate, channels)
    with av.open(str(path), "w") as container:
        stream: Any = container.add_stream(codec, rate=rate, layout=layout)
        if codec == "vorbis":
            options = {"strict": "experimental", **options}  # FFmpeg's own vorbis encoder
        if options:
            stream.options = dict(options)
        _encode_audio(container, stream, wave, rate, layout)
    return wave


def _encode_audio(container: Any, stream: Any, wave: np.ndarray, rate: int, layout: str) -> None:
    """Feed ``wave`` to the encoder in frames of its frame size (1024 when it has none)."""
    fmt = stream.codec_context.format.name
    size = stream.codec_context.frame_size or 1024
    resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate)
    for start in range(0, wave.shape[1], size):
        chunk = np.ascontiguousarray(wave[:, start : start + size])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = start
        for converted in resampler.resample(frame):
            for packet in stream.encode(converted):
                container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_8k(path: Path) -> Path:
    """One black H.264 frame declaring 7680x4320 (a few KB at this bitrate)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=1, options={"preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = 7680, 4320, "yuv420p"
        frame = av.VideoFrame(7680, 4320, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path
