"""From raw benchmark measurements to rates, ratios, goals and Markdown tables.

Definitions (per plan, every figure the median over rounds, ratios the median of the
per-round ratios, since the systems of one round ran under the same background load):

- ``clips_per_s``: samples per second in the steady window (see :func:`steady_window` and
  :func:`steady_rate`). A
  sample is what the trainer consumes as one row: one 16-frame clip (dense), three (vcop),
  8 spread frames (sparse). For the ceiling: frames/s / 16.
- ``frames_per_s``: delivered frames per second; ``decoded_per_delivered``: frames the
  decoder produced per delivered frame (clipstream's is counted in its in-process run of the
  same plans: the same VideoStage code).
- ``cpu_s_per_clip``: CPU seconds of the system's whole process tree per sample;
  ``peak_pss_mb``/``peak_rss_mb``: the tree's peak memory (PSS splits shared pages).
- ``clips_per_cpu_s``: samples per CPU second of the tree (1 / ``cpu_s_per_clip``).
- ``ratio_vs_baseline`` = clipstream clips/s / DataLoader clips/s;
  ``ratio_vs_ceiling`` = clipstream delivered frames/s / FFmpeg's frames/s on all cores;
  ``decode_ratio_vs_ceiling`` = clipstream decoded frames/s / the same;
  ``pipeline_efficiency`` = clipstream clips/s / the sum of its workers' in-process clips/s;
  the ``cpu_`` twins compare the same things per CPU second (per delivered frame against
  the ceiling's CPU per decoded frame), which background load on a shared machine does not
  skew the way it skews wall rates.
- scaling ``efficiency`` at k actors = clips/s(k) / (k x clips/s(1)).
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from pipelines._bench_corpus import frames_per_sample

RATIOS = ("ratio_vs_baseline", "ratio_vs_ceiling", "decode_ratio_vs_ceiling", "pipeline_efficiency",
          "cpu_ratio_vs_baseline", "cpu_ratio_vs_ceiling", "cpu_pipeline_efficiency")
# goal -> (ratio, plan (None: the worst plan), threshold); each by wall rate and by CPU rate.
GOALS = {
    "sparse_vs_baseline": ("ratio_vs_baseline", "sparse", 2.0),
    "sparse_vs_baseline_per_cpu": ("cpu_ratio_vs_baseline", "sparse", 2.0),
    "vcop_vs_baseline": ("ratio_vs_baseline", "vcop", 2.0),
    "vcop_vs_baseline_per_cpu": ("cpu_ratio_vs_baseline", "vcop", 2.0),
    "dense_vs_ceiling": ("ratio_vs_ceiling", "dense", 0.8),
    "dense_vs_ceiling_per_cpu": ("cpu_ratio_vs_ceiling", "dense", 0.8),
    "pipeline_efficiency": ("pipeline_efficiency", None, 0.8),
    "pipeline_efficiency_per_cpu": ("cpu_pipeline_efficiency", None, 0.8),
    "scaling_1_to_2": ("scaling", 2, 0.85),
}
CLIP_FRAMES = 16  # the ceiling's frames/s expressed in 16-frame clips


STEADY = (0.1, 0.9)  # the steady window: from the arrival of the 10% mark to the 90% mark


def steady_window(raw: dict[str, Any]) -> tuple[float, float, int]:
    """(t0, t1, samples that arrived in between) of a measurement's steady window.

    Example: 100 samples in batches of 8 arriving at t=10, 11, ... -> the 10% mark comes with
    the 2nd batch (16 >= 10), the 90% mark with the 12th (96 >= 90): window [11, 21], 80
    samples. Fewer batches than that (or a result without batches) -> the whole call.
    """
    arrivals, n = raw["arrivals"], raw["items"]
    lo, hi = STEADY
    i0 = next((i for i, (_, c) in enumerate(arrivals) if c >= lo * n), 0)
    i1 = next((i for i, (_, c) in enumerate(arrivals) if c >= hi * n), 0)
    if i1 <= i0 or arrivals[i1][0] <= arrivals[i0][0]:
        return raw["t_start"], raw["t_end"], n
    return arrivals[i0][0], arrivals[i1][0], arrivals[i1][1] - arrivals[i0][1]


def steady_rate(raw: dict[str, Any]) -> float:
    """Samples per second in the steady window: the least-squares slope of the cumulative
    count over the batch arrivals in it. Workers that deliver in bursts (two DataLoader
    workers finishing batches together) would bias a rate read between two single arrivals
    by up to a batch; the slope through every arrival is not. Fewer than three arrivals ->
    samples over the window's length.

    Example: two batches of 8 a second, arriving in pairs: (1 s, 8), (1 s, 16), (2 s, 24),
    (2 s, 32), (3 s, 40), (3 s, 48) -> slope 16/s; the 1st and 6th arrival alone would say
    40/2 = 20/s, the 2nd and 5th 24/2 = 12/s."""
    t0, t1, steady = steady_window(raw)
    pts = [(t, c) for t, c in raw["arrivals"] if t0 <= t <= t1]
    if len(pts) < 3 or len({t for t, _ in pts}) < 2:
        return steady / max(t1 - t0, 1e-9)
    t, c = np.array(pts, dtype=float).T
    return float(np.polyfit(t, c, 1)[0])


def derive(raw: dict[str, Any], system: str) -> dict[str, float]:
    """The reported figures of one raw measurement."""
    items, frames = raw["items"], raw["frames"]
    per_sample = frames / items if items else 0.0
    if system == "ceiling":  # CPU: the decoding processes' own, over every frame
        fps = sum(raw["per_core_fps"])
        cpu_per_clip = raw["cpu_s"] / max(frames, 1) * CLIP_FRAMES
        return {"frames_per_s": fps, "per_core_frames_per_s": fps / len(raw["per_core_fps"]),
                "clips_per_s": fps / CLIP_FRAMES, "decoded_per_delivered": 1.0,
                "frames_per_sample": CLIP_FRAMES, "cpu_s_per_clip": cpu_per_clip,
                "clips_per_cpu_s": 1 / max(cpu_per_clip, 1e-12),
                "cores_used": raw["cpu_s"] / max(raw["t_end"] - raw["t_start"], 1e-9), **_memory(raw)}
    t0, t1, steady = steady_window(raw)
    rate = steady_rate(raw)
    # CPU seconds per wall second: how much of the machine the system actually got.
    cores_used = raw["cpu_s"] / max(t1 - t0, 1e-9)
    if system == "inprocess":  # the workers' own rates and CPU, after their first batch
        rate, steady = raw["clips_per_s_sum"], raw["steady_items"]
        cores_used = sum(p["cpu_s"] / max(p["seconds"], 1e-9) for p in raw["per_process"])
    cpu_per_clip = raw["cpu_s"] / max(steady, 1)
    out = {"clips_per_s": rate, "frames_per_s": rate * per_sample, "frames_per_sample": per_sample,
           "cpu_s_per_clip": cpu_per_clip, "clips_per_cpu_s": 1 / max(cpu_per_clip, 1e-12),
           "cores_used": cores_used, "time_to_first_s": raw["arrivals"][0][0] - raw["t_start"],
           "wall_clips_per_s": items / max(raw["t_end"] - raw["t_start"], 1e-9), **_memory(raw)}
    if raw.get("decoded") is not None and frames:
        out["decoded_per_delivered"] = raw["decoded"] / frames
    return out


def _memory(raw: dict[str, Any]) -> dict[str, float]:
    """Peak memory, and the machine's load while it ran (other work on a shared machine)."""
    return {"peak_pss_mb": raw["peak_pss"] / 2**20, "peak_rss_mb": raw["peak_rss"] / 2**20,
            "loadavg_1m": raw.get("loadavg_1m", 0.0), "processes": raw.get("tree_processes", 0)}


def _medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for r in rounds for k in r}
    return {k: statistics.median(r[k] for r in rounds if k in r) for k in sorted(keys)}


def _lend_decoded(by: dict[tuple, dict[str, float]]) -> None:
    """clipstream runs the same VideoStage as its in-process run: give it that run's count."""
    for (system, *key), figures in by.items():
        twin = by.get(("inprocess", *key))
        if system == "clipstream" and twin and "decoded_per_delivered" in twin:
            figures["decoded_per_delivered"] = twin["decoded_per_delivered"]
            figures["decoded_frames_per_s"] = figures["frames_per_s"] * twin["decoded_per_delivered"]


def per_plan(rows: list[dict]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plans block, ceiling block) of the result, from the comparison's raw rows."""
    by = {(r["system"], r["plan"], r["round"]): derive(r, r["system"]) for r in rows}
    _lend_decoded(by)
    rounds = sorted({r["round"] for r in rows})
    ceiling_rounds = [by[("ceiling", None, i)] for i in rounds]
    plans: dict[str, Any] = {}
    for plan in sorted({r["plan"] for r in rows if r["plan"]}):
        systems = {s: [by[(s, plan, i)] for i in rounds if (s, plan, i) in by]
                   for s in ("clipstream", "dataloader", "inprocess")}
        ratios: dict[str, list[float]] = defaultdict(list)
        for i in rounds:
            cs, dl, ip = (by.get((s, plan, i)) for s in ("clipstream", "dataloader", "inprocess"))
            for key, value in round_ratios(cs, dl, ip, by[("ceiling", None, i)]).items():
                ratios[key].append(value)
        plans[plan] = {
            "systems": {s: {"median": _medians(v), "rounds": v} for s, v in systems.items() if v},
            "ratios": {k: {"median": statistics.median(v), "rounds": v} for k, v in ratios.items()},
        }
    return plans, {"median": _medians(ceiling_rounds), "rounds": ceiling_rounds}


def cpu_by_process(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per plan, clipstream's CPU ms per sample by process (driver, actors, raylet, ...),
    the median over rounds; where the end-to-end run spends what its workers do not."""
    out: dict[str, dict[str, float]] = {}
    for plan in sorted({r["plan"] for r in rows if r["system"] == "clipstream"}):
        runs = [r for r in rows if r["system"] == "clipstream" and r["plan"] == plan]
        per = []
        for r in runs:
            steady = max(steady_window(r)[2], 1)
            per.append({k: 1000 * v / steady for k, v in r.get("cpu_by_process", {}).items()})
        names = sorted({k for p in per for k in p}, key=lambda k: -statistics.median(p.get(k, 0.0) for p in per))
        out[plan] = {k: statistics.median(p.get(k, 0.0) for p in per) for k in names}
    return out


def _per_frame(figures: dict[str, float], key: str) -> float:
    """A per-sample figure turned per delivered frame."""
    return figures[key] / figures["frames_per_sample"]


def round_ratios(cs: dict | None, dl: dict | None, ip: dict | None, ceil: dict) -> dict[str, float]:
    """The ratios of one round, by wall rate and by CPU rate (``cpu_`` prefix)."""
    out: dict[str, float] = {}
    if cs and dl:
        out["ratio_vs_baseline"] = cs["clips_per_s"] / dl["clips_per_s"]
        out["cpu_ratio_vs_baseline"] = cs["clips_per_cpu_s"] / dl["clips_per_cpu_s"]
    if cs:
        out["ratio_vs_ceiling"] = cs["frames_per_s"] / ceil["frames_per_s"]
        out["cpu_ratio_vs_ceiling"] = _per_frame(ceil, "cpu_s_per_clip") / _per_frame(cs, "cpu_s_per_clip")
        if "decoded_frames_per_s" in cs:
            out["decode_ratio_vs_ceiling"] = cs["decoded_frames_per_s"] / ceil["frames_per_s"]
    if cs and ip:
        out["pipeline_efficiency"] = cs["clips_per_s"] / ip["clips_per_s"]
        out["cpu_pipeline_efficiency"] = cs["clips_per_cpu_s"] / ip["clips_per_cpu_s"]
    return out


def _median_of(by: dict[tuple, dict[str, float]], system: str, actors: int, key: str) -> float:
    return statistics.median(v[key] for (s, a, _), v in by.items() if s == system and a == actors)


def scaling_block(rows: list[dict], plan: str) -> dict[str, Any]:
    """Throughput and efficiencies against the video actor count."""
    by = {(r["system"], r["actors"], r["round"]): derive(r, r["system"]) for r in rows}
    _lend_decoded(by)
    ks = sorted({r["actors"] for r in rows})
    cs = {k: _median_of(by, "clipstream", k, "clips_per_s") for k in ks}
    ip = {k: _median_of(by, "inprocess", k, "clips_per_s") for k in ks}
    base = cs[ks[0]] / ks[0]
    return {
        "plan": plan, "actors": ks,
        "clips_per_s": [cs[k] for k in ks],
        "inprocess_clips_per_s": [ip[k] for k in ks],
        "efficiency": [cs[k] / (k * base) for k in ks],
        "cores_used": [_median_of(by, "clipstream", k, "cores_used") for k in ks],
        "clips_per_cpu_s": [_median_of(by, "clipstream", k, "clips_per_cpu_s") for k in ks],
        "pipeline_efficiency": [cs[k] / ip[k] for k in ks],
        "rounds": [{"system": s, "actors": a, "round": i, **v} for (s, a, i), v in sorted(by.items())],
    }


def goals(result: dict[str, Any]) -> dict[str, Any]:
    """How far each goal of the performance model is: value, goal, met."""
    out: dict[str, Any] = {}
    for name, (metric, key, goal) in GOALS.items():
        if metric == "scaling":
            sc = result["scaling"]
            if key not in sc["actors"] or sc["actors"][0] != 1:
                continue
            value = sc["efficiency"][sc["actors"].index(key)]
        elif key is None:  # every plan must meet it: report the worst
            values = result[metric]
            if not values:
                continue
            key = min(values, key=values.get)
            value = values[key]
        elif key in result[metric]:
            value = result[metric][key]
        else:
            continue
        out[name] = {"metric": metric, "of": key, "value": value, "goal": goal, "met": value >= goal}
    return out


def summarize(rows: list[dict], scaling_rows: list[dict], *, cfg: Any, metas: list, visits: dict) -> dict[str, Any]:
    """The whole result (what bench.json holds, apart from ``meta`` and ``profile``)."""
    plans, ceiling = per_plan(rows)
    result: dict[str, Any] = {"plans": plans, "ceiling": ceiling}
    for key in RATIOS:
        result[key] = {p: b["ratios"][key]["median"] for p, b in plans.items() if key in b["ratios"]}
    result["scaling"] = scaling_block(scaling_rows, cfg.scaling_plan)
    result["goals"] = goals(result)
    result["corpus"] = {
        "files": [{"uri": m.uri, "frames": m.num_frames, "fps": m.avg_fps, "size": f"{m.width}x{m.height}",
                   "keyframes": len(m.keyframes), "bytes": m.size_bytes} for m in metas],
    }
    result["samples"] = {p: {"count": len(v), "frames_per_sample": frames_per_sample(v[0])}
                         for p, (v, _) in visits.items()}
    result["clipstream_cpu_by_process"] = cpu_by_process(rows)
    result["ray_stats"] = {r["plan"]: r.get("stats", "") for r in rows if r["system"] == "clipstream"}
    return result


def line(raw: dict[str, Any], system: str) -> str:
    """One progress line of a raw measurement."""
    d = derive(raw, system)
    return (f"{d['clips_per_s']:7.1f} clips/s {d['frames_per_s']:7.0f} frames/s "
            f"cpu {d['cpu_s_per_clip']:.3f} s/clip pss {d['peak_pss_mb']:.0f} MB")


def machine() -> dict[str, Any]:
    """Where and when: date (UTC), CPU model, cores, RAM, library versions."""
    import av

    model = ""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                      if ln.startswith("Model name")), "")
    except OSError:
        pass
    mem = next((int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal")), 0)
    versions = {"python": platform.python_version(), "av": av.__version__,
                "libavcodec": ".".join(map(str, av.library_versions.get("libavcodec", ())))}
    for mod in ("ray", "torch", "numpy"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return {"date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu_model": model, "cores": os.cpu_count(), "ram_gib": round(mem / 2**20, 1),
            "versions": versions}


def markdown(result: dict[str, Any]) -> str:
    """The result as Markdown tables (what docs/benchmarks.md keeps)."""
    from pipelines._bench_tables import render

    return render(result)
