"""The benchmark's files and plans: Kinetics-shaped H.264 videos and three sampling plans.

Files: ``num_videos`` synthetic videos of 340x256, 10 s at 30 fps (300 frames), H.264 with
a keyframe every ``gop`` frames (B-frames on), written once into the cache; plus the real
Kinetics-400 clips of ``../shared/media`` (340x256 H.264, long GOPs) when that folder exists.
The synthetic picture pans over a textured scene with moving objects and a little grain, so
the encoder spends bits as on camera footage (a static scene decodes unrealistically fast).

Plans (all 16-frame-clip tasks at 112x112, planned by :class:`~pipelines.planner.Planner`):

- ``dense``: one clip of 16 consecutive frames at a random start.
- ``vcop``: the VCOP paper's plan: 3 clips of 16 frames, 8 frames apart (a 64-frame span).
- ``sparse``: 8 frames spread over the whole video, one at a random offset in each of 8
  equal segments (TSN-style sampling).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.planner import Planner, Visit
from pipelines.tasks import ClipRead, Decoded, SamplePlan, Task, get_task
from workers.meta import VideoMeta

PLANS = ("dense", "vcop", "sparse")
REAL_FILES = ("mmaction2/tests/data/test.mp4", "mmaction2/demo/demo.mp4")
MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


@dataclass(frozen=True, kw_only=True)
class CorpusSpec:
    """The synthetic part of the corpus. Defaults: Kinetics-shaped files with a 48-frame GOP."""

    num_videos: int = 16
    width: int = 340
    height: int = 256
    fps: int = 30
    seconds: float = 10.0
    gop: int = 48
    seed: int = 0

    @property
    def num_frames(self) -> int:
        return round(self.fps * self.seconds)

    def key(self) -> str:
        return (f"bench-{self.width}x{self.height}-{self.fps}fps-{self.num_frames}f-"
                f"gop{self.gop}-seed{self.seed}")


class DenseClip(Task):
    """One clip of ``clip_len`` consecutive frames at a random start (label 0)."""

    name = "dense"
    num_classes = 1

    def __init__(self, clip_len: int = 16) -> None:
        self.clip_len = clip_len

    def plan(self, meta, rng, *, sample_id=0, pool=None):  # type: ignore[override]
        if meta.num_frames < self.clip_len:
            return None
        start = int(rng.integers(0, meta.num_frames - self.clip_len + 1))
        read = ClipRead(meta.uri, meta.video_id, tuple(range(start, start + self.clip_len)))
        return SamplePlan(sample_id=sample_id, task=self.name, video_id=meta.video_id, label=0,
                          clips=(read,))

    def assemble(self, decoded: Decoded, plan: SamplePlan) -> dict[str, np.ndarray]:
        return {"video": np.stack(decoded.clips), "label": np.asarray(plan.label, dtype=np.int64)}


class SpreadFrames(DenseClip):
    """``num_frames`` frames spread over the whole video: one at a random offset in each of
    ``num_frames`` equal segments. Example: 300 frames, 8 segments of 37.5 frames ->
    e.g. [12, 40, 81, 113, 160, 190, 230, 270]."""

    name = "sparse"

    def plan(self, meta, rng, *, sample_id=0, pool=None):  # type: ignore[override]
        if meta.num_frames < self.clip_len:
            return None
        edges = np.linspace(0, meta.num_frames, self.clip_len + 1)
        frames = np.minimum(edges[:-1] + rng.uniform(0, 1, self.clip_len) * np.diff(edges),
                            meta.num_frames - 1).astype(int)
        read = ClipRead(meta.uri, meta.video_id, tuple(int(f) for f in frames))
        return SamplePlan(sample_id=sample_id, task=self.name, video_id=meta.video_id, label=0,
                          clips=(read,))


def make_task(plan: str) -> Task:
    """The task behind a plan name (see the module docstring)."""
    if plan == "dense":
        return DenseClip(16)
    if plan == "sparse":
        return SpreadFrames(8)
    if plan == "vcop":
        return get_task("vcop")
    raise ValueError(f"plan ({plan!r}) must be one of {', '.join(PLANS)}")


def plan_samples(metas: list[VideoMeta], plan: str, count: int, *, seed: int = 0,
                 size: tuple[int, int] = (112, 112)) -> tuple[list[Visit], list[Task]]:
    """``count`` visits of ``plan`` over ``metas`` (epochs planned until there are enough)."""
    if count < 1:
        raise ValueError(f"count ({count}) must be >= 1")
    planner = Planner(metas, [make_task(plan)], seed=seed, size=size)
    visits: list[Visit] = []
    epoch = 0
    while len(visits) < count:
        visits.extend(planner.plan_epoch(epoch).visits)
        epoch += 1
    return visits[:count], planner.tasks


def frames_per_sample(visit: Visit) -> int:
    """Frames a sample delivers (all clips of all plans)."""
    return sum(len(r.frames) for p in visit.plans for r in p.clips)


# ------------------------------------------------------------------------------- the files


def _scene(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth-plus-detailed colour scene, larger than the frame so the camera can pan."""
    coarse = rng.integers(0, 256, size=(h // 16 + 2, w // 16 + 2, 3), dtype=np.uint8)
    big: np.ndarray = np.repeat(np.repeat(coarse, 16, axis=0), 16, axis=1).astype(np.float32)
    # Blur the blocks into gradients, then add fine texture: edges the encoder must track.
    for axis in (0, 1):
        big = (np.roll(big, 4, axis) + big + np.roll(big, -4, axis)) / 3
    fine = rng.normal(0, 18, size=big.shape[:2] + (1,)).astype(np.float32)
    return np.clip(big + fine, 0, 255)[:h, :w]


def render(spec: CorpusSpec, index: int) -> np.ndarray:
    """uint8 (T, H, W, 3) frames of synthetic video ``index``: a panning, zooming-free camera
    over a scene, 3 moving discs, and per-frame grain. Pure function of (spec.seed, index)."""
    rng = np.random.default_rng((spec.seed, index))
    h, w, n = spec.height, spec.width, spec.num_frames
    pan = rng.uniform(-1.5, 1.5, size=2)  # pixels per frame, like a slow handheld pan
    margin = int(np.ceil(np.abs(pan).max() * n)) + 2
    scene = _scene(rng, h + margin, w + margin)
    oy, ox = (margin if pan[0] < 0 else 0), (margin if pan[1] < 0 else 0)
    yy, xx = np.mgrid[0:h, 0:w]
    discs = [(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(-3, 3), rng.uniform(-2, 2),
              rng.uniform(12, 30), rng.integers(0, 256, 3)) for _ in range(3)]
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        y0, x0 = round(oy + pan[0] * i), round(ox + pan[1] * i)
        frame = scene[y0:y0 + h, x0:x0 + w].copy()
        for cx, cy, vx, vy, r, colour in discs:
            mask = ((xx - (cx + vx * i) % w) ** 2 + (yy - (cy + vy * i) % h) ** 2) <= r * r
            frame[mask] = colour
        frame += rng.normal(0, 2.0, size=(h, w, 1)).astype(np.float32)
        frames[i] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def generate(root: Path, spec: CorpusSpec) -> list[Path]:
    """Write the synthetic videos into ``root`` (once: existing files are kept)."""
    from pipelines.synthetic import write_video

    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(spec.num_videos):
        path = root / f"clip_{i:04d}.mp4"
        paths.append(path)
        if path.exists():
            continue
        tmp = path.with_suffix(".tmp.mp4")
        write_video(tmp, render(spec, i), None, fps=spec.fps, gop=spec.gop,
                    options={"crf": "23", "keyint_min": str(spec.gop)})
        tmp.rename(path)  # atomic: a half-written file is never taken for a finished one
    return paths


def real_files(media: Path = MEDIA) -> list[Path]:
    """The real Kinetics-shaped clips of the shared media folder that are present."""
    return [media / rel for rel in REAL_FILES if (media / rel).is_file()]


def corpus(spec: CorpusSpec, *, cache: Path, with_real: bool = True) -> list[VideoMeta]:
    """Probed metas of the whole corpus (synthetic files, then the real ones)."""
    from workers.probe import probe

    paths = generate(cache / spec.key(), spec)
    if with_real:
        paths += real_files()
    return [probe(str(p)) for p in paths]
