"""The figures of a run report, each built from ``metrics.json`` and returned as PNG bytes.

Every function returns ``None`` when the metrics hold nothing to draw, so the report can say
"not recorded" instead of showing an empty plot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipelines._plots import figure, png_bytes, rolling_mean

# Keys under which a run may store per-task loss curves ({task: [loss per step]}).
TASK_LOSS_KEYS = ("task_loss", "loss_per_task", "losses")


def clips_per_step(metrics: Mapping[str, Any]) -> float:
    """Samples consumed per step by all ranks together.

    From the config (``batch_size * workers``) when it is there, else from the totals
    (``clips_per_s * wall_s / steps``), which is the same number for a run without failures.
    """
    train = (metrics.get("config") or {}).get("train") or {}
    if train.get("batch_size") and train.get("workers"):
        return float(train["batch_size"]) * float(train["workers"])
    steps = metrics.get("steps") or len(metrics.get("loss") or []) or 1
    return float(metrics.get("clips_per_s", 0.0)) * float(metrics.get("wall_s", 0.0)) / steps


def step_timeline(metrics: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(end time of each step in s, wait_s, compute_s) from the per-step means."""
    wait = np.asarray(metrics.get("step_wait_s") or [], dtype=np.float64)
    compute = np.asarray(metrics.get("step_compute_s") or [], dtype=np.float64)
    n = min(wait.size, compute.size)
    wait, compute = wait[:n], compute[:n]
    return np.cumsum(wait + compute), wait, compute


def throughput_stall_png(metrics: Mapping[str, Any]) -> bytes | None:
    """Clips/s and stall fraction over wall time, both smoothed over a window of steps.

    The window ratio (sum of clips / sum of step time; sum of wait / sum of step time) is
    used rather than a mean of per-step ratios, so one very short step does not spike it.
    """
    t, wait, compute = step_timeline(metrics)
    if t.size == 0:
        return None
    window = max(1, t.size // 40)
    step_s = np.maximum(rolling_mean(wait + compute, window), 1e-9)
    rate = clips_per_step(metrics) / step_s
    stall = rolling_mean(wait, window) / step_s
    fig, (ax1, ax2) = figure(9.0, 3.2, ncols=2)
    ax1.plot(t, rate, color="tab:blue")
    ax1.set(xlabel="wall time (s)", ylabel="clips/s", title=f"throughput ({window}-step window)")
    ax1.set_ylim(bottom=0)
    ax2.plot(t, 100 * stall, color="tab:red", label="per step (rank mean)")
    timeline = [p for p in metrics.get("timeline") or [] if p.get("stall_10s") is not None]
    if timeline:  # the driver's samples: the clock starts a little before the first step
        ax2.plot([p["t"] for p in timeline], [100 * p["stall_10s"] for p in timeline],
                 color="tab:purple", lw=0.8, label="last 10 s (driver)")
    ax2.axhline(5, color="grey", ls="--", lw=0.8, label="5% goal")
    ax2.set(xlabel="wall time (s)", ylabel="% of step time waiting for data", title="stall")
    ax2.set_ylim(0, 100)
    ax2.legend(loc="upper right")
    return png_bytes(fig)


def task_losses(metrics: Mapping[str, Any]) -> dict[str, list[float]]:
    """Per-task loss curves, if the run recorded any."""
    for key in TASK_LOSS_KEYS:
        value = metrics.get(key)
        if isinstance(value, Mapping) and value:
            return {str(k): list(v) for k, v in value.items() if v}
    return {}


def loss_png(metrics: Mapping[str, Any]) -> bytes | None:
    """The total loss per step and, when recorded, each task's loss."""
    total = list(metrics.get("loss") or [])
    per_task = task_losses(metrics)
    if not total and not per_task:
        return None
    fig, ax = figure()
    window = max(1, len(total) // 40)
    if total:
        ax.plot(total, color="lightgrey", lw=0.8, label="total (per step)")
        ax.plot(rolling_mean(np.asarray(total), window), color="black", label=f"total ({window}-step mean)")
    for name, curve in per_task.items():
        ax.plot(rolling_mean(np.asarray(curve, dtype=np.float64), window), label=name)
    ax.set(xlabel="step", ylabel="loss", title="loss")
    ax.legend(loc="upper right", fontsize="small")
    return png_bytes(fig)


def label_histogram_png(task: str, counts: Mapping[str, int]) -> bytes | None:
    """Bars of the delivered labels of one task, with the uniform share for reference."""
    if not counts:
        return None
    labels = sorted(counts, key=lambda k: (len(k), k))  # "2" before "10"
    values = np.asarray([counts[k] for k in labels], dtype=np.float64)
    fig, ax = figure(max(4.0, 0.35 * len(labels) + 2), 3.0)
    ax.bar(range(len(labels)), values, color="tab:green")
    ax.axhline(values.sum() / len(labels), color="grey", ls="--", lw=0.8, label="uniform")
    ax.set_xticks(range(len(labels)), labels, rotation=90 if len(labels) > 12 else 0)
    ax.set(xlabel="label", ylabel="samples", title=f"{task}: delivered labels")
    ax.legend(loc="upper right", fontsize="small")
    return png_bytes(fig)


# Per-stage series the actors figure draws besides the actor count, when recorded:
# (key, y label, title); rows_per_s is preferred to the cumulative rows.
STAGE_PANELS = (("rows_per_s", "rows/s", "rows per second per stage"),
                ("rows", "rows", "rows done per stage"),
                ("queued_after", "rows", "rows queued after each stage"))


def _stage_panels(series: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[tuple[str, str, str]]:
    has = {key for pts in series.values() for p in pts for key in p}
    panels = [p for p in STAGE_PANELS if p[0] in has]
    if panels and panels[0][0] == "rows_per_s":
        panels = [p for p in panels if p[0] != "rows"]
    return panels


def actors_png(stages: Mapping[str, Sequence[Mapping[str, Any]]]) -> bytes | None:
    """Actor count of each stage over time, with its throughput and queue when recorded."""
    series = {name: list(points) for name, points in (stages or {}).items() if points}
    if not series:
        return None
    panels = _stage_panels(series)
    fig, axes = figure(4.5 * (1 + len(panels)), 3.2, ncols=1 + len(panels))
    axes = list(axes) if panels else [axes]
    for name, pts in series.items():
        t = [float(p.get("t", i)) for i, p in enumerate(pts)]
        axes[0].step(t, [p.get("actors", 0) for p in pts], where="post", label=name)
        for ax, (key, _, _) in zip(axes[1:], panels):
            ax.plot(t, [p.get(key, 0) for p in pts], label=name)
    axes[0].set(xlabel="time (s)", ylabel="actors", title="actors per stage")
    axes[0].set_ylim(bottom=0)
    axes[0].yaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(loc="upper right", fontsize="small")
    for ax, (_, ylabel, title) in zip(axes[1:], panels):
        ax.set(xlabel="time (s)", ylabel=ylabel, title=title)
        ax.set_ylim(bottom=0)
    return png_bytes(fig)
