"""Contact sheets of what a pretext task feeds the model, decoded by the pipeline's own stages.

``sample_items`` plans the first ``n`` samples of an epoch with the real planner, runs the
same decode stages the Ray Data graph runs (in this process: video with PyAV, audio, motion)
and assembles them with the task; ``render_sheet`` draws one row per sample: the inputs in
fed order (one line of frames per input of the shared backbone), the label in words, the
audio's log-mel, the keyframe and the motion fields in colour (hue = direction, brightness
= magnitude).

    items = sample_items("vcop", manifest="data/manifest.parquet", n=8, seed=0)
    render_sheet(get_task("vcop"), items, "preview.png")
"""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.config import DataConfig
from pipelines.dataset import _stage_class, needed_stages
from pipelines.planner import Planner, Visit
from pipelines.tasks import SamplePlan, Task, get_task
from workers.meta import VideoMeta
from workers.stage import Batch, encode_row

GAP = 2  # pixels between tiles of a mosaic
NEGATIVE_KINDS = ("in sync", "easy negative (other video)", "hard negative (shifted)")
ROW_NAMES = {"dsm": ("anchor", "positive", "negative")}


@dataclass
class PreviewItem:
    """One sample as the model receives it: its plan, its video and the assembled arrays
    (empty, with ``error`` set, when a stage could not decode it)."""

    plan: SamplePlan
    meta: VideoMeta
    metas: dict[int, VideoMeta]
    arrays: dict[str, np.ndarray]
    error: str = ""


def sample_items(
    task: str | Task,
    *,
    manifest: str | Path | None = None,
    n: int = 8,
    seed: int = 0,
    epoch: int = 0,
    params: Mapping[str, Any] | None = None,
    size: tuple[int, int] = (112, 112),
) -> list[PreviewItem]:
    """The first ``n`` samples of ``epoch``, planned, decoded and assembled.

    Args:
        task: a task name (built with ``params``) or a built task.
        manifest: a manifest path; None uses the embedded synthetic dataset
            (``pipelines.synthetic.default_manifest``, generated once into the cache).
        n: how many samples.
        seed, epoch: the run's seed and the epoch planned (curricula depend on it).
        size: the (h, w) frames are decoded at, as in a run.
    """
    if n < 1:
        raise ValueError(f"n ({n}) must be >= 1")
    built = get_task(task, **dict(params or {})) if isinstance(task, str) else task
    if manifest is None:
        from pipelines.synthetic import default_manifest

        manifest = default_manifest()
    from pipelines.manifest import read_manifest

    metas = read_manifest(manifest)
    visits: list[Visit] = []
    # A small manifest may hold fewer usable videos than n: plan the same epoch again under
    # the next seeds (the same design, other draws) until there are n samples.
    for extra in range(64):
        if len(visits) >= n:
            break
        planner = Planner(metas, [built], seed=seed + extra, size=size)
        visits += planner.plan_epoch(epoch).visits[: n - len(visits)]
    data = DataConfig(manifest=str(manifest), tasks={built.name: 1.0}, seed=seed, size=size)
    batch = decode_visits(visits, data, [built])
    items = []
    for i, visit in enumerate(visits):
        plan = visit.plans[0]
        error = str(batch["error"][i])
        decoded = pickle.loads(batch["decoded"][i])[0]
        arrays = {} if error else built.assemble(decoded, plan)
        items.append(PreviewItem(plan, visit.metas[plan.video_id], visit.metas, arrays, error))
    return items


def decode_visits(visits: Sequence[Visit], data: DataConfig, tasks: Sequence[Task]) -> Batch:
    """Run the decode stages a run would run, in this process, on one batch of visits."""
    rows = [encode_row(v.plans, v.metas) for v in visits]
    batch: Batch = {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]}
    for name in needed_stages(tasks):
        cfg = getattr(data, name)
        batch = _stage_class(name, cfg)(data, cfg)(batch)
    return batch


def mosaic(tiles: np.ndarray, fill: int = 255) -> np.ndarray:
    """Tiles (rows, cols, h, w, 3) as one picture with ``GAP`` pixels between them."""
    rows, cols, h, w, c = tiles.shape
    out = np.full((rows * (h + GAP) - GAP, cols * (w + GAP) - GAP, c), fill, tiles.dtype)
    for r in range(rows):
        for k in range(cols):
            out[r * (h + GAP) : r * (h + GAP) + h, k * (w + GAP) : k * (w + GAP) + w] = tiles[r, k]
    return out


def motion_tiles(motion: np.ndarray, scale: int = 6) -> np.ndarray:
    """Fields (M, T, h, w, 2) as colour tiles (M, T, h * scale, w * scale, 3), one brightness
    scale for the whole sample so that stronger motion looks brighter."""
    from workers.motion import flow_to_color

    top = float(np.hypot(motion[..., 0], motion[..., 1]).max(initial=0.0)) or 1.0
    colour = np.stack([np.stack([flow_to_color(f, top) for f in seq]) for seq in motion])
    return colour.repeat(scale, axis=2).repeat(scale, axis=3)


def describe(task: Task, item: PreviewItem) -> str:
    """The title of a sample's row: its video, the label in words and the plan's choices."""
    plan = item.plan
    words = f"label {plan.label}"
    if 0 <= plan.label < task.num_classes:
        words += f" = {task.label_names()[plan.label]}"
    elif not task.num_classes:
        words += f" (not a class: {task.target})"
    parts = [Path(item.meta.uri).name, words]
    if task.name == "avts" and plan.params.get("negative"):
        parts.append(NEGATIVE_KINDS[plan.params["negative"]])
    if "mix" in plan.params:
        parts.append(f"distractor weight {plan.params['mix']:.2f}")
    return "  |  ".join(parts)


def row_names(task: Task, item: PreviewItem, inputs: int) -> list[str]:
    """A name for each input of the backbone: its frames, or its role in the task."""
    if task.name in ROW_NAMES:
        return list(ROW_NAMES[task.name])
    clips = item.plan.clips
    if inputs <= len(clips):  # one read per input (extra reads: a keyframe, a distractor)
        return [_span(r.frames) for r in clips[:inputs]]
    if len(clips) == 1 and inputs == len(clips[0].frames):
        return [f"frame {f}" for f in clips[0].frames]
    return [f"input {k}" for k in range(inputs)]


def _span(frames: Sequence[int]) -> str:
    if len(frames) == 1:
        return f"frame {frames[0]}"
    step = frames[1] - frames[0]
    regular = all(b - a == step for a, b in itertools.pairwise(frames))
    if regular:
        return f"frames {frames[0]}..{frames[-1]} step {step}"
    return "frames " + ",".join(map(str, frames))


def _source(item: PreviewItem, video_id: int) -> str:
    meta = item.metas.get(video_id)
    return Path(meta.uri).name if meta else str(video_id)


def render_sheet(task: Task, items: Sequence[PreviewItem], out: str | Path, *,
                 tile: float = 1.0) -> Path:
    """Draw ``items`` as a contact sheet PNG at ``out`` (one row per sample).

    Args:
        tile: inches per decoded frame tile, which sets the figure size.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not items:
        raise ValueError("no items to draw")
    fig_w = max(max(sum(_panel_widths(it)) * tile + _margins(it)[0] + 0.2 for it in items), 9.0)
    heights = [_rows(it) * tile + _margins(it)[1] + _margins(it)[2] for it in items]
    fig = plt.figure(figsize=(fig_w, sum(heights) + 0.6))
    subs: Any = fig.subfigures(len(items) + 1, 1, height_ratios=[0.6, *heights])
    head, rows = subs[0], subs[1:]  # an array of SubFigures, as there are always >= 2
    head.suptitle(f"{task.name}: {len(items)} samples as the model receives them\n"
                  "one line of frames per backbone input, in fed order", fontsize=12)
    for sub, item, height in zip(rows, items, heights):
        _draw_item(sub, task, item, (fig_w, height))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def video_grid(video: np.ndarray) -> np.ndarray:
    """The tiles of a ``video`` output (K, T, H, W, 3): one line of frames per input, or,
    when every input is a single frame (Shuffle & Learn, OPN, AVC), the inputs side by side."""
    return video.transpose(1, 0, 2, 3, 4) if video.shape[1] == 1 else video


def _rows(item: PreviewItem) -> float:
    """Height of a sample's row, in frame tiles."""
    video = item.arrays.get("video")
    if video is None:
        return 0.5
    lines, _, h, w, _ = video_grid(video).shape
    return lines * h / w


def _margins(item: PreviewItem) -> tuple[float, float, float]:
    """(left, top, bottom) inches around a sample's panels: row names go left of lines of
    frames, below single frames; the sample's title goes on top."""
    video = item.arrays.get("video")
    single = video is not None and video.shape[1] == 1
    return (0.3, 0.5, 0.35) if single else (1.9, 0.5, 0.1)


def _panel_widths(item: PreviewItem) -> list[float]:
    """Widths of a row's panels, in frame tiles."""
    a = item.arrays
    widths = [float(video_grid(a["video"]).shape[1]) if "video" in a else 1.0]
    if "keyframe" in a:
        widths.append(1.0)
    if "audio" in a:
        widths.append(2.5 * a["audio"].shape[0])
    if "motion" in a:
        widths.append(float(a["motion"].shape[1]) * 0.6)
    return widths


def _draw_item(sub: Any, task: Task, item: PreviewItem, size: tuple[float, float]) -> None:
    sub.suptitle(describe(task, item), fontsize=10, x=0.01, ha="left", va="top", y=0.99)
    if item.error:
        ax = sub.subplots(1, 1)
        ax.axis("off")
        ax.text(0.0, 0.5, f"not decoded: {item.error}", color="red", fontsize=8)
        return
    a = item.arrays
    widths = _panel_widths(item)
    axes = np.atleast_1d(sub.subplots(1, len(widths), width_ratios=widths))
    (w_in, h_in), (left, top, bottom) = size, _margins(item)
    sub.subplots_adjust(left=left / w_in, right=1 - 0.2 / w_in, top=1 - top / h_in,
                        bottom=bottom / h_in, wspace=0.1)
    video = a["video"]
    ax = axes[0]
    ax.imshow(mosaic(video_grid(video)))
    k, t, h, w, _ = video.shape
    names = row_names(task, item, k)
    if t == 1:  # inputs side by side, named below
        ax.set_xticks([c * (w + GAP) + w / 2 for c in range(k)], names, fontsize=8)
        ax.set_yticks([])
    else:
        ax.set_yticks([r * (h + GAP) + h / 2 for r in range(k)], names, fontsize=8)
        ax.set_xticks([])
    i = 1
    if "keyframe" in a:
        axes[i].imshow(a["keyframe"][0, 0])
        axes[i].set_title(f"keyframe {item.plan.clips[1].frames[0]}", fontsize=8)
        axes[i].axis("off")
        i += 1
    if "audio" in a:
        audio_read = item.plan.audio[0]
        mel = np.concatenate([spec[0] for spec in a["audio"]], axis=1)  # channel 0 of each
        axes[i].imshow(mel, origin="lower", aspect="auto", cmap="magma")
        axes[i].set_title(f"log-mel of {_source(item, audio_read.video_id)} "
                          f"[{audio_read.start_s:.2f}, {audio_read.end_s:.2f}) s", fontsize=8)
        axes[i].set_xticks([])
        axes[i].set_yticks([])
        i += 1
    if "motion" in a:
        read = item.plan.motion[0]
        axes[i].imshow(mosaic(motion_tiles(a["motion"])))
        axes[i].set_title(f"motion of frames [{read.start}, {read.stop})", fontsize=8)
        axes[i].axis("off")
