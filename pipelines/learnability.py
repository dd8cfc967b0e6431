"""Learnability: does each pretext task's small model learn on the generated dataset?

For every task, a fixed pool of training samples and a separate held-out pool (planned under
other seeds, so other frames, orders, strides and audio windows) are planned, decoded and
assembled once, in this process, by the pipeline's own stages (``pipelines.preview.
sample_items``); the task's model (``models.pretext``, the ``tiny3d`` video backbone and the
``tiny2d`` audio CNN) then trains on batches drawn from the pool with AdamW for a fixed number
of steps. Classification tasks report held-out accuracy against chance; the others report
their held-out loss before and after training.

Chance is what a model that ignores its input scores: ``1 / num_classes`` for a design with
uniform labels, the majority class's share for an unbalanced one (Shuffle & Learn: 75%
negatives). The held-out pool's own majority share is recorded beside it, since a finite pool
is never exactly balanced; a task "beats chance" when it beats both.

    uv run python -m pipelines.learnability --models tiny3d tiny3d_spatial \\
        --out docs/learnability.json --markdown docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.synthetic import GENERATOR_VERSION, SyntheticSpec

CLASSIFICATION = ("shuffle_learn", "opn", "o3n", "vcop", "arrow_of_time", "pace", "avc", "avts")
LOSS_ONLY = ("rho_persistence", "dsm", "motion_context", "av_contrastive")
SECTION = "## Learnability: accuracy against chance per task"

# Task parameters of the measurement: the papers' defaults, except shorter clips where a
# default would cost most of the CPU budget (recorded in the results beside each task).
TASK_PARAMS: dict[str, dict[str, Any]] = {
    "vcop": {"clip_len": 8, "interval": 4},
    "o3n": {"num_elements": 4, "seq_len": 4},
    "avts": {"clip_len": 8},
    "rho_persistence": {"clip_len": 4, "stride": 8},
    "dsm": {"clip_len": 8},
    "motion_context": {"clip_len": 8, "motion_len": 8},
}


@dataclass(frozen=True, kw_only=True)
class LearnConfig:
    """How each task is trained and measured.

    Args:
        steps: optimizer steps per task (the same for every task).
        batch_size: samples per step.
        lr, weight_decay: AdamW's.
        train_n, eval_n: samples decoded into the training and the held-out pool.
        size: decoded frame size (h, w).
        seed: seeds the plans, the model's initialization and the batch order.
        eval_seed: first planner seed of the held-out pool (training uses ``seed`` onwards).
        threads: torch intra-op threads (1 keeps a shared machine's cores for others).
    """

    steps: int = 1500
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    train_n: int = 2048
    eval_n: int = 256
    size: tuple[int, int] = (64, 64)
    seed: int = 0
    eval_seed: int = 10_000
    threads: int = 1

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "train_n", "eval_n", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} ({getattr(self, name)}) must be >= 1")
        last = self.seed + seed_span(self.train_n)
        if self.eval_seed < last:
            raise ValueError(f"eval_seed ({self.eval_seed}) must be >= {last}, the end of the "
                             f"seeds the {self.train_n} training samples are planned from, so "
                             "the pools never share a plan")


def dataset_spec() -> SyntheticSpec:
    """The generated dataset of the measurement: 48 videos (8 per motion class) of 128 frames."""
    return SyntheticSpec(num_videos=48, num_frames=128, width=128, height=96)


def build_manifest(root: Path, spec: SyntheticSpec) -> Path:
    """Generate ``spec`` under ``root`` and index it with per-frame motion, in this process
    (no Ray: probing 48 small files takes seconds). Reuses a manifest already there."""
    from pipelines.manifest import ProbeOptions, probe_row, write_manifest
    from pipelines.synthetic import generate

    manifest = root / "manifest.parquet"
    if manifest.exists():
        return manifest
    paths = generate(root / "videos", spec)
    classes = {name: i for i, name in enumerate(spec.classes)}
    rows = [probe_row(str(p), ProbeOptions(motion=True), p.parent.name, classes[p.parent.name])
            for p in paths]
    write_manifest(rows, manifest)
    return manifest


Pool = dict[str, torch.Tensor]
VIDEO_CLASS = "video_class"
CHUNK = 64  # samples decoded at a time, so a pool never holds its decode buffers all at once
SEEDS_PER_CHUNK = 64  # sample_items plans at most this many seeds for one call


def seed_span(n: int) -> int:
    """Planner seeds a pool of ``n`` samples may use: chunk i plans from ``seed + 64 * i``
    (and the next seeds while one epoch of the manifest does not give it ``CHUNK`` samples).
    Example: 1024 samples -> 16 chunks -> seeds seed .. seed + 1023."""
    return -(-n // CHUNK) * SEEDS_PER_CHUNK


def decode_pool(task: str, params: Mapping[str, Any], manifest: Path, n: int, seed: int,
                size: tuple[int, int]) -> tuple[Pool, int]:
    """``n`` samples of ``task`` planned from ``seed`` on, decoded and assembled once, in
    chunks of ``CHUNK`` (see :func:`seed_span`).

    Returns:
        The task's outputs stacked as tensors (B leading), and how many samples failed to
        decode (left out of the pool).
    """
    from pipelines.preview import sample_items

    parts: list[Pool] = []
    failed = 0
    for i, start in enumerate(range(0, n, CHUNK)):
        items = sample_items(task, manifest=manifest, n=min(CHUNK, n - start),
                             seed=seed + SEEDS_PER_CHUNK * i, params=params, size=size)
        good = [it for it in items if not it.error]
        failed += len(items) - len(good)
        if good:
            part = {k: torch.from_numpy(np.stack([it.arrays[k] for it in good])) for k in good[0].arrays}
            # The video's own class (its kind of motion), to break accuracy down by it; the
            # objectives read only the task's keys.
            part[VIDEO_CLASS] = torch.tensor([it.meta.label_id for it in good], dtype=torch.int64)
            parts.append(part)
    if not parts:
        raise RuntimeError(f"{task}: none of {n} samples decoded")
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}, failed


def batches(n: int, batch_size: int, steps: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """``steps`` index batches over a pool of ``n``: reshuffled passes, the last partial
    batch of a pass dropped (BatchNorm and in-batch negatives want full batches)."""
    size = min(batch_size, n)
    done = 0
    while True:
        order = torch.randperm(n, generator=gen)
        for start in range(0, n - size + 1, size):
            if done == steps:
                return
            yield order[start:start + size]
            done += 1


def take(pool: Pool, index: torch.Tensor) -> Pool:
    return {k: v[index] for k, v in pool.items()}


def train(model: torch.nn.Module, task: str, pool: Pool, cfg: LearnConfig,
          gen: torch.Generator) -> list[float]:
    """Train ``model`` on ``task`` for ``cfg.steps`` AdamW steps; the loss of every step."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    losses = []
    n = len(next(iter(pool.values())))
    for index in batches(n, cfg.batch_size, cfg.steps, gen):
        loss, _ = model(take(pool, index), task)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def logits_of(model: Any, task: str, batch: Pool) -> torch.Tensor:
    """The class scores a classification task's head gives ``batch`` (video-only heads, and
    the AV fusion head on the inputs' mean video and audio features)."""
    from models._objectives import AVClassify

    objective = model.objectives[task]
    video = model.encode_video(batch["video"])
    if isinstance(objective, AVClassify):
        audio = model.encode_audio(batch["audio"])
        return objective.head(video.mean(dim=1), audio.mean(dim=1))
    return objective.head(video)


def _fixed_batches(pool: Pool, batch_size: int, *, drop_last: bool) -> Iterator[Pool]:
    """The pool in order, in batches; ``drop_last`` leaves a partial tail out (a loss with
    in-batch negatives depends on the batch size)."""
    n = len(next(iter(pool.values())))
    size = min(batch_size, n)
    stop = n - size + 1 if drop_last else n
    for start in range(0, stop, size):
        yield take(pool, torch.arange(start, min(start + size, n)))


@torch.no_grad()
def evaluate_classifier(model: Any, task: str, pool: Pool, batch_size: int,
                        num_classes: int) -> dict[str, Any]:
    """Held-out cross-entropy, accuracy, balanced accuracy (mean per-class recall, whose
    chance is 1 / num_classes whatever the label shares) and the share of each predicted
    class (a model stuck on one class shows as one share near 1); in eval mode."""
    model.eval()
    logits, labels = [], []
    for batch in _fixed_batches(pool, batch_size, drop_last=False):
        logits.append(logits_of(model, task, batch))
        labels.append(batch["label"])
    scores, truth = torch.cat(logits), torch.cat(labels)
    pred = scores.argmax(dim=1)
    recalls = [(pred[truth == c] == c).float().mean() for c in truth.unique()]
    right = (pred == truth).float()
    kinds = pool[VIDEO_CLASS][: len(right)]
    return {
        "loss": float(torch.nn.functional.cross_entropy(scores, truth)),
        "accuracy": float(right.mean()),
        "balanced_accuracy": float(torch.stack(recalls).mean()),
        "predicted_shares": [round(float((pred == c).float().mean()), 3) for c in range(num_classes)],
        "accuracy_by_video_class": {int(k): round(float(right[kinds == k].mean()), 3)
                                    for k in kinds.unique()},
    }


@torch.no_grad()
def evaluate_loss(model: Any, task: str, pool: Pool, batch_size: int) -> dict[str, float]:
    """Held-out loss and the objective's own metrics (``top1``, ``acc``, ``epe``), averaged
    over fixed batches of ``batch_size`` (in-batch negatives: top1's chance is 1 / batch)."""
    model.eval()
    totals: dict[str, float] = {}
    count = 0
    for batch in _fixed_batches(pool, batch_size, drop_last=True):
        _, metrics = model(batch, task)
        count += 1
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + float(v)
    return {k: v / count for k, v in totals.items() if k != "n"}


def chance_of(task: Any, labels: torch.Tensor) -> dict[str, Any]:
    """What a model that ignores its input scores on ``task``: by design (1 / num_classes, or
    the majority share of an unbalanced design) and on this held-out pool (its majority
    share); ``chance`` is the larger."""
    shares = task.expected_label_distribution()
    design = max(shares.values())
    uniform = len(set(shares.values())) == 1
    counts = torch.bincount(labels, minlength=task.num_classes).float()
    pool = float(counts.max() / counts.sum())
    return {
        "chance": max(design, pool),
        "chance_design": design,
        "chance_kind": f"1/{task.num_classes}" if uniform else "majority share of the design",
        "pool_majority": pool,
    }


def binomial_tail(n: int, k: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): how likely a guesser at ``p`` gets ``k`` of ``n``."""
    return float(sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1)))


def task_seed(seed: int, task: str) -> int:
    """A per-task seed, so a task's result does not depend on which tasks ran before it."""
    return zlib.crc32(f"{seed}:{task}".encode())


def spatial_pool(model: Any) -> Any:
    """Diagnostic: give ``model``'s tiny3d backbone a pool that keeps a 2x2 spatial layout
    (average over time and over each quadrant, then a linear map back to ``out_dim``), in
    place of its global average pool.

    On the generated dataset the only thing that changes between the frames of a video is
    where its objects are; a global average pool keeps what the features are, not where, so
    tasks that compare separately encoded inputs (frame or clip order) have nothing to
    compare. Training this variant on the same pools shows whether that is what holds a task
    back. Must run before the optimizer is built (the new layer has parameters).
    """
    from torch import nn

    backbone = model.video_backbone
    d = backbone.out_dim
    backbone.pool = nn.Sequential(nn.AdaptiveAvgPool3d((1, 2, 2)), nn.Flatten(), nn.Linear(4 * d, d))
    return model


VARIANTS = {"tiny3d": None, "tiny3d_spatial": spatial_pool}


def measure_model(task: Any, variant: str, pools: tuple[Pool, Pool], cfg: LearnConfig,
                  seed: int) -> dict[str, Any]:
    """Build ``task``'s model (``variant`` of the backbone), measure it on the held-out pool,
    train it on the training pool, measure again.

    Returns:
        The JSON-ready record of this model: train losses (first and last 10 steps), held-out
        metrics before and after, accuracy against chance for classification tasks, CPU s.
    """
    from models.pretext import build_pretext_model

    train_pool, eval_pool = pools
    cpu = time.process_time()
    torch.manual_seed(seed)  # the model's initialization
    gen = torch.Generator().manual_seed(seed)  # the batch order
    model = build_pretext_model([task], backbone="tiny3d")
    change = VARIANTS[variant]
    if change is not None:
        change(model)
    classify = task.num_classes >= 2

    def held_out() -> dict[str, Any]:
        if classify:
            return evaluate_classifier(model, task.name, eval_pool, cfg.batch_size, task.num_classes)
        return evaluate_loss(model, task.name, eval_pool, cfg.batch_size)

    before = held_out()
    losses = train(model, task.name, train_pool, cfg, gen)
    after = held_out()
    out: dict[str, Any] = {
        "model": variant, "steps": len(losses),
        "train_loss_first10": float(np.mean(losses[:10])),
        "train_loss_last10": float(np.mean(losses[-10:])),
        "before": before, "after": after,
    }
    if classify:
        labels = eval_pool["label"]
        out |= chance_of(task, labels)
        out["accuracy"] = after["accuracy"]
        out["margin"] = after["accuracy"] - out["chance"]
        n = len(labels)
        out["p_value"] = binomial_tail(n, round(after["accuracy"] * n), out["chance"])
    out["cpu_s"] = round(time.process_time() - cpu, 1)
    return out


def run_task(name: str, cfg: LearnConfig, manifest: Path, params: Mapping[str, Any] | None = None,
             variants: Sequence[str] = ("tiny3d",)) -> list[dict[str, Any]]:
    """Decode the pools of one task once, then train and measure each model ``variant`` on them.

    Args:
        name: the task.
        cfg: the measurement's settings.
        manifest: the dataset.
        params: task parameters (default ``TASK_PARAMS[name]``).
        variants: names from ``VARIANTS``.

    Returns:
        One JSON-ready record per variant: the task, its params, pool sizes, what
        :func:`measure_model` records, and the seconds the pools took to decode.
    """
    from pipelines.tasks import get_task

    params = dict(TASK_PARAMS.get(name, {}) if params is None else params)
    task = get_task(name, **params)
    start, cpu = time.perf_counter(), time.process_time()
    train_pool, train_failed = decode_pool(name, params, manifest, cfg.train_n, cfg.seed, cfg.size)
    eval_pool, eval_failed = decode_pool(name, params, manifest, cfg.eval_n, cfg.eval_seed, cfg.size)
    common = {
        "task": name, "kind": "classification" if task.num_classes >= 2 else "loss",
        "params": params, "train_n": len(train_pool["label"]), "eval_n": len(eval_pool["label"]),
        "decode_failed": train_failed + eval_failed,
        "decode_s": round(time.perf_counter() - start, 1),
        "decode_cpu_s": round(time.process_time() - cpu, 1),
    }
    seed = task_seed(cfg.seed, name)
    return [common | measure_model(task, v, (train_pool, eval_pool), cfg, seed) for v in variants]


def machine() -> str:
    """The CPU model, its core count, the load when the run started, and torch's threads."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{model}, {os.cpu_count()} cores (shared, load {load:.1f} at start), "
            f"torch {torch.__version__} on {torch.get_num_threads()} thread(s), no GPU")


def utc_date() -> str:
    """The date as ``date -u`` prints it."""
    try:
        return subprocess.run(["date", "-u"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime())


def _fmt_params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"


def _fmt_acc(r: Mapping[str, Any] | None) -> str:
    if r is None:
        return "-"
    return f"{r['accuracy']:.3f} ({r['after']['balanced_accuracy']:.3f}), p {r['p_value']:.0e}"


def _by_task(rows: Sequence[Mapping[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """task -> model variant -> record, for the records of ``kind``, in run order."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["kind"] == kind:
            out.setdefault(r["task"], {})[r["model"]] = r
    return out


def _settings(report: Mapping[str, Any]) -> list[str]:
    cfg = report["config"]
    return [
        (f"Date: {report['date']}. Machine: {report['machine']}. Runtime: "
        f"{report['runtime_s']:.0f} s wall, {report['cpu_s']:.0f} s CPU in all."),
        "",
        f"Command: `{report['command']}`",
        "",
        (f"Dataset: `pipelines.synthetic` with {_fmt_params(report['dataset'])}, decoded at "
        f"{cfg['size'][0]}x{cfg['size'][1]}. Per task, {cfg['train_n']} training samples "
        f"(planner seeds {cfg['seed']} on) and {cfg['eval_n']} held-out samples (seeds "
        f"{cfg['eval_seed']} on: the same videos, other frames, orders, strides and audio "
        f"windows), each decoded once by the pipeline's stages; {cfg['steps']} AdamW steps "
        f"(lr {cfg['lr']}, weight decay {cfg['weight_decay']}) at batch {cfg['batch_size']}; the "
        "task's model from `models.pretext` with the tiny3d video backbone and the tiny2d audio "
        "CNN."),
    ]


def markdown(report: Mapping[str, Any]) -> str:
    """The report as the benchmarks page's section: settings, then one table per kind."""
    lines = [SECTION, "", *_settings(report), ""]
    classified = _by_task(report["tasks"], "classification")
    if classified:
        lines += [
            ("Held-out accuracy (balanced accuracy, the mean per-class recall, in brackets) "
            "against chance: 1/K for a uniform design, the majority share for an unbalanced "
            "one, or the held-out pool's own majority share when that is larger (balanced "
            "accuracy's chance is 1/K). p: the probability that a guesser at chance scores at "
            "least that accuracy. `tiny3d + 2x2 pool` is a diagnostic, not a shipped model: the "
            "same model with the backbone's global average pool replaced by a pool that keeps a "
            "2x2 spatial layout (`spatial_pool`), trained on the same samples."),
            "",
            "| task | K | chance | tiny3d | tiny3d + 2x2 pool | steps | params |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, models in classified.items():
            r = next(iter(models.values()))
            k = len(r["after"]["predicted_shares"])
            lines.append(
                f"| {name} | {k} | {r['chance']:.3f} ({r['chance_kind']}) | "
                f"{_fmt_acc(models.get('tiny3d'))} | {_fmt_acc(models.get('tiny3d_spatial'))} | "
                f"{r['steps']} | {_fmt_params(r['params'])} |")
    losses = _by_task(report["tasks"], "loss")
    if losses:
        lines += [
            "",
            ("Tasks without classes (tiny3d): held-out loss before and after training, the "
            "training loss over the first and the last 10 steps, and the objective's own "
            "held-out metric after training (top1: in-batch retrieval, chance 1/batch; acc: "
            "the share of triplets ranked right, chance 0.5; epe: motion end-point error)."),
            "",
            ("| task | held-out loss, start -> end | train loss, first -> last 10 steps "
            "| metric after | steps | params |"),
            "|---|---|---|---|---|---|",
        ]
        for name, models in losses.items():
            r = models.get("tiny3d") or next(iter(models.values()))
            extra = {k: v for k, v in r["after"].items() if k != "loss"}
            metric = ", ".join(f"{k} {v:.3f}" for k, v in extra.items()) or "-"
            lines.append(
                f"| {name} | {r['before']['loss']:.3f} -> {r['after']['loss']:.3f} | "
                f"{r['train_loss_first10']:.3f} -> {r['train_loss_last10']:.3f} | {metric} | "
                f"{r['steps']} | {_fmt_params(r['params'])} |")
    return "\n".join(lines) + "\n"


def write_section(path: Path, text: str) -> None:
    """Put ``text`` (starting with ``SECTION``) into the markdown file at ``path`` in place of
    the section already there, or at the end; the file's other sections stay as they are."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + len(SECTION))
        rest = "" if end < 0 else old[end:]
        new = old[:start] + text.rstrip("\n") + "\n" + rest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


def run(tasks: Sequence[str], cfg: LearnConfig, data: Path, command: str, *,
        params: Mapping[str, Mapping[str, Any]] | None = None,
        variants: Sequence[str] = ("tiny3d",), log: Any = sys.stderr,
        save: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Measure ``tasks`` in order on the dataset under ``data``; the JSON-ready report.

    ``variants`` apply to the classification tasks; the others train the shipped model only.
    ``save`` gets the report so far after every task (a long run keeps what it measured).
    """
    torch.set_num_threads(cfg.threads)
    spec = dataset_spec()
    start, cpu = time.perf_counter(), time.process_time()
    report: dict[str, Any] = {"date": utc_date(), "machine": machine(), "command": command,
                              "dataset": {**asdict(spec), "generator_version": GENERATOR_VERSION},
                              "config": asdict(cfg), "tasks": []}
    manifest = build_manifest(data, spec)
    for name in tasks:
        merged = {**TASK_PARAMS.get(name, {}), **dict((params or {}).get(name, {}))}
        classify = _num_classes(name, merged) >= 2
        for record in run_task(name, cfg, manifest, merged, variants if classify else ("tiny3d",)):
            by_class = record["after"].get("accuracy_by_video_class")
            if by_class:
                record["after"]["accuracy_by_video_class"] = {
                    spec.classes[k]: v for k, v in by_class.items()}
            report["tasks"].append(record)
            print(_summary(record), file=log, flush=True)
        if save is not None:
            save(report)
    report["runtime_s"] = round(time.perf_counter() - start, 1)
    report["cpu_s"] = round(time.process_time() - cpu, 1)
    return report


def _num_classes(name: str, params: Mapping[str, Any]) -> int:
    from pipelines.tasks import get_task

    return int(get_task(name, **params).num_classes)


def _summary(r: Mapping[str, Any]) -> str:
    head = f"{r['task']:>16} {r['model']:>14}: "
    if r["kind"] == "classification":
        body = (f"acc {r['accuracy']:.3f} vs chance {r['chance']:.3f} "
                f"(balanced {r['after']['balanced_accuracy']:.3f}, p {r['p_value']:.1e}, "
                f"predicted {r['after']['predicted_shares']}, "
                f"by video class {r['after']['accuracy_by_video_class']})")
    else:
        body = f"held-out loss {r['before']['loss']:.3f} -> {r['after']['loss']:.3f}"
    return head + body + f"  [decode {r['decode_s']} s, cpu {r['decode_cpu_s'] + r['cpu_s']:.0f} s]"


def parse_params(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["vcop.clip_len=16"]`` -> ``{"vcop": {"clip_len": 16}}`` (values in YAML)."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        task, dot, name = key.partition(".")
        if not sep or not dot or not task or not name:
            raise ValueError(f"--param ({item!r}) must be TASK.KEY=VALUE")
        out.setdefault(task.strip(), {})[name.strip()] = yaml.safe_load(value)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from pipelines.synthetic import cache_dir
    from pipelines.tasks import task_names

    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m pipelines.learnability", description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=[*CLASSIFICATION, *LOSS_ONLY], choices=task_names())
    p.add_argument("--steps", type=int, default=LearnConfig.steps)
    p.add_argument("--batch-size", type=int, default=LearnConfig.batch_size)
    p.add_argument("--lr", type=float, default=LearnConfig.lr)
    p.add_argument("--train-n", type=int, default=LearnConfig.train_n)
    p.add_argument("--eval-n", type=int, default=LearnConfig.eval_n)
    p.add_argument("--size", type=int, nargs=2, default=LearnConfig.size, metavar=("H", "W"))
    p.add_argument("--seed", type=int, default=LearnConfig.seed)
    p.add_argument("--threads", type=int, default=LearnConfig.threads)
    p.add_argument("--models", nargs="+", default=["tiny3d"], choices=list(VARIANTS),
                   help="models trained on each classification task's samples: the shipped "
                        "tiny3d, and tiny3d_spatial, a diagnostic (see spatial_pool)")
    p.add_argument("--param", action="append", default=[], metavar="TASK.KEY=VALUE",
                   help="override a task parameter (repeatable): --param vcop.clip_len=16")
    p.add_argument("--data", type=Path, default=None,
                   help="where the dataset is generated (default: the clipstream cache)")
    p.add_argument("--out", type=Path, default=Path("learnability.json"), help="results JSON")
    p.add_argument("--markdown", type=Path, default=None,
                   help="also write the section of this markdown file (docs/benchmarks.md)")
    args = p.parse_args(argv)
    cfg = LearnConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                      train_n=args.train_n, eval_n=args.eval_n, size=tuple(args.size),
                      seed=args.seed, threads=args.threads)
    data = args.data or cache_dir() / "learnability" / dataset_spec().key()
    command = "uv run python -m pipelines.learnability " + " ".join(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(report: dict[str, Any]) -> None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")

    report = run(args.tasks, cfg, data, command.strip(), params=parse_params(args.param),
                 variants=args.models, save=save)
    save(report)
    if args.markdown:
        write_section(args.markdown, markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
