"""The driver of a pretraining run: plan, build the stream, train on Ray, write results."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipelines.accounting import expand_ranges
from pipelines.config import RunConfig
from pipelines.planner import Planner, Visit
from pipelines.tasks import Task


def frames_per_sample(visit: Visit) -> int:
    return sum(len(r.frames) for p in visit.plans for r in p.clips)


def plan_run(run: RunConfig, planner: Planner, *, delivered: set[int] = frozenset()) -> tuple[list[Visit], dict]:
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


def load_resume(run_dir: Path) -> tuple[Any, set[int]]:
    """The latest checkpoint of a run folder and the ids it had delivered."""
    import ray.train

    ckpts = sorted((run_dir / "train").glob("checkpoint_*"))
    if not ckpts:
        raise ValueError(f"{run_dir} has no checkpoint to resume from")
    state = json.loads((ckpts[-1] / "state.json").read_text())
    return ray.train.Checkpoint.from_directory(str(ckpts[-1])), set(expand_ranges(state["delivered"]))


def pretrain(run: RunConfig, *, resume: str | None = None) -> dict[str, Any]:
    """Run one pretraining job; writes ``metrics.json`` into ``run.train.out``; returns the metrics."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from pipelines.dataset import build_dataset
    from pipelines.manifest import read_manifest
    from pipelines.runtime import init_ray
    from pipelines.train import train_loop_per_worker

    out = Path(run.train.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    manifest = run.data.manifest
    if not manifest:
        from pipelines.synthetic import default_manifest

        init_ray(run.address, num_cpus=run.num_cpus, quiet=False)
        manifest = str(default_manifest())
    init_ray(run.address, num_cpus=run.num_cpus, quiet=False)
    metas = read_manifest(manifest)
    planner = Planner(metas, {n: run.data.task_params.get(n, {}) for n in run.data.tasks},
                      seed=run.data.seed, size=run.data.size, divisible_by=run.train.workers)
    tasks: list[Task] = planner.tasks
    checkpoint, delivered = (None, set()) if resume is None else load_resume(Path(resume))
    visits, info = plan_run(run, planner, delivered=delivered)
    print(f"planned {info['planned']} samples over {info['epochs']} epoch(s) of {len(metas)} videos "
          f"({info['skipped_short']} too short, {info['padded']} padding); "
          f"{len(visits)} to deliver", flush=True)
    ds = build_dataset(visits, run.data, tasks)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "run": run,
            "tasks": tasks,
            "weights": dict(run.data.tasks),
            "expected_ids": [v.sample_id for v in visits],
            "delivered_before": [] if not delivered else sorted(delivered),
            "frames_per_sample": frames_per_sample(visits[0]) if visits else 0,
        },
        scaling_config=ray.train.ScalingConfig(num_workers=run.train.workers, use_gpu=run.train.use_gpu),
        run_config=ray.train.RunConfig(storage_path=str(out), name="train",
                                       checkpoint_config=ray.train.CheckpointConfig(num_to_keep=3)),
        datasets={"train": ds},
        resume_from_checkpoint=checkpoint,
    )
    t0 = time.perf_counter()
    result = trainer.fit()
    metrics = dict(result.metrics or {})
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
    return metrics


def summary_line(m: dict[str, Any]) -> str:
    s = m.get("samples", {})
    return (f"{m.get('task')}: {m.get('steps')} steps, {m.get('clips_per_s', 0):.1f} clips/s, "
            f"{m.get('frames_per_s', 0):.0f} frames/s, stall {100 * m.get('stall_fraction', 0):.1f}%, "
            f"loss {m['loss'][0]:.3f} -> {m['loss'][-1]:.3f}; samples expected {s.get('expected')}, "
            f"delivered {s.get('delivered')}, duplicated {s.get('duplicated')}, missing {s.get('missing')}"
            if m.get("loss") else str(m))
