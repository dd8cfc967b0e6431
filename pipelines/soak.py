"""Decode soak: resident memory over thousands of samples, in-process and through Ray Data.

    uv run python -m pipelines.soak --samples 5000 --out runs/soak

Two passes over the same planned samples (VCOP clips from the synthetic videos, as the
default run decodes them):

- ``in-process``: the video stage and the assemble step called directly, batch after
  batch, in this process (no Ray): the decode code alone;
- ``ray``: the Ray Data graph of a run (``build_dataset``), streamed by this process; the
  resident memory of every video-stage actor and of this driver, and the object store;
- ``train``: a 2-rank VCOP pretraining run (``pretrain``, the run's own path: Ray Train's
  split coordinator executes the Ray Data graph and feeds the ranks); the coordinator, the
  ranks and the stage actors, found by their Ray process titles and read every few
  seconds, put on the samples axis by the run's timeline.

Resident memory (``/proc/<pid>/status``, Linux) is read every ``--every`` samples, in two
parts (see ``memory_mb``):

- *private*: the process's own anonymous pages (``RssAnon``), what a leak grows. A private
  curve is *flat* when, after a warm-up of the first 10% of samples, a straight line through
  it rises by less than ``--tolerance-mb`` per 1000 samples. Example: 5000 samples, the video
  actor at 410 MB after warm-up and 414 MB at the end -> slope 1 MB per 1000: flat.
- *shared*: shared-memory pages the process has mapped (``RssShmem``). In a Ray process
  these are object-store pages: every process that reads an object maps the pages it lies
  on, and a page stays in the reader's resident set after the object is freed, so this part
  climbs while a reader meets pages it had not touched yet. The same page is counted in each
  process that maps it and once on the machine: ``object store pages`` (what the store's
  shared-memory folder holds) is that count, judged flat like private memory, and a
  process's shared part is judged *within* it (it cannot hold pages the store does not).

Example (docs/benchmarks.md): over 10000 samples the driver's shared part climbs 30 -> 71 MB
while the store holds 252 MB of pages from sample 3250 on: the driver meets pages the store
already had; nothing new is allocated on the machine.

Writes ``soak.json`` (every reading) and ``soak.png`` (the curves) into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.config import DataConfig, StageConfig
from pipelines.planner import Planner, Visit
from pipelines.synthetic import SyntheticSpec, cache_dir, generate
from workers.meta import VideoMeta

WARMUP = 0.1


PLASMA_DIR = "/dev/shm"  # where a local Ray on Linux keeps its object store


def memory_mb(pid: int | None = None) -> dict[str, float]:
    """A process's resident memory in MB: ``private`` (``RssAnon``) and ``shared``
    (``RssShmem``), from ``/proc/<pid>/status``; both 0 if the process is gone.

    Example: a driver that has read 40 MB of objects out of Ray's object store ->
    ``{"private": 160.2, "shared": 40.1}``.
    """
    fields = {"RssAnon": "private", "RssShmem": "shared"}
    out = dict.fromkeys(fields.values(), 0.0)
    try:
        with open(f"/proc/{pid or 'self'}/status") as f:
            for line in f:
                key, _, value = line.partition(":")  # "RssAnon:   161792 kB"
                if key in fields:
                    out[fields[key]] = int(value.split()[0]) / 1024
    except FileNotFoundError:
        pass
    return out


def readings_of(name: str, pid: int | None = None) -> dict[str, float]:
    """``{"<name> private": MB, "<name> shared": MB}`` of one process."""
    return {f"{name} {kind}": mb for kind, mb in memory_mb(pid).items()}


@dataclass
class Curve:
    """Readings of one pass: samples done, seconds since the start, MB per series."""

    samples: list[int] = field(default_factory=list)
    t_s: list[float] = field(default_factory=list)
    mb: dict[str, list[float]] = field(default_factory=dict)

    def add(self, done: int, t_s: float, readings: dict[str, float]) -> None:
        self.samples.append(done)
        self.t_s.append(t_s)
        for name, value in readings.items():
            self.mb.setdefault(name, [0.0] * (len(self.samples) - 1)).append(value)
        for series in self.mb.values():  # a series that stopped (an actor that went away)
            series.extend([series[-1]] * (len(self.samples) - len(series)))


def flatness(samples: Sequence[int], mb: Sequence[float], tolerance_mb: float) -> dict[str, Any]:
    """Slope (MB per 1000 samples) of a line through the readings after the warm-up.

    Example: readings 400, 402, 401, 403 MB at 1000..4000 samples -> slope 0.8, flat with a
    tolerance of 5; ``growth_mb`` is the last reading minus the first after the warm-up.
    """
    x, y = np.asarray(samples, float), np.asarray(mb, float)
    keep = x >= WARMUP * x.max() if x.size else x.astype(bool)
    x, y = x[keep], y[keep]
    slope = float(np.polyfit(x, y, 1)[0] * 1000) if x.size >= 3 else 0.0
    growth = float(y[-1] - y[0]) if y.size else 0.0
    return {"slope_mb_per_1000": round(slope, 3), "growth_mb": round(growth, 1),
            "start_mb": round(float(y[0]), 1) if y.size else 0.0,
            "end_mb": round(float(y[-1]), 1) if y.size else 0.0,
            "peak_mb": round(float(y.max()), 1) if y.size else 0.0,
            "flat": abs(slope) < tolerance_mb}


# ----------------------------------------------------------------------------- inputs


def corpus(spec: SyntheticSpec) -> list[VideoMeta]:
    """The synthetic videos of ``spec`` (cached), probed in this process."""
    from workers.probe import probe

    root = cache_dir() / spec.key() / "videos"
    return [probe(str(p)) for p in generate(root, spec)]


def plan(metas: Sequence[VideoMeta], n: int, data: DataConfig) -> tuple[list[Visit], list[Any]]:
    """``n`` visits (as many epochs as it takes) and the tasks that planned them."""
    planner = Planner(metas, {t: data.task_params.get(t, {}) for t in data.tasks},
                      seed=data.seed, size=data.size)
    visits: list[Visit] = []
    epoch = 0
    while len(visits) < n:
        visits += planner.plan_epoch(epoch).visits
        epoch += 1
    return visits[:n], planner.tasks


def batches(visits: Sequence[Visit], size: int) -> Iterator[dict[str, np.ndarray]]:
    """The rows the Ray Data graph starts from, as numpy batches of ``size``."""
    from workers.stage import encode_row

    for i in range(0, len(visits), size):
        rows = [encode_row(v.plans, v.metas) for v in visits[i:i + size]]
        yield {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]}


# ----------------------------------------------------------------------------- passes


def soak_in_process(visits: Sequence[Visit], data: DataConfig, tasks: list[Any], every: int,
                    log: Callable[[str], None]) -> Curve:
    """Video stage then assemble, called in this process, batch after batch."""
    from pipelines.dataset import AssembleStage
    from workers.video_stage import VideoStage

    stage, assemble = VideoStage(data, data.video), AssembleStage(tasks)
    curve, t0, done, failed = Curve(), time.perf_counter(), 0, 0
    curve.add(0, 0.0, {"in-process private": memory_mb()["private"]})
    for batch in batches(visits, data.video.batch_size):
        out = assemble(stage(batch))
        failed += int((~out["ok"]).sum())
        done += len(out["ok"])
        if done // every != (done - len(out["ok"])) // every:
            private = memory_mb()["private"]
            curve.add(done, time.perf_counter() - t0, {"in-process private": private})
            log(f"in-process {done:6d} samples, {private:7.1f} MB private")
    if failed:
        raise RuntimeError(f"{failed} samples failed to decode in the soak; it measures clean decodes")
    return curve


def soak_ray(visits: Sequence[Visit], data: DataConfig, tasks: list[Any], every: int,
             log: Callable[[str], None]) -> Curve:
    """The run's Ray Data graph, streamed by this process; actor pids come from the ledger."""
    import ray

    from pipelines.dataset import build_dataset
    from pipelines.quarantine import start_ledger, stop_ledger

    ledger = start_ledger()
    curve, t0, done = Curve(), time.perf_counter(), 0
    try:
        ds = build_dataset(visits, data, tasks)
        for batch in ds.iter_batches(batch_size=data.video.batch_size, prefetch_batches=2):
            n = len(batch["sample_id"])
            done += n
            # Not at the last batch: by then Ray Data is releasing the actors it no longer
            # needs, and a process on its way out is not a reading of the steady state.
            if done // every != (done - n) // every and done < len(visits):
                now = readings_of("driver")
                for pid in ray.get(ledger.actors.remote("video")):
                    now |= readings_of(f"video actor {pid}", pid)
                now["object store in use"] = plasma_mb()
                now["object store pages"] = plasma_pages_mb()
                curve.add(done, time.perf_counter() - t0, now)
                log(f"ray {done:6d} samples, " + ", ".join(f"{k} {v:.0f} MB" for k, v in now.items()))
    finally:
        stop_ledger()
    return curve


TRAIN_PROCESSES = ("SplitCoordinator", "RayTrainWorker", "VideoStage", "AssembleStage")


def ray_processes(names: Sequence[str]) -> dict[int, str]:
    """``{pid: "<name> <pid>"}`` of this machine's processes whose name (``process_name``:
    a Ray worker's process title, e.g. ``ray::SplitCoordinator``) holds one of ``names``."""
    from pipelines._bench_monitor import process_name

    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            name = next((n for n in names if n in process_name(int(entry))), None)
            if name:
                found[int(entry)] = f"{name} {entry}"
    return found


def soak_train(samples: int, size: int, every_s: float, out: Path,
               log: Callable[[str], None]) -> Curve:
    """A 2-rank VCOP pretraining run of ``samples`` samples (batch 4 per rank), its
    processes' memory read every ``every_s`` seconds by a thread of this process."""
    import threading

    from pipelines.config import load_config
    from pipelines.pretrain import pretrain

    workers, batch = 2, 4
    run = load_config(overrides=[f"train.out={out / 'train-run'}", f"train.workers={workers}",
                                 f"train.batch_size={batch}", f"train.steps={-(-samples // (workers * batch))}",
                                 f"size={size}x{size}", "video.concurrency=1:1"])
    readings: list[tuple[float, dict[str, float]]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(every_s):
            now: dict[str, float] = {}
            for pid, name in ray_processes(TRAIN_PROCESSES).items():
                mb = readings_of(name, pid)
                if any(mb.values()):  # not a process that has just gone
                    now |= mb
            if now:
                now["object store pages"] = plasma_pages_mb()
            readings.append((time.time(), now))

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        metrics = pretrain(run)
    finally:
        stop.set()
        thread.join()
    s = metrics["samples"]
    log(f"train: {s['delivered']} of {s['expected']} samples delivered, {s['duplicated']} duplicated, "
        f"{s['missing']} missing")
    # Samples delivered to the ranks at each reading: the run's timeline, interpolated.
    t = np.array([metrics["timeline_started"] + p["t"] for p in metrics["timeline"]])
    rows = np.array([p["trainer"]["rows"] for p in metrics["timeline"]])
    curve = Curve()
    for when, now in readings:
        if t[0] <= when <= t[-1] and now:
            curve.add(int(np.interp(when, t, rows)), when - t[0], now)
    return curve


def plasma_mb() -> float:
    """Object-store memory in use across the cluster (Ray's memory summary), in MB."""
    import re

    import ray
    from ray._private.internal_api import memory_summary

    text = memory_summary(ray.get_runtime_context().gcs_address, stats_only=True)
    m = re.search(r"Plasma memory usage (\d+) MiB", text)
    return float(m.group(1)) * 1.048576 if m else 0.0


def plasma_pages_mb() -> float:
    """Pages the object store has written into its shared-memory folder, in MB: the machine's
    count of the pages Ray processes map as ``shared`` (nothing else here writes there)."""
    import shutil

    return shutil.disk_usage(PLASMA_DIR).used / 2**20 if os.path.isdir(PLASMA_DIR) else 0.0


def store_capacity_mb() -> float:
    """The object store's capacity across the cluster, in MB (0 without Ray)."""
    import ray

    return ray.cluster_resources().get("object_store_memory", 0) / 2**20 if ray.is_initialized() else 0.0


# ----------------------------------------------------------------------------- report


def panels(curves: dict[str, Curve]) -> list[tuple[str, Curve, list[str]]]:
    """What each chart shows: a pass's private memory, and (Ray) its shared pages and store."""
    out = []
    for name, curve in curves.items():
        private = [k for k in curve.mb if k.endswith(" private")]
        out.append((f"{name}: private memory", curve, private))
        rest = [k for k in curve.mb if k not in private]
        if rest:
            out.append((f"{name}: shared pages, object store", curve, rest))
    return out


def plot(curves: dict[str, Curve], path: Path) -> None:
    from pipelines._plots import figure, png_bytes

    charts = panels(curves)
    fig, axes = figure(width=4.2 * len(charts), height=3.4, ncols=len(charts))
    axes = np.atleast_1d(axes)
    for ax, (title, curve, series) in zip(axes, charts):
        for name in series:
            ax.plot(curve.samples, curve.mb[name], label=name, lw=1.2)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("samples decoded")
        ax.set_ylabel("MB")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    path.write_bytes(png_bytes(fig))


def machine() -> dict[str, Any]:
    model = ""
    if Path("/proc/cpuinfo").exists():
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(),
            "load_avg": [round(x, 1) for x in os.getloadavg()], "python": platform.python_version()}


def summarize(curves: dict[str, Curve], tolerance_mb: float) -> dict[str, dict[str, Any]]:
    """Each series' line after the warm-up, and its verdict: a process's shared pages are
    judged against the object store's pages (they are those pages, mapped), every other
    series (private memory, the store itself) flat or not by its slope."""
    out: dict[str, dict[str, Any]] = {}
    for name, c in curves.items():
        out[name] = {}
        store = max(c.mb.get("object store pages", [0.0]))
        for series, values in c.mb.items():
            f = flatness(c.samples, values, tolerance_mb)
            if series.endswith(" shared"):
                f["held"] = f["peak_mb"] <= store + tolerance_mb
                f["verdict"] = f"{'within' if f['held'] else 'OVER'} the store's {store:.0f} MB of pages"
            else:
                f["held"] = f["flat"]
                f["verdict"] = "flat" if f["flat"] else "GROWING"
            out[name][series] = f
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.soak", description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=5000, help="samples per pass")
    p.add_argument("--every", type=int, default=100, help="read memory every N samples")
    p.add_argument("--every-s", type=float, default=5.0, help="train pass: read memory every S seconds")
    p.add_argument("--size", type=int, default=112, help="clip height and width")
    p.add_argument("--passes", default="in-process,ray", help="which passes, comma-separated "
                   "(in-process, ray, train)")
    p.add_argument("--num-cpus", type=int, default=4, help="logical CPUs of the local Ray")
    p.add_argument("--tolerance-mb", type=float, default=5.0,
                   help="flat: slope under this many MB per 1000 samples")
    p.add_argument("--out", default="runs/soak")
    args = p.parse_args(argv)

    data = dataclasses.replace(DataConfig(), size=(args.size, args.size),
                               video=StageConfig(batch_size=4, concurrency=(1, 1)))
    visits, tasks = plan(corpus(SyntheticSpec()), args.samples, data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    curves: dict[str, Curve] = {}
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    if "in-process" in args.passes:
        curves["in-process"] = soak_in_process(visits, data, tasks, args.every, print)
    capacity = 0.0
    if "ray" in args.passes:
        from pipelines.runtime import init_ray

        init_ray(num_cpus=args.num_cpus)
        capacity = store_capacity_mb()
        curves["ray"] = soak_ray(visits, data, tasks, args.every, print)
    if "train" in args.passes:
        import ray

        ray.shutdown()  # the run starts its own Ray, with its telemetry settings
        curves["train"] = soak_train(args.samples, args.size, args.every_s, out, print)
    result = {"started": started, "machine": machine(), "samples": args.samples, "size": args.size,
              "tasks": dict(data.tasks), "object_store_capacity_mb": round(capacity),
              "summary": summarize(curves, args.tolerance_mb),
              "curves": {k: dataclasses.asdict(c) for k, c in curves.items()}}
    (out / "soak.json").write_text(json.dumps(result, indent=1))
    plot(curves, out / "soak.png")
    for name, series in result["summary"].items():
        for s, f in series.items():
            print(f"{name:10s} {s:32s} {f['start_mb']:7.1f} -> {f['end_mb']:7.1f} MB "
                  f"(peak {f['peak_mb']:.1f}), slope {f['slope_mb_per_1000']:+.2f} MB/1000 samples, "
                  f"{f['verdict']}")
    print(f"wrote {out}/soak.json and {out}/soak.png")
    held = all(f["held"] for series in result["summary"].values() for f in series.values())
    return 0 if held else 1


if __name__ == "__main__":
    raise SystemExit(main())
