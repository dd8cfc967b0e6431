"""The driver of a pretraining run: plan, build the stream, train on Ray, write results.

Resuming (``clipstream pretrain --resume RUN_DIR``): the latest checkpoint's ``state.json``
names the samples delivered so far and the plan they belong to (the original run's seed,
epochs/steps, batch size and rank count, and a digest of its sample ids). The resumed run
re-plans with those, so the plan is the same whatever this run's rank count, drops the
delivered ids keeping the planned order, and pads the rest to its own rank count with the
plan's next samples. Example: 96 planned on 2 ranks, 40 delivered, resumed on 3 ranks ->
the 56 others in planned order plus 1 sample from past the plan's end (57 = 3 x 19); the
run's ``samples`` block then expects 97 and counts 40 + 57 delivered.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipelines.accounting import expand_ranges, id_ranges
from pipelines.config import RunConfig
from pipelines.planner import Planner, Visit
from pipelines.tasks import Task
from workers.meta import VideoMeta

# Object-store room for the ingest stream: this many batches per rank of assembled rows,
# at least MIN_INGEST_BYTES. Past it Ray Data stops launching decode tasks until the
# trainers catch up (backpressure) instead of filling, then spilling, the object store.
INGEST_BATCHES = 16
MIN_INGEST_BYTES = 256 << 20


def frames_per_sample(visit: Visit) -> int:
    return sum(len(r.frames) for p in visit.plans for r in p.clips)


def plan_run(run: RunConfig, planner: Planner, *,
             delivered: AbstractSet[int] = frozenset()) -> tuple[list[Visit], dict]:
    """Every visit the run will deliver, in planned order, minus those already delivered.

    With ``steps``, the run plans exactly ``steps * batch_size * workers`` visits (epochs are
    planned until there are enough), so "expected" is what the trainers will consume.
    """
    t = run.train
    visits: list[Visit] = []
    info: dict[str, Any] = {"skipped_short": 0, "padded": 0, "epochs": 0}
    want = t.steps * t.batch_size * t.workers if t.steps else None
    epoch = 0
    while (want is None and epoch < t.epochs) or (want is not None and len(visits) < want):
        ep = planner.plan_epoch(epoch)
        visits.extend(ep.visits)
        info["skipped_short"] += len(ep.skipped_short)
        info["padded"] += ep.padded
        epoch += 1
    info["epochs"] = epoch
    if want is not None:
        visits = visits[:want]
    info["planned"] = len(visits)
    visits = [v for v in visits if v.sample_id not in delivered]
    return visits, info


@dataclass(frozen=True)
class ResumeState:
    """What a run folder's latest checkpoint says about the data."""

    checkpoint_dir: Path
    step: int
    delivered: frozenset[int]
    failed: list[dict[str, Any]]
    plan: dict[str, Any]


def read_resume(run_dir: Path) -> ResumeState:
    """The latest checkpoint of ``run_dir`` (by name: Ray Train names them by time).

    Raises:
        ValueError: the folder has no checkpoint, or one without a data position.
    """
    ckpts = sorted(p.parent for p in (run_dir / "train").glob("checkpoint_*/state.json"))
    if not ckpts:
        raise ValueError(f"{run_dir} has no checkpoint to resume from (train/checkpoint_*/state.json)")
    state = json.loads((ckpts[-1] / "state.json").read_text())
    if "plan" not in state or not state["plan"]:
        raise ValueError(f"{ckpts[-1]}/state.json has no plan: written by an older clipstream")
    return ResumeState(ckpts[-1], int(state["step"]), frozenset(expand_ranges(state["delivered"])),
                       list(state.get("failed", [])), dict(state["plan"]))


def plan_digest(visits: Sequence[Visit]) -> str:
    """A fingerprint of a plan: its samples in order, with what each reads and its label
    (a resumed run must re-plan exactly the same)."""
    h = hashlib.sha1()
    for v in visits:
        h.update(repr((v.sample_id, v.plans)).encode())
    return h.hexdigest()


def planning_config(run: RunConfig, plan: dict[str, Any]) -> RunConfig:
    """``run`` with the plan-deciding values of the run that wrote ``plan`` (a checkpoint's)."""
    train = dataclasses.replace(run.train, workers=plan["workers"], epochs=plan["epochs"],
                                steps=plan["steps"], batch_size=plan["batch_size"])
    return dataclasses.replace(run, train=train, data=dataclasses.replace(run.data, seed=plan["seed"]))


def _stream(planner: Planner) -> Iterator[Visit]:
    """Every visit of epoch 0, 1, 2, ... in planned order; a run's plan is a prefix of it."""
    epoch = 0
    while True:
        yield from planner.plan_epoch(epoch).visits
        epoch += 1


def _after(planner: Planner, start: int, n: int) -> list[Visit]:
    """Visits ``start .. start + n`` of the stream (re-planned: planning is pure)."""
    return list(itertools.islice(_stream(planner), start, start + n)) if n else []


@dataclass
class RunPlan:
    """What a run delivers and how it accounts for it.

    ``visits``: this run's samples in planned order; ``ids``: every sample id of the whole
    run (earlier runs of a resumed one included), for the ``samples`` block; ``state``: the
    plan as checkpoints record it; ``info``: counts for the log line and metrics.
    """

    visits: list[Visit]
    ids: list[int]
    state: dict[str, Any]
    info: dict[str, Any]
    tasks: list[Task]


def make_plan(run: RunConfig, metas: Sequence[VideoMeta], resume: ResumeState | None = None) -> RunPlan:
    """The run's plan: fresh, or the rest of a checkpoint's plan padded to this rank count.

    Padding a resumed run takes the samples that follow the plan's end (``continued``
    counts those taken by all resumes so far), so padding ids are fresh and never repeat.
    Raises:
        ValueError: the re-planned ids differ from the checkpoint's (manifest, tasks, size
            or seed changed), or nothing is left to deliver.
    """
    base = run if resume is None else planning_config(run, resume.plan)
    planner = Planner(metas, {n: run.data.task_params.get(n, {}) for n in run.data.tasks},
                      seed=base.data.seed, size=run.data.size, divisible_by=base.train.workers)
    planned, info = plan_run(base, planner)
    digest = plan_digest(planned)
    continued = 0
    if resume is not None:
        if digest != resume.plan["digest"]:
            raise ValueError(f"{resume.checkpoint_dir}: this config plans other samples than the "
                             f"checkpoint's run (manifest, tasks, size or seed changed)")
        continued = int(resume.plan.get("continued", 0))
    everything = planned + _after(planner, len(planned), continued)
    delivered = resume.delivered if resume is not None else frozenset()
    visits = [v for v in everything if v.sample_id not in delivered]
    if not visits:
        raise ValueError(f"{resume.checkpoint_dir if resume else 'the plan'}: every planned sample "
                         f"was delivered already; nothing to resume")
    extra = _after(planner, len(everything), -len(visits) % run.train.workers)
    visits += extra
    everything += extra
    info.update(resume_padded=len(extra), continued=continued + len(extra),
                delivered_before=len(delivered))
    state = {"seed": base.data.seed, "workers": base.train.workers, "epochs": base.train.epochs,
             "steps": base.train.steps, "batch_size": base.train.batch_size,
             "planned": len(planned), "digest": digest, "continued": continued + len(extra)}
    return RunPlan(visits, [v.sample_id for v in everything], state, info, planner.tasks)


def ingest_options(run: RunConfig, visit: Visit, *, batches: int = INGEST_BATCHES,
                   min_bytes: int = MIN_INGEST_BYTES) -> Any:
    """Ray Data options of the trainers' stream: Train's defaults with an object-store cap
    of ``batches`` batches per rank of assembled rows, at least ``min_bytes``.

    Example: 3 clips of 16 frames at 112x112 (1.8 MB a row), batch 8, 2 ranks -> 16 x 8 x 2
    rows = 462 MB; a tiny 32x32 run gets the 256 MiB floor.
    """
    import ray.train

    opts = ray.train.DataConfig.default_ingest_options()
    h, w = run.data.size
    row_bytes = frames_per_sample(visit) * h * w * 3
    cap = max(min_bytes, batches * run.train.batch_size * run.train.workers * row_bytes)
    opts.resource_limits = opts.resource_limits.copy(object_store_memory=cap)
    return opts


def check_uris(metas: Sequence[VideoMeta]) -> list[VideoMeta]:
    """Refuse a manifest whose uris escape with ``..`` or use a scheme that is not allowed,
    before any file is opened (``safe_uri`` without a root: absolute paths and URIs must not
    climb). Raises UnsafePathError naming the uri."""
    from pipelines.manifest import safe_uri

    for m in metas:
        safe_uri(m.uri)
    return list(metas)


def write_failures(out: Path, metrics: dict[str, Any], metas: Sequence[VideoMeta]) -> None:
    """Write ``quarantine.parquet`` (every failed sample of the run, empty when none) and
    raise :class:`~pipelines.quarantine.ErrorBudgetExceeded` if the run was aborted."""
    from pipelines.quarantine import (
        QUARANTINE_FILE,
        ErrorBudgetExceeded,
        quarantine_rows,
        write_quarantine,
    )

    path = out / QUARANTINE_FILE
    write_quarantine(quarantine_rows(metrics.get("failed", []), metas), path)
    if metrics.get("aborted"):
        raise ErrorBudgetExceeded(f"{metrics['aborted']}; quarantined samples: {path}")


def pretrain(run: RunConfig, *, resume: str | None = None,
             preempt_after_step: int | None = None) -> dict[str, Any]:
    """Run one pretraining job; writes ``metrics.json`` and ``quarantine.parquet`` into
    ``run.train.out``; returns the metrics.

    Args:
        run: the run's config.
        resume: a run folder to continue from its latest checkpoint.
        preempt_after_step: a drill: every rank raises right after this step (and its
            checkpoint, if one falls there), as if the node were lost.
    Raises:
        ErrorBudgetExceeded: more samples failed than ``data.max_errors`` (after writing
            metrics.json and quarantine.parquet, and a checkpoint to resume from).
    """
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    from pipelines.dataset import build_dataset, needed_stages
    from pipelines.manifest import read_manifest
    from pipelines.quarantine import error_budget, start_ledger, stop_ledger
    from pipelines.report import write_report
    from pipelines.runtime import init_ray
    from pipelines.telemetry import ENV_SINK, Monitor, sink_name, start_sink
    from pipelines.train import train_loop_per_worker

    out = Path(run.train.out).resolve()
    if resume is None and (out / "train").exists():
        # Ray Train would silently restore the old run's state from its folder.
        raise ValueError(f"{out} already holds a run; continue it with --resume {out} "
                         f"or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:12]
    # Every worker of the run learns where telemetry goes and installs the stall-aware
    # autoscaler (a Ray that is already running keeps its own settings: Ray Data's default).
    init_ray(run.address, num_cpus=run.num_cpus, quiet=False, runtime_env={
        "env_vars": {ENV_SINK: sink_name(run_id)},
        "worker_process_setup_hook": "pipelines.scaling.install",
    })
    sink = start_sink(run_id)
    run = dataclasses.replace(run, data=dataclasses.replace(run.data, telemetry=sink_name(run_id)))
    manifest = run.data.manifest
    if not manifest:
        from pipelines.synthetic import default_manifest

        manifest = str(default_manifest())
    metas = check_uris(read_manifest(manifest))
    state = None if resume is None else read_resume(Path(resume))
    plan = make_plan(run, metas, state)
    tasks, visits, info = plan.tasks, plan.visits, plan.info
    print(f"planned {info['planned']} samples over {info['epochs']} epoch(s) of {len(metas)} videos "
          f"({info['skipped_short']} too short, {info['padded']} padding); "
          f"{len(visits)} to deliver ({info['delivered_before']} delivered before, "
          f"{info['resume_padded']} to fill the ranks)", flush=True)
    ds = build_dataset(visits, run.data, tasks)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "run": run,
            "tasks": tasks,
            "weights": dict(run.data.tasks),
            "expected_ids": [v.sample_id for v in visits],
            "planned_ranges": id_ranges(plan.ids),
            "delivered_before": id_ranges(state.delivered) if state else [],
            "failed_before": state.failed if state else [],
            "plan_state": plan.state,
            "budget": error_budget(run.data),
            "resumed": state is not None,
            "preempt_after_step": preempt_after_step,
            # Model, optimizer and step come from the checkpoint whose data position was
            # read above (Ray Train V2 has no resume_from_checkpoint).
            "resume_checkpoint": str(state.checkpoint_dir) if state else None,
            "frames_per_sample": frames_per_sample(visits[0]) if visits else 0,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=run.train.workers, use_gpu=run.train.use_gpu,
            # Custom resources (e.g. {trainer: 1}) pin the ranks to the trainer nodes.
            resources_per_worker=({"CPU": 1, **({"GPU": 1} if run.train.use_gpu else {}),
                                   **run.train.resources} if run.train.resources else None)),
        run_config=ray.train.RunConfig(storage_path=str(out), name="train",
                                       checkpoint_config=ray.train.CheckpointConfig(num_to_keep=3)),
        datasets={"train": ds},
        dataset_config=ray.train.DataConfig(execution_options=ingest_options(run, visits[0])),
    )
    t0 = time.perf_counter()
    ledger = start_ledger()
    try:
        with Monitor(sink, [*needed_stages(tasks), "assemble"]) as monitor:
            result = trainer.fit()
        crashes = ray.get(ledger.summary.remote())
    finally:
        stop_ledger()
    metrics = dict(result.metrics or {})
    metrics["decode_crashes"] = crashes
    metrics["stages"] = monitor.per_stage()
    metrics["scaling"] = monitor.decisions
    metrics["label_checks"] = label_checks(tasks, metrics.get("label_histogram") or {})
    for check in metrics["label_checks"]:
        if check["flagged"]:
            print(f"labels {check['line']}", flush=True)
    metrics["timeline"] = monitor.timeline
    metrics["timeline_started"] = monitor.started
    metrics.update({
        "task": ",".join(run.data.tasks),
        "tasks": dict(run.data.tasks),
        "epochs": info["epochs"],
        "planned": info,
        "manifest": manifest,
        "config": asdict(run),
        "fit_wall_s": time.perf_counter() - t0,
        "resumed_from": resume,
    })
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))
    write_report(out, metrics)
    write_failures(out, metrics, metas)
    return metrics


def label_checks(tasks: list[Task], histograms: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """Each classification task's delivered labels against its design (see label_stats)."""
    from pipelines.label_stats import LabelHistogram

    hist = LabelHistogram.for_tasks([t for t in tasks if t.num_classes > 0])
    for task, counts in histograms.items():
        if task in hist.expected:
            hist.counts[task] = {int(k): int(v) for k, v in counts.items()}
    return [asdict(c) | {"line": c.line()} for c in hist.report()]


def summary_line(m: dict[str, Any]) -> str:
    s = m.get("samples", {})
    return (f"{m.get('task')}: {m.get('steps')} steps, {m.get('clips_per_s', 0):.1f} clips/s, "
            f"{m.get('frames_per_s', 0):.0f} frames/s, stall {100 * m.get('stall_fraction', 0):.1f}% "
            f"({100 * m.get('stall_fraction_steady', 0):.1f}% after the first step), "
            f"loss {m['loss'][0]:.3f} -> {m['loss'][-1]:.3f}; samples expected {s.get('expected')}, "
            f"delivered {s.get('delivered')}, duplicated {s.get('duplicated')}, missing {s.get('missing')}"
            if m.get("loss") else str(m))
