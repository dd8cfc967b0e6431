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
    return (
        f"- date: {meta.get('date_utc')}; machine: {meta.get('cpu_model')}, {meta.get('cores')} cores, "
        f"{meta.get('ram_gib')} GiB RAM; PyAV {v.get('av')} (libavcodec {v.get('libavcodec')}), "
        f"Ray {v.get('ray')}, torch {v.get('torch')}\n"
        f"- command: `{meta.get('command')}` ({_f(meta.get('wall_s'), 0)} s)\n"
        f"- files: {len(files)} ({cfg.get('videos')} synthetic 340x256 H.264, GOP {cfg.get('gop')}, "
        f"{cfg.get('seconds')} s at 30 fps{', + the real Kinetics clips' if cfg.get('with_real') else ''}); "
        f"{cfg.get('clips')} samples per system, plan and round; {cfg.get('rounds')} rounds after a "
        f"discarded warm-up, systems in rotating order; medians shown; {cfg.get('actors')} video "
        f"actors, {cfg.get('workers')} DataLoader workers, Ray with {cfg.get('ray_cpus')} logical CPUs\n"
    )


def systems_table(result: dict[str, Any]) -> str:
    rows = []
    ceiling = result["ceiling"]["median"]
    for plan, block in result["plans"].items():
        for system, name in SYSTEM_NAMES.items():
            m = block["systems"].get(system, {}).get("median")
            if not m:
                continue
            rows.append((plan, name, _f(m["clips_per_s"]), _f(m["frames_per_s"], 0),
                         _f(m.get("decoded_per_delivered"), 2), _f(m["cpu_s_per_clip"], 4),
                         _f(m["peak_pss_mb"], 0), _f(m["peak_rss_mb"], 0),
                         _f(m.get("time_to_first_s"), 1) if system != "inprocess" else "–"))
    rows.append(("all", "FFmpeg ceiling (every frame, 1 thread per core)", _f(ceiling["clips_per_s"]),
                 _f(ceiling["frames_per_s"], 0), "1.00", _f(ceiling["cpu_s_per_clip"], 4),
                 _f(ceiling["peak_pss_mb"], 0), _f(ceiling["peak_rss_mb"], 0), "–"))
    return table(("plan", "system", "clips/s", "frames/s", "decoded/delivered", "CPU s/clip",
                  "peak PSS MB", "peak RSS MB", "first batch s"), rows)


def ratios_table(result: dict[str, Any]) -> str:
    keys = ("ratio_vs_baseline", "ratio_vs_ceiling", "decode_ratio_vs_ceiling", "pipeline_efficiency")
    rows = [(plan, by, *(_f(result.get(prefix + k, {}).get(plan), 2) if prefix + k in result else "–"
                         for k in keys))
            for plan in result["plans"] for by, prefix in (("wall", ""), ("CPU", "cpu_"))]
    return table(("plan", "rate per", *keys), rows)


def scaling_table(result: dict[str, Any]) -> str:
    sc = result["scaling"]
    rows = [(k, _f(c), _f(i), _f(e, 2), _f(p, 2)) for k, c, i, e, p in
            zip(sc["actors"], sc["clips_per_s"], sc["inprocess_clips_per_s"], sc["efficiency"],
                sc["pipeline_efficiency"])]
    return table(("video actors", "clipstream clips/s", "in-process clips/s (sum)",
                  "scaling efficiency", "pipeline efficiency"), rows)


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


def render(result: dict[str, Any]) -> str:
    """Every table of one run, with the run's date, machine and command."""
    parts = [header_lines(result), "\n", systems_table(result), "\n", ratios_table(result), "\n",
             f"Scaling ({result['scaling']['plan']} plan):\n\n", scaling_table(result), "\n",
             goals_table(result)]
    prof = profile_table(result)
    if prof:
        parts += ["\nWhere the decode worker's time goes (cProfile, own time):\n\n", prof]
    return "".join(parts)
