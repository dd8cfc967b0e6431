"""The Ray Train loop: each DDP rank streams its shard and measures how long it waits.

Per step a rank records the time it waited for the batch (``wait_s``: from the end of its
previous step to the batch in hand) and the time it computed (``compute_s``); the stall
fraction is total wait over total step time. Every sample id a rank consumes is recorded,
so the run can say exactly which samples it delivered.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pipelines.accounting import account, id_ranges
from pipelines.config import RunConfig
from pipelines.tasks import Task

CHECKPOINT_STATE = "state.json"
CHECKPOINT_MODEL = "model.pt"


def collate(batch: dict[str, np.ndarray]) -> dict[str, Any]:
    """numpy batch -> torch tensors; text columns (errors) stay Python lists."""
    return {
        k: list(v) if v.dtype == object else torch.from_numpy(np.ascontiguousarray(v))
        for k, v in batch.items()
    }


def split_tasks(batch: dict[str, Any], tasks: list[Task]) -> dict[str, dict[str, torch.Tensor]]:
    """``{"vcop.video": x, "ok": m}`` -> ``{"vcop": {"video": x, "ok": m}}``."""
    per: dict[str, dict[str, torch.Tensor]] = {t.name: {"ok": batch["ok"]} for t in tasks}
    for key, value in batch.items():
        task, _, name = key.partition(".")
        if name and task in per:
            per[task][name] = value
    return per


@dataclass
class RankLog:
    """What one rank saw: per-step timings and losses, ids, failures, labels."""

    wait_s: list[float] = field(default_factory=list)
    compute_s: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    repeats_dropped: int = 0
    labels: dict[str, Counter] = field(default_factory=dict)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def _save_checkpoint(model, optimizer, state: dict[str, Any]):
    import ray.train

    path = tempfile.mkdtemp(prefix="clipstream-ckpt-")
    torch.save({"model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict()},
               os.path.join(path, CHECKPOINT_MODEL))
    with open(os.path.join(path, CHECKPOINT_STATE), "w") as f:
        json.dump(state, f)
    return ray.train.Checkpoint.from_directory(path)


def _gather(obj: Any, world: int) -> list[Any]:
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker. ``config``: run (RunConfig), tasks, weights,
    expected_ids, delivered_before (id ranges of a resumed run), step0."""
    import ray.train
    import ray.train.torch

    from models import build_pretext_model

    run: RunConfig = config["run"]
    tasks: list[Task] = config["tasks"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()

    torch.manual_seed(run.data.seed)  # same initial weights on every rank
    model = ray.train.torch.prepare_model(build_pretext_model(tasks, backbone=run.train.backbone))
    optimizer = torch.optim.AdamW(model.parameters(), lr=run.train.lr,
                                  weight_decay=run.train.weight_decay)
    step = 0
    delivered_before = config.get("delivered_before", [])
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            blob = torch.load(os.path.join(d, CHECKPOINT_MODEL), weights_only=False)
            _unwrap(model).load_state_dict(blob["model"])
            optimizer.load_state_dict(blob["optimizer"])
            step = json.load(open(os.path.join(d, CHECKPOINT_STATE)))["step"]

    device = ray.train.torch.get_device()
    log = RankLog(labels={t.name: Counter() for t in tasks})
    seen: set[int] = set()
    shard = ray.train.get_dataset_shard("train")
    weights = config["weights"]
    t_start = t_ready = time.perf_counter()  # t_ready: when the rank could take the next batch
    last_print = t_start
    for batch in shard.iter_torch_batches(batch_size=run.train.batch_size, collate_fn=collate,
                                          prefetch_batches=2, device="cpu"):
        t_got = time.perf_counter()
        ids = batch["sample_id"].tolist()
        ok = batch["ok"].clone()
        for j, sid in enumerate(ids):  # a retried block may bring an id twice: train on it once
            if sid in seen:
                ok[j] = False
                log.repeats_dropped += 1
            else:
                seen.add(sid)
                log.ids.append(sid)
        batch["ok"] = ok
        for j, err in enumerate(batch["error"]):
            if err:
                log.failed.append({"sample_id": ids[j], "video_id": int(batch["video_id"][j]),
                                   "kind": batch["error_kind"][j], "error": err})
        per_task = split_tasks(batch, tasks)
        for t in tasks:
            if "label" in per_task[t.name]:
                labels = per_task[t.name]["label"][ok]
                log.labels[t.name].update(int(v) for v in labels.tolist() if v >= 0)
        per_task = {t: {k: v.to(device) for k, v in b.items()} for t, b in per_task.items()}
        loss, _ = _unwrap(model).multi_task_loss(per_task, weights, forward=model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        t_done = time.perf_counter()
        log.wait_s.append(t_got - t_ready)
        log.compute_s.append(t_done - t_got)
        t_ready = t_done
        log.rows.append(len(ids))
        log.loss.append(float(loss.detach()))
        if rank == 0 and (t_done - last_print > 2.0 or step == 1):
            last_print = t_done
            wall = t_done - t_start
            stall = sum(log.wait_s) / max(wall, 1e-9)
            print(f"step {step:5d} | loss {log.loss[-1]:.3f} | "
                  f"{world * sum(log.rows) / wall:6.1f} clips/s | stall {100 * stall:4.1f}%",
                  flush=True)
        if run.train.checkpoint_every and step % run.train.checkpoint_every == 0:
            _report(log, model, optimizer, step, config, rank, world, final=False,
                    delivered_before=delivered_before)
        if run.train.steps and step >= run.train.steps:
            break
    _report(log, model, optimizer, step, config, rank, world, final=True,
            delivered_before=delivered_before, wall_s=time.perf_counter() - t_start)


def _report(log: RankLog, model, optimizer, step: int, config: dict[str, Any], rank: int,
            world: int, *, final: bool, delivered_before: list, wall_s: float = 0.0) -> None:
    """A barrier on every rank: gathers the ranks' logs; rank 0 reports metrics + checkpoint."""
    import ray.train

    logs: list[RankLog] = _gather(log, world)
    delivered = [r.ids for r in logs]
    ids_so_far = [i for r in logs for i in r.ids]
    position = id_ranges([*ids_so_far, *(i for lo, hi in delivered_before for i in range(lo, hi + 1))])
    if rank != 0:
        ray.train.report({}, checkpoint=None)
        return
    state = {"step": step, "seed": config["run"].data.seed, "delivered": position}
    metrics: dict[str, Any] = {"step": step, "final": final}
    if final:
        metrics.update(summarize(logs, config, wall_s))
    ray.train.report(metrics, checkpoint=_save_checkpoint(model, optimizer, state))


def summarize(logs: list[RankLog], config: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """The run's metrics from every rank's log (rank 0, at the end)."""
    steps = max(len(r.loss) for r in logs)
    wait = sum(sum(r.wait_s) for r in logs)
    busy = sum(sum(r.wait_s) + sum(r.compute_s) for r in logs)
    rows = sum(sum(r.rows) for r in logs)
    frames_per_clip = config["frames_per_sample"]
    loss = [float(np.mean([r.loss[i] for r in logs if i < len(r.loss)])) for i in range(steps)]
    labels: dict[str, Counter] = {}
    for r in logs:
        for task, c in r.labels.items():
            labels.setdefault(task, Counter()).update(c)
    return {
        "steps": steps,
        "loss": loss,
        "wall_s": wall_s,
        "clips_per_s": rows / max(wall_s, 1e-9),
        "frames_per_s": rows * frames_per_clip / max(wall_s, 1e-9),
        "stall_fraction": wait / max(busy, 1e-9),
        "stall_per_rank": [sum(r.wait_s) / max(sum(r.wait_s) + sum(r.compute_s), 1e-9) for r in logs],
        "step_wait_s": [float(np.mean([r.wait_s[i] for r in logs if i < len(r.wait_s)])) for i in range(steps)],
        "step_compute_s": [float(np.mean([r.compute_s[i] for r in logs if i < len(r.compute_s)])) for i in range(steps)],
        "label_histogram": {t: {str(k): v for k, v in sorted(c.items())} for t, c in labels.items()},
        "samples": account(config["expected_ids"], [r.ids for r in logs],
                           failed=[f["sample_id"] for r in logs for f in r.failed]),
        "repeats_dropped": sum(r.repeats_dropped for r in logs),
        "failed": [f for r in logs for f in r.failed],
    }
