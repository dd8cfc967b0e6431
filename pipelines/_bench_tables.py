"""Markdown tables of a benchmark result, as ``docs/benchmarks.md`` keeps them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SYSTEM_NAMES = {
    "clipstream": "clipstream end to end (Ray Data)",
    "inprocess": "clipstream VideoStage in-process (sum of workers)",
    "dataloader": "DataLoader + PyAV (PyTorchVideo way)",
}


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _f(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def header_lines(result: dict[str, Any]) -> str:
    meta, cfg = result.get("meta", {}), result.get("meta", {}).get("config", {})
    v = meta.get("versions", {})
    files = result.get("corpus", {}).get("files", [])
    load = meta.get("loadavg_1m", {})
    warning = ("- **quick mode: a handful of samples, one round, no warm-up; the figures below "
               "check the machinery and measure nothing**\n" if cfg.get("quick_mode") else "")
    return warning + (
        f"- date: {meta.get('date_utc')}; machine: {meta.get('cpu_model')}, {meta.get('cores')} cores, "
        f"{meta.get('ram_gib')} GiB RAM; PyAV {v.get('av')} (libavcodec {v.get('libavcodec')}), "
        f"Ray {v.get('ray')}, torch {v.get('torch')}\n"
        f"- command: `{meta.get('command')}` ({_f(meta.get('wall_s'), 0)} s)\n"
        f"- files: {len(files)} ({cfg.get('videos')} synthetic 340x256 H.264, GOP {cfg.get('gop')}, "
        f"{cfg.get('seconds')} s at 30 fps{', + the real Kinetics clips' if cfg.get('with_real') else ''}); "
        f"{cfg.get('clips')} samples per system, plan and round; {cfg.get('rounds')} rounds after a "
        f"discarded warm-up, systems in rotating order; medians shown; {cfg.get('actors')} video "
        f"actors, {cfg.get('workers')} DataLoader workers, Ray with {cfg.get('ray_cpus')} logical CPUs\n"
        f"- machine load (1-min load average; the machine is shared): {_f(load.get('start'), 0)} at "
        f"the start, {_f(load.get('end'), 0)} at the end; the `load` column is the median at the "
        f"end of each measurement. `cores used` = CPU seconds of the system's process tree per "
        f"wall second of its steady window; CPU ms/clip is per sample (the ceiling: per 16 frames)\n"
    )


def ray_idle_line(result: dict[str, Any]) -> str:
    idle = result.get("ray_idle")
    if not idle:
        return ""
    return (f"- the local Ray alone, idle ({idle['processes']} processes): "
            f"{idle['cpu_s_per_s']:.3f} CPU s per s, {idle['pss_mb']:,.0f} MB PSS "
            f"({idle['rss_mb']:,.0f} MB RSS)\n")


def systems_table(result: dict[str, Any]) -> str:
    rows = []
    ceiling = result["ceiling"]["median"]
    for plan, block in result["plans"].items():
        for system, name in SYSTEM_NAMES.items():
            m = block["systems"].get(system, {}).get("median")
            if not m:
                continue
            rows.append((plan, name, _f(m["clips_per_s"]), _f(m["frames_per_s"], 0),
                         _f(m.get("decoded_per_delivered"), 2), _f(1000 * m["cpu_s_per_clip"], 1),
                         _f(m.get("cores_used"), 2), _f(m["peak_pss_mb"], 0), _f(m["peak_rss_mb"], 0),
                         _f(m.get("time_to_first_s"), 1) if system != "inprocess" else "–",
                         _f(m.get("loadavg_1m"), 0)))
    rows.append(("all", "FFmpeg ceiling (every frame, 1 thread per core)", _f(ceiling["clips_per_s"]),
                 _f(ceiling["frames_per_s"], 0), "1.00", _f(1000 * ceiling["cpu_s_per_clip"], 1),
                 _f(ceiling.get("cores_used"), 2), _f(ceiling["peak_pss_mb"], 0),
                 _f(ceiling["peak_rss_mb"], 0), "–", _f(ceiling.get("loadavg_1m"), 0)))
    return table(("plan", "system", "clips/s", "frames/s", "decoded/delivered", "CPU ms/clip",
                  "cores used", "peak PSS MB", "peak RSS MB", "first batch s", "load"), rows)


def cpu_by_process_table(result: dict[str, Any], top: int = 8) -> str:
    """clipstream's CPU ms per sample by process, the biggest ``top`` and the rest."""
    by = result.get("clipstream_cpu_by_process") or {}
    if not by:
        return ""
    names = list(dict.fromkeys(k for per in by.values() for k in list(per)[:top]))
    rows = []
    for plan, per in by.items():
        rest = sum(v for k, v in per.items() if k not in names)
        rows.append((plan, *(_f(per.get(k), 1) for k in names), _f(rest, 1), _f(sum(per.values()), 1)))
    return table(("plan", *names, "other", "total"), rows)


def ratios_table(result: dict[str, Any]) -> str:
    keys = ("ratio_vs_baseline", "ratio_vs_ceiling", "decode_ratio_vs_ceiling", "pipeline_efficiency")
    rows = [(plan, by, *(_f(result.get(prefix + k, {}).get(plan), 2) if prefix + k in result else "–"
                         for k in keys))
            for plan in result["plans"] for by, prefix in (("wall", ""), ("CPU", "cpu_"))]
    return table(("plan", "rate per", *keys), rows)


def scaling_table(result: dict[str, Any]) -> str:
    sc = result["scaling"]
    rows = [(k, _f(c), _f(i), _f(e, 2), _f(p, 2), _f(u, 2), _f(q, 1)) for k, c, i, e, p, u, q in
            zip(sc["actors"], sc["clips_per_s"], sc["inprocess_clips_per_s"], sc["efficiency"],
                sc["pipeline_efficiency"], sc.get("cores_used", []), sc.get("clips_per_cpu_s", []))]
    return table(("video actors", "clipstream clips/s", "in-process clips/s (sum)",
                  "scaling efficiency", "pipeline efficiency", "cores used", "clips per CPU s"), rows)


def goals_table(result: dict[str, Any]) -> str:
    rows = [(name, f"{g['metric']} ({g['of']})", _f(g["value"], 2), f"≥ {g['goal']}",
             "met" if g["met"] else "**missed**") for name, g in result.get("goals", {}).items()]
    return table(("goal", "measured as", "value", "goal", ""), rows)


def profile_table(result: dict[str, Any]) -> str:
    prof = result.get("profile") or {}
    if not prof:
        return ""
    buckets = list(next(iter(prof.values()))["buckets"])
    rows = []
    for key, p in prof.items():
        total = max(p["profiled_s"], 1e-9)
        rows.append((key, _f(p["rows"] / p["seconds"]),
                     *(f"{100 * p['buckets'][b] / total:.0f}%" for b in buckets)))
    return table(("plan/decoder threads", "clips/s (1 process, profiled)", *buckets), rows)


BREAKDOWN_STEPS = ("open", "seek_table", "span_decode", "reader", "reader_cached_table",
                   "stage_pickle", "baseline")


def breakdown_table(result: dict[str, Any]) -> str:
    """CPU ms per sample of each step of the decode worker (see _bench_breakdown)."""
    rows = [(plan, *(_f(steps.get(k), 1) for k in BREAKDOWN_STEPS))
            for plan, steps in (result.get("breakdown") or {}).items()]
    return table(("plan", *BREAKDOWN_STEPS), rows) if rows else ""


def render(result: dict[str, Any]) -> str:
    """Every table of one run, with the run's date, machine and command."""
    parts = [header_lines(result), ray_idle_line(result), "\n", systems_table(result), "\n", ratios_table(result), "\n",
             f"Scaling ({result['scaling']['plan']} plan):\n\n", scaling_table(result), "\n",
             goals_table(result)]
    procs = cpu_by_process_table(result)
    if procs:
        parts += ["\nclipstream end to end, CPU ms per sample by process (steady window):\n\n", procs]
    prof = profile_table(result)
    if prof:
        parts += ["\nWhere the decode worker's time goes (cProfile, own time):\n\n", prof]
    steps = breakdown_table(result)
    if steps:
        parts += ["\nCPU ms per sample, step by step, one thread (process_time):\n\n", steps]
    return "".join(parts)
