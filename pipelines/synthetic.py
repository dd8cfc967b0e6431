"""The embedded default dataset: small synthetic videos with moving objects and a sound
track tied to their motion.

Each video shows textured discs moving over a static textured background; its class is the
kind of motion (``left``, ``right``, ``up``, ``down``, ``orbit``, ``bounce``), so pace and
clip order are visible. So is the arrow of time, which a uniform motion would hide (a
reversed ``left`` video is a forward ``right`` one): as in real video, the motion loses
energy and gains it only in sudden events. Objects are kicked every 0.5-0.8 s and slowed by
friction in between (speed falls to a quarter of the kick's before the next one), and a
bouncing ball loses height with every bounce until a kick sends it back up. Played forward,
objects slow down gradually and speed up abruptly; reversed, the opposite.

The sound is a tone per object whose pitch follows the object's height and whose loudness
follows its speed, so audio and picture are in sync (AVC/AVTS have something to find).
H.264 with B-frames and a keyframe every ``gop`` frames exercises presentation-order decoding
and keyframe seeking; AAC mono 16 kHz audio.

Everything is a pure function of ``seed``; files are written once into a cache folder whose
name holds ``GENERATOR_VERSION``, so videos of an older generator are never reused.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np

CLASSES = ("left", "right", "up", "down", "orbit", "bounce")
# Bumped whenever the same spec would render other pixels or sound: it is part of the cache
# key, so a cache written by an older generator is never taken for this one's.
GENERATOR_VERSION = 3
# Friction: between two kicks an object's speed falls by this factor (4: to a quarter).
SLOWDOWN = 4.0


@dataclass(frozen=True, kw_only=True)
class SyntheticSpec:
    """What to generate. Defaults: 36 videos (6 per class) of 128 frames at 160x120, 25 fps
    (long enough for every task's default plan: pace at stride 8 spans 121 frames)."""

    num_videos: int = 36
    num_frames: int = 128
    width: int = 160
    height: int = 120
    fps: int = 25
    gop: int = 16
    sample_rate: int = 16000
    classes: tuple[str, ...] = CLASSES
    codec: str = "libx264"  # or "libvpx-vp9" (what DALI's CPU decoder reads)
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.classes) - set(CLASSES)
        if not self.classes or unknown:
            raise ValueError(f"classes {self.classes} must be a non-empty subset of {CLASSES}")

    def key(self) -> str:
        """The cache folder's name: the generator's version and every field."""
        fields = "-".join(f"{k}{v}" for k, v in asdict(self).items())
        return f"synthetic-v{GENERATOR_VERSION}-{fields}"


def cache_dir() -> Path:
    return Path(os.environ.get("CLIPSTREAM_CACHE", Path.home() / ".cache" / "clipstream"))


def _texture(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Blocky random colour texture: gives the encoder edges to track (real motion vectors)."""
    small = rng.integers(0, 256, size=(h // cell + 1, w // cell + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, cell, axis=0), cell, axis=1)[:h, :w]


def _travel(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """How far an object kicked every ``period`` s and slowed by friction in between has
    gone at times ``t``, in units of its mean speed (so ``travel(t) ~ t``); 0 at t = 0.

    Speed after a kick decays as exp(-k s) with exp(-k period) = 1 / SLOWDOWN: a saw-tooth
    that drops slowly and jumps up at once, which only forward time shows (real objects
    lose energy to friction and gain it in events: a push, a kick, a collision).
    Example (SLOWDOWN 4): speed runs 1.85, 1.5, ... 0.46 times the mean, then 1.85 again.
    """
    period = rng.uniform(0.5, 0.8)
    k = np.log(SLOWDOWN) / period
    per_kick = (1.0 - np.exp(-k * period)) / k  # distance between two kicks at unit top speed
    tt = t + rng.uniform(0.0, period)  # a random phase: the last kick came before t = 0
    kicks, since = np.floor(tt / period), np.mod(tt, period)
    dist = kicks * per_kick + (1.0 - np.exp(-k * since)) / k
    return (dist - dist[0]) * period / per_kick


def _bounce_height(t: np.ndarray, rng: np.random.Generator, top: float) -> np.ndarray:
    """Height above the floor of a ball under gravity that keeps 0.56 of its height at each
    bounce (restitution 0.75) and is kicked back to ``top`` once a bounce falls below a
    third of it: apexes top, 0.56 top, 0.32 top, top, ... A bounce of apex h lasts
    ``full * sqrt(h / top)`` s, a full one 0.6-1.0 s."""
    full, restitution = rng.uniform(0.6, 1.0), 0.75
    heights = [1.0, restitution**2, restitution**4]
    tt = t + rng.uniform(0.0, full)
    out = np.zeros_like(t)
    begin, i = 0.0, int(rng.integers(len(heights)))
    while begin <= tt[-1]:
        h = heights[i % len(heights)]
        dur = full * np.sqrt(h)
        inside = (tt >= begin) & (tt < begin + dur)
        s = (tt[inside] - begin) / dur  # 0..1 through this bounce: a parabola 0 -> h -> 0
        out[inside] = 4.0 * h * s * (1.0 - s)
        begin, i = begin + dur, i + 1
    return top * out


def _trajectory(kind: str, t: np.ndarray, rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """(T, 2) centre positions in pixels for motion ``kind`` at times ``t`` (seconds)."""
    speed = rng.uniform(25, 45)  # px/s, on average (see _travel)
    x0, y0 = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
    u = _travel(t, rng)
    if kind in ("left", "right"):
        x = x0 + (1 if kind == "right" else -1) * speed * u
        y = np.full_like(t, y0)
    elif kind in ("up", "down"):
        x = np.full_like(t, x0)
        y = y0 + (1 if kind == "down" else -1) * speed * u * 0.75
    elif kind == "orbit":
        r, omega = rng.uniform(0.15, 0.3) * h, rng.uniform(1.5, 3.0)
        x, y = w / 2 + r * np.cos(omega * u), h / 2 + r * np.sin(omega * u)
    else:  # bounce: drifting sideways, losing height at each bounce
        x = x0 + rng.uniform(-10, 10) * u
        y = h * 0.85 - _bounce_height(t, rng, h * 0.6)
    return np.stack([np.mod(x, w), np.mod(y, h)], axis=1)  # wrap: an object never parks at an edge


def _render(spec: SyntheticSpec, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Frames uint8 (T, H, W, 3) and mono audio float32 (S,) of one video."""
    h, w, n = spec.height, spec.width, spec.num_frames
    t = np.arange(n) / spec.fps
    # A dim, low-contrast background and bright, saturated objects with a fine texture:
    # the objects stand out (the motion is learnable) and both carry edges the encoder can
    # track (real motion vectors, also on the static background: zero).
    background = (48 + _texture(rng, h, w, 8) // 4).astype(np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    objects = []
    for _ in range(int(rng.integers(1, 3))):
        # Bright in every channel (above the background's 48-111 even in its weakest), one
        # channel full: the object stays visible in any single channel (OPN's channel
        # splitting feeds one channel as grey), as real objects keep their luminance edges.
        colour = rng.integers(144, 256, size=3)
        colour[rng.integers(3)] = 255
        tex = np.clip(colour * 0.75 + _texture(rng, h, w, 4) // 4, 0, 255).astype(np.uint8)
        objects.append((_trajectory(kind, t, rng, w, h), rng.uniform(0.12, 0.2) * h, tex))
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        frame = background.copy()
        for path, radius, tex in objects:
            cx, cy = path[i]
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
            frame[mask] = tex[mask]
        frames[i] = frame
    # Audio: per object a tone, pitch from height (higher on screen = higher pitch),
    # loudness from speed; interpolated from frame rate to sample rate.
    s = np.arange(round(n / spec.fps * spec.sample_rate)) / spec.sample_rate
    audio = np.zeros_like(s)
    for path, _, _ in objects:
        speed = np.r_[0.0, np.linalg.norm(np.diff(path, axis=0), axis=1)] * spec.fps
        pitch = np.interp(s, t, 220.0 + 660.0 * (1.0 - path[:, 1] / h))
        loud = np.interp(s, t, np.clip(speed / 90.0, 0.05, 1.0))
        audio += 0.3 * loud * np.sin(2 * np.pi * np.cumsum(pitch) / spec.sample_rate)
    return frames, audio.astype(np.float32)


CODEC_OPTIONS = {
    # B-frames (presentation order differs from decode order) and a fixed GOP (no scene cuts).
    "libx264": {"bf": "2", "crf": "20", "preset": "veryfast", "threads": "1", "sc_threshold": "0"},
    "libvpx-vp9": {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8", "threads": "1"},
}


def write_video(path: Path, frames: np.ndarray, audio: np.ndarray | None, *, fps: int,
                sample_rate: int = 16000, gop: int = 16, codec: str = "libx264",
                options: dict[str, str] | None = None) -> None:
    """Encode frames uint8 (T, H, W, 3) and optional mono audio float32 (S,) with PyAV."""
    with av.open(str(path), "w") as out:
        vs = cast(av.VideoStream, out.add_stream(codec, rate=fps))
        vs.width, vs.height = frames.shape[2], frames.shape[1]
        vs.pix_fmt = "yuv420p"
        vs.codec_context.gop_size = gop
        vs.options = {**CODEC_OPTIONS.get(codec, {}), **(options or {})}
        aus = None
        if audio is not None:
            aus = cast(av.AudioStream, out.add_stream("aac", rate=sample_rate, layout="mono"))
        for f in frames:
            for pkt in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        if aus is not None and audio is not None:
            chunk = 1024
            for start in range(0, len(audio), chunk):
                part = audio[start:start + chunk][None, :]
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(part), format="fltp", layout="mono")
                af.sample_rate = sample_rate
                af.pts = start
                af.time_base = Fraction(1, sample_rate)
                for pkt in aus.encode(af):
                    out.mux(pkt)
            for pkt in aus.encode():
                out.mux(pkt)


def generate(root: Path, spec: SyntheticSpec = SyntheticSpec()) -> list[Path]:
    """Write ``spec.num_videos`` videos as ``root/<class>/<class>_<i>.mp4`` (skips existing)."""
    paths = []
    for i in range(spec.num_videos):
        kind = spec.classes[i % len(spec.classes)]
        path = root / kind / f"{kind}_{i:04d}.mp4"
        paths.append(path)
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        frames, audio = _render(spec, kind, np.random.default_rng((spec.seed, i)))
        tmp = path.with_suffix(".tmp.mp4")
        write_video(tmp, frames, audio, fps=spec.fps, sample_rate=spec.sample_rate, gop=spec.gop,
                    codec=spec.codec)
        tmp.rename(path)  # atomic: a half-written file is never taken for a finished one
    return paths


def default_manifest(spec: SyntheticSpec = SyntheticSpec(), *, motion: bool = True,
                     address: str | None = None) -> Path:
    """The manifest of the embedded default dataset, generated and indexed once into the cache."""
    from pipelines.manifest import index_paths, write_manifest

    root = cache_dir() / spec.key()
    manifest = root / ("manifest-motion.parquet" if motion else "manifest.parquet")
    if manifest.exists():
        return manifest
    generate(root / "videos", spec)
    result = index_paths([str(root / "videos")], root=str(root / "videos"),
                         label_from_dir=True, motion=motion, address=address)
    write_manifest(result.rows, manifest)
    (root / "spec.json").write_text(json.dumps(asdict(spec)))
    return manifest
