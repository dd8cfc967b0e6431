"""Mid-epoch resume: the rest of the plan, in planned order, on any number of ranks.

The planning half is pure and runs without Ray: a checkpoint's delivered ids at the start,
in the middle and before the last batch, resumed on 1, 2 or 3 ranks. The Ray half chains
real runs through the three break points, changing the rank count at each resume, and
checks the union of what every run delivered against the plan.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from pipelines.config import RunConfig, load_config
from pipelines.pretrain import ResumeState, make_plan, read_resume
from pipelines.synthetic import SyntheticSpec, generate
from workers.meta import VideoMeta

BATCH = 4


def metas(n: int) -> list[VideoMeta]:
    return [VideoMeta(video_id=1000 + i, uri=f"/d/v{i}.mp4", num_frames=48, avg_fps=25.0)
            for i in range(n)]


def config(*extra: str) -> RunConfig:
    return load_config(overrides=[
        "train.workers=2", f"train.batch_size={BATCH}", "train.epochs=2", "size=32x32",
        "task_params={vcop: {clip_len: 6, interval: 3}}", *extra,
    ])


def with_workers(run: RunConfig, workers: int) -> RunConfig:
    return dataclasses.replace(run, train=dataclasses.replace(run.train, workers=workers))


def checkpoint(plan_state: dict, delivered: set[int], step: int = 1) -> ResumeState:
    return ResumeState(Path("ckpt"), step, frozenset(delivered), [], plan_state)


# -------------------------------------------------------------------------------- pure


@pytest.mark.parametrize("where", ["start", "middle", "last_batch"])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_resume_delivers_the_rest_in_planned_order_on_any_rank_count(where: str, workers: int) -> None:
    run, ms = config(), metas(11)  # 11 videos, 2 ranks: each epoch padded to 12
    first = make_plan(run, ms)
    ids = first.ids
    assert len(ids) == 24 and len(set(ids)) == 24
    # What the ranks had consumed at the checkpoint: whole batches per rank, taken from the
    # front of the stream but not as a prefix (ranks pull blocks in any order).
    cut = {"start": 2 * BATCH, "middle": len(ids) // 2, "last_batch": len(ids) - 2 * BATCH}[where]
    rng = np.random.default_rng(cut)
    delivered = set(rng.choice(ids[: cut + BATCH], size=cut, replace=False).tolist())
    resumed = make_plan(with_workers(run, workers), ms, checkpoint(first.state, delivered))

    remaining = [i for i in ids if i not in delivered]
    got = [v.sample_id for v in resumed.visits]
    assert got[: len(remaining)] == remaining  # the same remaining order
    padding = got[len(remaining):]
    assert len(got) % workers == 0 and len(padding) < workers
    assert not set(padding) & set(ids)  # padding is fresh samples, never a repeat
    assert set(resumed.ids) == set(ids) | set(padding)
    assert resumed.info["delivered_before"] == cut and resumed.info["resume_padded"] == len(padding)


def test_padding_is_the_plans_next_samples_and_chained_resumes_keep_them() -> None:
    run, ms = config(), metas(11)
    first = make_plan(run, ms)
    longer = make_plan(dataclasses.replace(run, train=dataclasses.replace(run.train, epochs=3)), ms)
    # 24 planned, 5 delivered, 3 ranks -> 19 left + 2 from epoch 2 (the plan's continuation).
    delivered = set(first.ids[:5])
    second = make_plan(with_workers(run, 3), ms, checkpoint(first.state, delivered))
    assert [v.sample_id for v in second.visits][-2:] == longer.ids[24:26]
    assert second.state["continued"] == 2
    # Resumed again on 2 ranks: the earlier padding is part of the plan now, and new
    # padding continues after it.
    delivered |= {v.sample_id for v in second.visits[:10]}
    third = make_plan(run, ms, checkpoint(second.state, delivered))
    rest = [i for i in longer.ids[:26] if i not in delivered]
    got = [v.sample_id for v in third.visits]
    assert got[: len(rest)] == rest and len(got) % 2 == 0
    assert got[len(rest):] == longer.ids[26 : 26 + len(got) - len(rest)]


def test_resume_refuses_a_config_that_plans_other_samples() -> None:
    run, ms = config(), metas(11)
    first = make_plan(run, ms)
    other_tasks = config("task_params={vcop: {clip_len: 4, interval: 3}}")
    with pytest.raises(ValueError, match="plans other samples than the checkpoint's run"):
        make_plan(other_tasks, ms, checkpoint(first.state, set(first.ids[:4])))
    with pytest.raises(ValueError, match="nothing to resume"):
        make_plan(run, ms, checkpoint(first.state, set(first.ids)))


def test_a_steps_run_resumes_to_its_planned_sample_count() -> None:
    """With ``steps`` the plan is steps x batch x ranks samples, whatever the new rank count."""
    run, ms = config("train.steps=5"), metas(11)
    first = make_plan(run, ms)
    assert len(first.ids) == 5 * BATCH * 2
    resumed = make_plan(with_workers(run, 3), ms, checkpoint(first.state, set(first.ids[:8])))
    assert len(resumed.visits) == 33 and resumed.info["resume_padded"] == 1


def test_cli_resume_writes_into_the_run_folder_and_max_errors_maps_to_the_budget() -> None:
    import argparse

    from pipelines.commands.pretrain import add_arguments, overrides

    p = argparse.ArgumentParser()
    add_arguments(p)
    run = load_config(overrides=overrides(p.parse_args(["--resume", "runs/a", "--max-errors", "7"])))
    assert run.train.out == "runs/a" and run.data.max_errors == 7
    run = load_config(overrides=overrides(p.parse_args(["--resume", "runs/a", "--out", "runs/b"])))
    assert run.train.out == "runs/b"


# ------------------------------------------------------------------------- through Ray

SPEC = SyntheticSpec(num_videos=10, num_frames=48, width=64, height=48, gop=12, seed=2,
                     classes=("right",))


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> str:
    from pipelines.manifest import write_manifest
    from workers.probe import probe

    root = tmp_path_factory.mktemp("resume")
    write_manifest([probe(str(p)) for p in generate(root / "videos", SPEC)], root / "manifest.parquet")
    return str(root / "manifest.parquet")


def ray_config(manifest: str, out: Path, workers: int) -> RunConfig:
    return load_config(overrides=[
        f"data.manifest={manifest}", f"train.out={out}", f"train.workers={workers}",
        f"train.batch_size={BATCH}", "train.epochs=3", "train.checkpoint_every=1", "size=32x32",
        "task_params={vcop: {clip_len: 6, interval: 3}}", "video.concurrency=1:1",
        "video.batch_size=2",
    ])


def delivered_by(run_dir: Path) -> set[int]:
    return set(read_resume(run_dir).delivered)


@pytest.mark.ray
@pytest.mark.slow
def test_preempted_three_times_resumed_on_other_rank_counts(manifest: str, ray_local, tmp_path: Path) -> None:
    """30 samples planned on 2 ranks; preempted after the first step, in the middle and
    before the last batch, each time resumed on another rank count (2 -> 3 -> 1 -> 2)."""
    from pipelines.manifest import read_manifest
    from pipelines.pretrain import pretrain

    ms = read_manifest(manifest)
    out = tmp_path / "run"
    planned = make_plan(ray_config(manifest, out, 2), ms).ids
    assert len(planned) == 30
    state = None
    # (ranks of this run, steps it trains before the preemption; None: to the end)
    legs = [(2, 1), (3, 1), (1, None), (2, None)]
    step = 0
    for leg, (workers, steps) in enumerate(legs):
        run = ray_config(manifest, out, workers)
        plan = make_plan(run, ms, state)
        if state is not None:  # the rest of the plan, in planned order, then fresh padding
            rest = [i for i in plan.ids if i not in state.delivered]
            assert [v.sample_id for v in plan.visits][: len(rest)] == rest
        if leg == 2:  # break before this leg's last batch: one batch left for the last leg
            steps = len(plan.visits) // BATCH - 1
        if steps is None:
            metrics = pretrain(run, resume=str(out) if state else None)
            break
        with pytest.raises(Exception, match="preempted after step"):
            pretrain(run, resume=str(out) if state else None, preempt_after_step=step + steps)
        before = set() if state is None else set(state.delivered)
        state = read_resume(out)
        step = state.step
        new = set(state.delivered) - before
        assert len(new) == steps * BATCH * workers, f"leg {leg}: {len(new)} new ids"
        assert new <= set(plan.ids) and not new & before
    s = metrics["samples"]
    assert s["duplicated"] == 0 and s["missing"] == 0 and s["unexpected"] == 0, s
    assert s["delivered"] == s["expected"] == len(set(plan.ids)), s
    assert set(planned) <= set(plan.ids)  # padding only added fresh samples
    assert metrics["planned"]["delivered_before"] == s["delivered_before"]
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["samples"] == s
