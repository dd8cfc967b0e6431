"""The Ray Train loop: each DDP rank streams its shard and measures how long it waits.

Per step a rank records the time it waited for the batch (``wait_s``: from the end of its
previous step to the batch in hand) and the time it computed (``compute_s``); the stall
fraction is total wait over total step time. Every sample id a rank consumes is recorded,
so the run can say exactly which samples it delivered.

Failures and resumes:

- a row whose decode failed trains as a masked zero row and is recorded once (a repeat of
  an id already seen on this rank is masked and counted in ``repeats_dropped`` instead);
- after every step the ranks sum their new failures (one all-reduce of one number), so
  all of them see the same total and stop at the same step once it passes the error
  budget (``pipelines.quarantine``); the final report then carries ``aborted``;
- a checkpoint's ``state.json`` holds the data position (``delivered``: id ranges of every
  sample the ranks consumed up to it, earlier runs included), the failures so far and
  the plan it belongs to, so a resumed run delivers exactly the rest and its metrics
  account for the whole run. Example: checkpoint at step 3 of 2 ranks x 8 -> 48 ids in
  ``delivered``; the resumed run gets the other planned ids, and its ``samples`` block
  counts expected = all planned, delivered = 48 before + the rest now.
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

from pipelines.accounting import account, expand_ranges, id_ranges
from pipelines.config import RunConfig
from pipelines.tasks import Task
from pipelines.telemetry import Reporter

CHECKPOINT_STATE = "state.json"
CHECKPOINT_MODEL = "model.pt"


class Preempted(RuntimeError):
    """Raised on every rank by the ``preempt_after_step`` drill, as a lost node would end it."""


def collate(batch: dict[str, np.ndarray]) -> dict[str, Any]:
    """numpy batch -> torch tensors; text columns (errors) stay Python lists.

    Arrays that Arrow hands out read-only are copied: torch tensors must own writable memory.
    """
    out: dict[str, Any] = {}
    for k, v in batch.items():
        if v.dtype == object:
            out[k] = list(v)
        else:
            out[k] = torch.from_numpy(v if v.flags.writeable and v.flags.c_contiguous else np.array(v))
    return out


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
    task_loss: dict[str, list[float]] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    repeats_dropped: int = 0
    labels: dict[str, Counter] = field(default_factory=dict)


def _unwrap(model: torch.nn.Module) -> Any:
    """The model inside DDP's wrapper (its own methods, e.g. multi_task_loss)."""
    return model.module if hasattr(model, "module") else model


def _save_checkpoint(model, optimizer, state: dict[str, Any]):
    import ray.train

    path = tempfile.mkdtemp(prefix="clipstream-ckpt-")
    torch.save({"model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict()},
               os.path.join(path, CHECKPOINT_MODEL))
    with open(os.path.join(path, CHECKPOINT_STATE), "w") as f:
        json.dump(state, f)
    return ray.train.Checkpoint.from_directory(path)


def _restore(path: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Load model and optimizer from a checkpoint folder; returns its step."""
    blob = torch.load(os.path.join(path, CHECKPOINT_MODEL), weights_only=False)
    _unwrap(model).load_state_dict(blob["model"])
    optimizer.load_state_dict(blob["optimizer"])
    with open(os.path.join(path, CHECKPOINT_STATE)) as f:
        return int(json.load(f)["step"])


def _gather(obj: Any, world: int) -> list[Any]:
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


def _take_rows(batch: dict[str, Any], seen: set[int], log: RankLog) -> int:
    """Record a batch's ids and failures; mask ids this rank has had already.

    Returns the number of new failed samples. Example: ids [4, 5, 4'] where 4' is a repeat
    from a retried block and 5 failed -> ok [True, False, False], log.ids += [4, 5],
    repeats_dropped += 1, one failure recorded, returns 1.
    """
    ids = batch["sample_id"].tolist()
    ok = batch["ok"].clone()
    failed = 0
    for j, sid in enumerate(ids):  # a retried block may bring an id twice: train on it once
        if sid in seen:
            ok[j] = False
            log.repeats_dropped += 1
            continue
        seen.add(sid)
        log.ids.append(sid)
        if batch["error"][j]:
            log.failed.append({"sample_id": sid, "video_id": int(batch["video_id"][j]),
                               "kind": batch["error_kind"][j], "error": batch["error"][j]})
            failed += 1
    batch["ok"] = ok
    return failed


def decode_colocated(decoder: Any, batch: dict[str, Any], tasks: list[Task]) -> None:
    """Colocated placement: decode the batch's clips from the compressed bytes it carries, on
    this rank's device, into each task's ``video``; rows whose file failed become masked.
    The time counts as the rank's compute, not as waiting for data: the rank is busy."""
    dec = decoder.decode_batch(batch)
    for t in tasks:
        batch[f"{t.name}.video"] = dec.video(t.name)
    batch["ok"] = batch["ok"] & torch.from_numpy(dec.ok())
    batch["error"], batch["error_kind"] = dec.errors, dec.kinds


def _sum_over_ranks(n: int, world: int, device: torch.device) -> int:
    if world == 1:
        return n
    t = torch.tensor([n], dtype=torch.int64, device=device)
    torch.distributed.all_reduce(t)
    return int(t.item())


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker. ``config``: run (RunConfig), tasks, weights,
    expected_ids (this run's), planned_ranges (the whole run's, resumes included),
    delivered_before (id ranges of a resumed run), failed_before, plan_state, budget,
    resumed, preempt_after_step (a drill: raise after that step's checkpoint)."""
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
    # Only the checkpoint the driver resumed from (whose data position it planned with) is
    # restored. Ray Train V2 would also hand back the latest checkpoint of a run folder that
    # held a run before (ray.train.get_checkpoint()); a run started without --resume into
    # such a folder starts fresh instead of training on with a model the plan knows nothing of.
    if config.get("resume_checkpoint"):
        step = _restore(config["resume_checkpoint"], model, optimizer)

    device = ray.train.torch.get_device()
    decoder = None
    if run.data.placement == "colocated":  # this rank decodes its own clips, on its device
        from workers.dali_stage import ColocatedDecoder

        decoder = ColocatedDecoder(run.data)
    log = RankLog(labels={t.name: Counter() for t in tasks})
    reporter = Reporter("rank", str(rank), sink=run.data.telemetry)
    seen: set[int] = set()
    shard = ray.train.get_dataset_shard("train")
    weights = config["weights"]
    failed_total = len(config.get("failed_before", []))
    aborted = False
    t_start = t_ready = time.perf_counter()  # t_ready: when the rank could take the next batch
    last_print = t_start
    for batch in shard.iter_torch_batches(batch_size=run.train.batch_size, collate_fn=collate,
                                          prefetch_batches=2, device="cpu"):
        t_got = time.perf_counter()
        if decoder is not None:
            decode_colocated(decoder, batch, tasks)
        ids = batch["sample_id"].tolist()
        new_failed = _take_rows(batch, seen, log)
        ok = batch["ok"]
        per_task = split_tasks(batch, tasks)
        for t in tasks:
            if "label" in per_task[t.name]:
                labels = per_task[t.name]["label"][ok]
                log.labels[t.name].update(int(v) for v in labels.tolist() if v >= 0)
        per_task = {t: {k: v.to(device) for k, v in b.items()} for t, b in per_task.items()}
        loss, step_metrics = _unwrap(model).multi_task_loss(per_task, weights, forward=model)
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
        for t in tasks:
            if f"{t.name}/loss" in step_metrics:
                log.task_loss.setdefault(t.name, []).append(float(step_metrics[f"{t.name}/loss"]))
        reporter.add(rows=len(ids), wait_s=log.wait_s[-1], compute_s=log.compute_s[-1], steps=1)
        if rank == 0 and (t_done - last_print > 2.0 or step == 1):
            last_print = t_done
            wall = t_done - t_start
            stall = sum(log.wait_s) / max(wall, 1e-9)
            print(f"step {step:5d} | loss {log.loss[-1]:.3f} | "
                  f"{world * sum(log.rows) / wall:6.1f} clips/s | stall {100 * stall:4.1f}%",
                  flush=True)
            reporter.gauge("stall_fraction", stall)
            reporter.gauge("clips_per_s", sum(log.rows) / wall)
        failed_total += _sum_over_ranks(new_failed, world, device)
        if failed_total > _budget(config):
            aborted = True
            break
        if run.train.checkpoint_every and step % run.train.checkpoint_every == 0:
            _report(log, model, optimizer, step, config, rank, world, final=False,
                    delivered_before=delivered_before)
        if config.get("preempt_after_step") == step:
            raise Preempted(f"rank {rank}: preempted after step {step} (drill)")
        # A resumed run ends with its data: its plan is fixed, the step count is not.
        if run.train.steps and step >= run.train.steps and not config.get("resumed"):
            break
    reporter.flush()
    _report(log, model, optimizer, step, config, rank, world, final=True,
            delivered_before=delivered_before, wall_s=time.perf_counter() - t_start, aborted=aborted)


def _report(log: RankLog, model, optimizer, step: int, config: dict[str, Any], rank: int,
            world: int, *, final: bool, delivered_before: list, wall_s: float = 0.0,
            aborted: bool = False) -> None:
    """A barrier on every rank: gathers the ranks' logs; rank 0 reports metrics + checkpoint."""
    import ray.train

    logs: list[RankLog] = _gather(log, world)
    ids_so_far = [i for r in logs for i in r.ids]
    position = id_ranges([*ids_so_far, *(i for lo, hi in delivered_before for i in range(lo, hi + 1))])
    if rank != 0:
        ray.train.report({}, checkpoint=None)
        return
    failed = [*config.get("failed_before", []), *(f for r in logs for f in r.failed)]
    state = {"step": step, "seed": config["run"].data.seed, "delivered": position,
             "failed": failed, "plan": config.get("plan_state", {})}
    metrics: dict[str, Any] = {"step": step, "final": final}
    if final:
        metrics.update(summarize(logs, config, wall_s))
        metrics["aborted"] = _abort_message(failed, config) if aborted else None
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
        # Without each rank's first step, which also waits for the pipeline to start.
        "stall_fraction_steady": sum(sum(r.wait_s[1:]) for r in logs)
        / max(sum(sum(r.wait_s[1:]) + sum(r.compute_s[1:]) for r in logs), 1e-9),
        "task_loss": {t: [float(np.mean([r.task_loss[t][i] for r in logs if t in r.task_loss
                                         and i < len(r.task_loss[t])])) for i in range(steps)]
                      for t in logs[0].task_loss},
        "stall_per_rank": [sum(r.wait_s) / max(sum(r.wait_s) + sum(r.compute_s), 1e-9) for r in logs],
        "step_wait_s": [float(np.mean([r.wait_s[i] for r in logs if i < len(r.wait_s)])) for i in range(steps)],
        "step_compute_s": [float(np.mean([r.compute_s[i] for r in logs if i < len(r.compute_s)])) for i in range(steps)],
        "label_histogram": {t: {str(k): v for k, v in sorted(c.items())} for t, c in labels.items()},
        "samples": samples(logs, config),
        "repeats_dropped": sum(r.repeats_dropped for r in logs),
        "failed": [*config.get("failed_before", []), *(f for r in logs for f in r.failed)],
    }


def samples(logs: list[RankLog], config: dict[str, Any]) -> dict[str, Any]:
    """The ``samples`` block over the whole run: a resumed run counts what its checkpoint had
    delivered too (``delivered_before``), against every planned id (``planned_ranges``).

    Example: 96 planned, 48 delivered before the checkpoint, 48 now on 3 ranks ->
    expected 96, delivered 96, per_rank [16, 16, 16], delivered_before 48.
    """
    before = expand_ranges(config.get("delivered_before", []))
    planned = expand_ranges(config["planned_ranges"]) if "planned_ranges" in config else config["expected_ids"]
    failed = [f["sample_id"] for f in config.get("failed_before", [])]
    failed += [f["sample_id"] for r in logs for f in r.failed]
    out = account(planned, [*(r.ids for r in logs), before], failed=failed)
    out["per_rank"] = out["per_rank"][:len(logs)]
    out["delivered_before"] = len(before)
    return out


def _abort_message(failed: list[dict[str, Any]], config: dict[str, Any]) -> str:
    from pipelines.quarantine import budget_message

    first = str(failed[0]["error"]) if failed else ""
    return budget_message(len(failed), _budget(config), first) or ""


def _budget(config: dict[str, Any]) -> int:
    return int(config.get("budget", config["run"].data.max_errors))
