"""Motion-vector extraction on one core, beside FFmpeg's own decode rate of the same file.

    uv run python -m workers.motion_bench [--out FILE.json] [--repeats 7] [--core N]

Pins the process to one core and uses one decoder thread. Every measurement runs
``--repeats`` times, interleaved with the others (so a neighbour's load hits them alike),
and the best run counts. Each rate is given in wall-clock time and in CPU time (the time
this process ran): where other work shares the core, wall-clock rates fall with the load
and only the CPU-time rates say what the core gives; ``ratio_to_ceiling_same_round`` is
the median of ours / ceiling over rounds, each pair measured seconds apart. Rows:

- ``ceiling``: a bare PyAV loop decoding the file with ``+export_mvs`` and nothing else,
  the rate the issue measures against;
- ``ceiling, same options``: the same loop with the options ``motion_vectors`` decodes
  with (``+export_mvs``, ``skip_loop_filter``), so the gap to it is our own overhead;
- ``motion_vectors``: :func:`workers.motion.iter_motion_vectors`, every frame's vectors
  copied out with its picture type and reference distances;
- ``mean_motion``: what ``clipstream index --motion`` runs per video;
- ``motion_grid``: the dense field of one frame, native grid and at 112x112, and
  ``motion_grids`` of 16 frames at once as the motion stage calls it;
- ``keyframes``: I-frames only (``skip_frame``), RGB at native size; also given as the
  video's frames per second of it (how fast the keyframes of a whole file come out).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from workers.motion import (
    iter_motion_vectors,
    keyframes,
    mean_motion,
    motion_grid,
    motion_grids,
    motion_vectors,
)

DEFAULT_FILE = Path(__file__).resolve().parents[1] / ".." / "shared" / "media" / "mmaction2" / "tests" / "data" / "test.mp4"
GOAL_FPS = 500.0
GOAL_RATIO = 0.9


def bare_decode(uri: str, options: dict[str, str]) -> int:
    """Decode every frame with one thread and ``options``; touch nothing. Returns the count."""
    with av.open(uri) as container:
        stream = container.streams.video[0]
        stream.codec_context.options = options
        stream.thread_type = "SLICE"
        stream.thread_count = 1
        return sum(1 for _ in container.decode(stream))


def extract(uri: str) -> int:
    return sum(1 for _ in iter_motion_vectors(uri, threads=1))


@dataclass
class Rates:
    """Per job, the best items/s over the rounds, in wall-clock and CPU time, and the rate of
    each round (to compare jobs that ran next to each other)."""

    items: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    rounds: list[float] = field(default_factory=list)


def best_rates(jobs: dict[str, Callable[[], int]], repeats: int) -> dict[str, Rates]:
    """Run every job once per round, ``repeats`` rounds, interleaved.

    The CPU-time rate counts only the time this process ran: on a core shared with other
    work it is the rate the core would give alone; on a quiet machine the two agree.
    """
    out = {name: Rates() for name in jobs}
    for _ in range(repeats):
        for name, job in jobs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            items = job()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            r = out[name]
            r.items, r.wall, r.cpu = items, max(r.wall, items / wall), max(r.cpu, items / max(cpu, 1e-9))
            r.rounds.append(items / wall)
    return out


def round_ratio(ours: Rates, ceiling: Rates) -> float:
    """Median over rounds of ours / ceiling measured in the same round, seconds apart, so a
    neighbour's load that comes and goes weighs on both sides alike."""
    return float(np.median(np.divide(ours.rounds, ceiling.rounds)))


def grid_cost_us(uri: str, repeats: int) -> dict[str, float]:
    """Best CPU microseconds per inter frame of the dense fields: one frame per call (native
    grid, 112x112) and 16 frames per call at 112x112, as the motion stage calls it."""
    frames = [f for f in motion_vectors(uri) if len(f.vectors)]
    clips = [frames[i : i + 16] for i in range(0, len(frames), 16)]
    jobs: dict[str, Callable[[], object]] = {
        "motion_grid native": lambda: [motion_grid(f) for f in frames],
        "motion_grid 112x112": lambda: [motion_grid(f, out_size=(112, 112)) for f in frames],
        "motion_grids 16 x 112x112": lambda: [motion_grids(c, out_size=(112, 112)) for c in clips],
    }
    out: dict[str, float] = {}
    for name, job in jobs.items():
        best = float("inf")
        for _ in range(repeats):
            t0 = time.process_time()
            job()
            best = min(best, (time.process_time() - t0) / len(frames))
        out[name] = best * 1e6
    return out


def cpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in text.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def pin(core: int | None) -> int:
    """Pin this process to one core (the last one allowed, unless given); return it."""
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[-1] if core is None else core
    os.sched_setaffinity(0, {chosen})
    return chosen


def run(uri: str, repeats: int, core: int | None) -> dict:
    chosen = pin(core)
    mvs = {"flags2": "+export_mvs"}
    same = {"flags2": "+export_mvs", "skip_loop_filter": "all"}
    kf_count = len(keyframes(uri)[0])
    rates = best_rates(
        {
            "ceiling (+export_mvs)": lambda: bare_decode(uri, mvs),
            "ceiling, same options": lambda: bare_decode(uri, same),
            "motion_vectors": lambda: extract(uri),
            "mean_motion": lambda: len(mean_motion(uri)),
            "keyframes": lambda: (keyframes(uri), kf_count)[1],
        },
        repeats,
    )
    wall = {name: r.wall for name, r in rates.items()}
    cpu = {name: r.cpu for name, r in rates.items()}
    ceiling, same_ceiling = rates["ceiling (+export_mvs)"], rates["ceiling, same options"]
    ours = rates["motion_vectors"]
    return {
        "date": datetime.date.today().isoformat(),
        "machine": {"cpu": cpu_model(), "cores_visible": os.cpu_count(), "pinned_core": chosen,
                    "load_average": os.getloadavg()},
        "versions": {"pyav": av.__version__, "ffmpeg": av.ffmpeg_version_info, "numpy": np.__version__},
        "file": str(Path(uri).resolve()),
        "frames": ours.items,
        "keyframes_per_file": kf_count,
        "repeats": repeats,
        "threads": 1,
        "fps": {name: round(rate, 1) for name, rate in wall.items()},
        "fps_cpu_time": {name: round(rate, 1) for name, rate in cpu.items()},
        "us_per_frame": {k: round(v, 1) for k, v in grid_cost_us(uri, repeats).items()},
        "ratio_to_ceiling": round(ours.wall / ceiling.wall, 3),
        "ratio_to_ceiling_same_round": round(round_ratio(ours, ceiling), 3),
        "ratio_to_ceiling_cpu_time": round(ours.cpu / ceiling.cpu, 3),
        "ratio_to_same_options": round(ours.wall / same_ceiling.wall, 3),
        "ratio_to_same_options_cpu_time": round(ours.cpu / same_ceiling.cpu, 3),
        "goals": {
            "fps_per_core >= 500": ours.wall >= GOAL_FPS,
            "ratio_to_ceiling >= 0.9": ours.wall / ceiling.wall >= GOAL_RATIO,
        },
    }


def table(result: dict) -> str:
    """Markdown table of a result."""
    wall, cpu = result["fps"], result["fps_cpu_time"]
    ceiling, cpu_ceiling = wall["ceiling (+export_mvs)"], cpu["ceiling (+export_mvs)"]
    rows = [
        "| measurement (1 core, 1 thread) | frames/s | vs ceiling | frames/s, CPU time | vs ceiling |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in wall:
        if name == "keyframes":
            continue
        rows.append(f"| {name} | {wall[name]:.0f} | {wall[name] / ceiling:.2f} "
                    f"| {cpu[name]:.0f} | {cpu[name] / cpu_ceiling:.2f} |")
    # A file's keyframes come out this many times faster than its frames are decoded.
    per_file = result["frames"] / result["keyframes_per_file"]
    rows.append(f"| keyframes/s (I-frames only, to RGB); as video frames/s | {wall['keyframes']:.0f}; "
                f"{wall['keyframes'] * per_file:.0f} | | {cpu['keyframes']:.0f}; "
                f"{cpu['keyframes'] * per_file:.0f} | |")
    for name, us in result["us_per_frame"].items():
        rows.append(f"| {name} | | | {1e6 / us:.0f} ({us:.0f} us/frame) | |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", default=str(DEFAULT_FILE), help="video to measure")
    parser.add_argument("--out", help="write the result as JSON here")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds; best counts")
    parser.add_argument("--core", type=int, help="core to pin to (default: the last allowed)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats ({args.repeats}) must be >= 1")
    result = run(args.file, args.repeats, args.core)
    print(f"{result['file']}: {result['frames']} frames, 1 thread pinned to core "
          f"{result['machine']['pinned_core']} ({result['machine']['cpu']}), best of {args.repeats}, "
          f"load average {result['machine']['load_average'][0]:.1f}")
    print(table(result))
    print(f"motion_vectors / ceiling: best {result['ratio_to_ceiling']:.3f}, same round "
          f"{result['ratio_to_ceiling_same_round']:.3f}, CPU time "
          f"{result['ratio_to_ceiling_cpu_time']:.3f}; / same-options ceiling: "
          f"{result['ratio_to_same_options']:.3f} (CPU time "
          f"{result['ratio_to_same_options_cpu_time']:.3f}); goals: {result['goals']}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
