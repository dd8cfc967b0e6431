"""Decode micro-benchmark of the PyAV reader against FFmpeg's own sequential decode.

    uv run python -m workers.decode.bench [--video PATH] [--clips N] [--seed S]

On one file (default: the Kinetics-like ``mmaction2/tests/data/test.mp4``, 340x256, 300
frames, keyframes 0 and 235) and in one run it measures, once with ``threads=1`` (a fair
per-core number) and once with FFmpeg's thread choice:

- ``sequential``: PyAV decoding every frame front to back, no conversion: the ceiling.
- ``sequential_rgb``: the reader delivering every frame at 112x112 in one call.
- ``dense16``: one ``open_video`` per 16-frame clip at 112x112, random starts.
- ``vcop``: VCOP plans (3 clips of 16, 8 apart, one decode of their union per plan).
- ``uniform8``: 8 frames spread uniformly over the video, jittered.

It prints a table and one JSON line (``{"bench": "decode", ...}``). ``decoded/delivered``
is the work per useful frame (1.0: nothing decoded in vain); ``naive/delivered`` is what
decoding from frame 0 to each plan's last frame would cost, the work seeking saves.
With only two keyframes (0, 235) little can be skipped in test.mp4; ``--video`` on a file
with short GOPs (``mv-extractor/vid_mpeg4_part2.mp4``, a keyframe every 12) shows the gap.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from workers.decode import open_video
from workers.decode._pyav import DecodeStats, PyAVReader
from workers.meta import VideoMeta
from workers.probe import probe

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / ".." / "shared" / "media" / "mmaction2" / "tests" / "data" / "test.mp4"
SIZE = (112, 112)
CLIP_LEN = 16


@dataclass(frozen=True)
class Row:
    """One measured scenario."""

    scenario: str
    threads: str
    clips: int
    seconds: float
    delivered: int
    decoded: int
    naive: int  # frames decoding from 0 to each plan's last frame would take

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.seconds if self.seconds else 0.0

    @property
    def frames_per_s(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0

    @property
    def decoded_per_delivered(self) -> float:
        return self.decoded / self.delivered if self.delivered else 0.0

    @property
    def naive_per_delivered(self) -> float:
        return self.naive / self.delivered if self.delivered else 0.0

    def summary(self) -> dict[str, float | int | str]:
        return {
            **asdict(self),
            "clips_per_s": round(self.clips_per_s, 2),
            "frames_per_s": round(self.frames_per_s, 1),
            "decoded_per_delivered": round(self.decoded_per_delivered, 2),
            "naive_per_delivered": round(self.naive_per_delivered, 2),
        }


Plan = list[int]


def sequential(path: str, threads: int | None) -> Row:
    """Every frame, decoded and dropped: FFmpeg's own rate on this file (the ceiling)."""
    start = time.perf_counter()
    with av.open(path) as container:
        stream = container.streams.best("video")
        if stream is None:
            raise SystemExit(f"{path}: no video stream")
        cc = stream.codec_context
        cc.thread_type = "NONE" if threads == 1 else "AUTO"
        cc.thread_count = threads or 0
        n = sum(1 for _ in container.decode(stream))
    return Row("sequential", _threads_name(threads), 1, time.perf_counter() - start, n, n, n)


def run_plans(name: str, path: str, meta: VideoMeta, plans: list[Plan], threads: int | None) -> Row:
    """One ``open_video`` per plan (as the video stage does), frames at 112x112."""
    stats = DecodeStats()
    start = time.perf_counter()
    for plan in plans:
        with open_video(path, meta=meta, threads=threads) as reader:
            reader.frames(plan, size=SIZE)
            _add(stats, reader)
    naive = sum(max(plan) + 1 for plan in plans)
    return Row(name, _threads_name(threads), len(plans), time.perf_counter() - start,
               stats.delivered, stats.decoded, naive)  # fmt: skip


def _add(total: DecodeStats, reader: object) -> None:
    if isinstance(reader, PyAVReader):
        total.decoded += reader.stats.decoded
        total.delivered += reader.stats.delivered


def dense_plans(n: int, clips: int, rng: np.random.Generator) -> list[Plan]:
    """``clips`` runs of 16 consecutive frames at random starts."""
    starts = rng.integers(0, n - CLIP_LEN + 1, size=clips)
    return [list(range(s, s + CLIP_LEN)) for s in starts.tolist()]


def vcop_plans(meta: VideoMeta, clips: int, rng: np.random.Generator) -> list[Plan]:
    """The union of the VCOP task's 3 clips per sample, as the video stage decodes it."""
    from pipelines.tasks import get_task

    task = get_task("vcop")
    plans = []
    for _ in range(clips):
        plan = task.plan(meta, rng)
        if plan is not None:
            plans.append(sorted({i for read in plan.clips for i in read.frames}))
    return plans


def uniform_plans(n: int, clips: int, rng: np.random.Generator, k: int = 8) -> list[Plan]:
    """``k`` frames spread over the whole video, each jittered within its segment
    (TSN-style). Example: n=300, k=8 -> one frame in each of [0, 37), [37, 75), ..."""
    edges = np.linspace(0, n, k + 1).astype(int)
    return [
        [int(rng.integers(lo, max(lo + 1, hi))) for lo, hi in itertools.pairwise(edges.tolist())]
        for _ in range(clips)
    ]


def _threads_name(threads: int | None) -> str:
    return "1" if threads == 1 else "auto"


def measure(path: str, clips: int, seed: int) -> Iterator[Row]:
    meta = probe(path)
    for threads in (1, None):
        rng = np.random.default_rng((seed, 0 if threads == 1 else 1))
        yield sequential(path, threads)
        yield run_plans("sequential_rgb", path, meta, [list(range(meta.num_frames))], threads)
        yield run_plans("dense16", path, meta, dense_plans(meta.num_frames, clips, rng), threads)
        yield run_plans("vcop", path, meta, vcop_plans(meta, clips, rng), threads)
        yield run_plans("uniform8", path, meta, uniform_plans(meta.num_frames, clips, rng), threads)


def print_table(rows: list[Row], out: Callable[[str], None] = print) -> None:
    head = (f"{'scenario':<15}{'threads':>8}{'clips':>7}{'clips/s':>10}{'frames/s':>10}"
            f"{'decoded/delivered':>19}{'naive/delivered':>17}")  # fmt: skip
    out(head)
    out("-" * len(head))
    for r in rows:
        out(f"{r.scenario:<15}{r.threads:>8}{r.clips:>7}{r.clips_per_s:>10.1f}{r.frames_per_s:>10.0f}"
            f"{r.decoded_per_delivered:>19.2f}{r.naive_per_delivered:>17.2f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run every scenario once and print the table and the JSON line."""
    parser = argparse.ArgumentParser(prog="python -m workers.decode.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--video", default=str(DEFAULT_VIDEO.resolve()), help="file to decode")
    parser.add_argument("--clips", type=int, default=20, help="plans per scenario")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not Path(args.video).exists():
        parser.error(f"{args.video} does not exist (the real media folder is ../shared/media)")
    rows = list(measure(args.video, args.clips, args.seed))
    print(f"{args.video}: {SIZE[0]}x{SIZE[1]} output, {args.clips} plans per scenario, seed {args.seed}")
    print_table(rows)
    record = {
        "bench": "decode",
        "video": args.video,
        "size": list(SIZE),
        "seed": args.seed,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "pyav": av.__version__,
        "ffmpeg": str(getattr(av, "ffmpeg_version_info", "")),
        "rows": [r.summary() for r in rows],
    }
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
