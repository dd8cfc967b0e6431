"""The benchmark's charts: ``bench.png`` (systems side by side per plan) and ``scaling.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipelines._plots import figure, png_bytes

SERIES = (("clipstream", "clipstream (Ray Data)", "tab:blue"),
          ("inprocess", "VideoStage in-process", "tab:cyan"),
          ("dataloader", "DataLoader + PyAV", "tab:orange"))
PANELS = (("clips_per_s", "clips/s (higher is better)"),
          ("frames_per_s", "delivered frames/s"),
          ("cpu_s_per_clip", "CPU s per clip (lower is better)"),
          ("decoded_per_delivered", "decoded / delivered frames"))


def _bars(ax: Any, result: dict[str, Any], key: str, title: str) -> None:
    plans = list(result["plans"])
    x = np.arange(len(plans))
    width = 0.8 / len(SERIES)
    for j, (system, label, colour) in enumerate(SERIES):
        values = [result["plans"][p]["systems"].get(system, {}).get("median", {}).get(key, np.nan)
                  for p in plans]
        ax.bar(x + (j - 1) * width, values, width, label=label, color=colour)
    if key == "frames_per_s":
        ax.axhline(result["ceiling"]["median"]["frames_per_s"], color="black", ls="--", lw=1,
                   label="FFmpeg ceiling (all cores)")
    if key == "decoded_per_delivered":
        ax.axhline(1.0, color="black", ls=":", lw=1)
    ax.set_xticks(x, plans)
    ax.set_title(title, fontsize="medium")


def comparison_png(result: dict[str, Any]) -> bytes:
    """2x2 panels: clips/s, frames/s against the ceiling, CPU per clip, decode waste."""
    fig, axes = figure(10.0, 7.0, ncols=2, nrows=2)
    for ax, (key, title) in zip(axes.flat, PANELS):
        _bars(ax, result, key, title)
    handles, labels = axes[0, 1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize="small")
    meta = result.get("meta", {})
    fig.suptitle(f"clipstream vs DataLoader vs FFmpeg ceiling: {meta.get('cpu_model', '')}, "
                 f"{meta.get('cores', '?')} cores, {meta.get('date_utc', '')}", fontsize="medium")
    fig.subplots_adjust(bottom=0.12)
    return png_bytes(fig)


def scaling_png(result: dict[str, Any]) -> bytes:
    """clips/s against video actors, with the ideal line and the efficiency at each step."""
    sc = result["scaling"]
    ks = np.asarray(sc["actors"])
    fig, ax = figure(6.0, 4.0)
    ax.plot(ks, sc["clips_per_s"], "o-", color="tab:blue", label="clipstream end to end")
    ax.plot(ks, sc["inprocess_clips_per_s"], "s--", color="tab:cyan", label="in-process workers (sum)")
    ideal = sc["clips_per_s"][0] / ks[0] * ks
    ax.plot(ks, ideal, ":", color="grey", label="linear from 1 actor")
    for k, rate, eff in zip(ks, sc["clips_per_s"], sc["efficiency"]):
        ax.annotate(f"{eff:.2f}", (k, rate), textcoords="offset points", xytext=(6, -12), fontsize="small")
    ax.set_xticks(ks)
    ax.set(xlabel="video actors", ylabel="clips/s", title=f"scaling ({sc['plan']} plan; labels: efficiency)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize="small")
    return png_bytes(fig)


def write_charts(result: dict[str, Any], out: Path) -> list[Path]:
    """Write ``bench.png`` and ``scaling.png`` into ``out``."""
    paths = [out / "bench.png", out / "scaling.png"]
    paths[0].write_bytes(comparison_png(result))
    paths[1].write_bytes(scaling_png(result))
    return paths
