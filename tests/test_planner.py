"""The planner: pure, seeded, a permutation per epoch, padded to the rank count."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.accounting import account, expand_ranges, id_ranges
from pipelines.config import load_config
from pipelines.planner import Planner, epoch_order
from pipelines.tasks import get_task
from workers.meta import VideoMeta


def metas(n: int, frames: int = 100) -> list[VideoMeta]:
    return [VideoMeta(video_id=1000 + i, uri=f"/d/v{i}.mp4", num_frames=frames, avg_fps=25.0)
            for i in range(n)]


@given(seed=st.integers(0, 2**31), epoch=st.integers(0, 1000), n=st.integers(1, 300))
@settings(max_examples=50, deadline=None)
def test_epoch_order_is_a_permutation_and_pure(seed: int, epoch: int, n: int) -> None:
    order = epoch_order(seed, epoch, n)
    assert sorted(order.tolist()) == list(range(n))
    assert np.array_equal(order, epoch_order(seed, epoch, n))


def test_epochs_differ_and_seeds_differ() -> None:
    assert not np.array_equal(epoch_order(0, 0, 50), epoch_order(0, 1, 50))
    assert not np.array_equal(epoch_order(0, 0, 50), epoch_order(1, 0, 50))


def test_plan_epoch_is_deterministic_and_ids_unique() -> None:
    a = Planner(metas(10), {"vcop": {}}, seed=3, size=(64, 64)).plan_epoch(2)
    b = Planner(metas(10), {"vcop": {}}, seed=3, size=(64, 64)).plan_epoch(2)
    assert [v.plans for v in a.visits] == [v.plans for v in b.visits]
    assert len(set(a.sample_ids)) == len(a.sample_ids) == 10
    assert all(divmod(i, 2**32)[0] == 2 for i in a.sample_ids)
    assert all(p.size == (64, 64) for v in a.visits for p in v.plans)


def test_global_order_does_not_depend_on_rank_count() -> None:
    """Padding only appends: the first n visits are the same whatever the rank count."""
    one = Planner(metas(7), {"vcop": {}}, seed=0, size=(32, 32), divisible_by=1).plan_epoch(0)
    four = Planner(metas(7), {"vcop": {}}, seed=0, size=(32, 32), divisible_by=4).plan_epoch(0)
    assert [v.plans for v in four.visits[:7]] == [v.plans for v in one.visits]
    assert len(four.visits) == 8 and four.padded == 1
    assert len(set(four.sample_ids)) == 8


def test_short_videos_are_skipped_and_counted() -> None:
    ms = metas(4) + [VideoMeta(video_id=5, uri="/d/short.mp4", num_frames=40)]
    ep = Planner(ms, {"vcop": {}}, seed=0, size=(32, 32)).plan_epoch(0)
    assert ep.skipped_short == [5]
    assert len(ep.visits) == 4


def test_pad_policy_clamps_to_the_last_frame() -> None:
    plan = get_task("vcop", short_video="pad").plan(
        VideoMeta(video_id=5, uri="/d/short.mp4", num_frames=40), np.random.default_rng(0))
    assert plan is not None
    assert max(max(c.frames) for c in plan.clips) == 39


def test_a_manifest_with_only_short_videos_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="long enough"):
        Planner(metas(3, frames=10), {"vcop": {}}, seed=0, size=(8, 8)).plan_epoch(0)


def test_account_counts_duplicates_and_missing() -> None:
    s = account(expected=[1, 2, 3, 4], delivered=[[1, 2], [2, 4]])
    assert (s["expected"], s["delivered"], s["unique"], s["duplicated"], s["missing"]) == (4, 4, 3, 1, 1)
    assert s["missing_ids"] == [3] and s["duplicated_ids"] == [2]


@given(st.lists(st.integers(0, 2**40), max_size=200))
def test_id_ranges_round_trip(ids: list[int]) -> None:
    assert expand_ranges(id_ranges(ids)) == sorted(set(ids))


def test_config_overrides_and_validation() -> None:
    cfg = load_config(overrides=["video.concurrency=2:4", "train.workers=3", "size=64x48"])
    assert cfg.data.video.concurrency == (2, 4) and cfg.train.workers == 3 and cfg.data.size == (64, 48)
    with pytest.raises(ValueError, match=r"concurrency \(4, 2\)"):
        load_config(overrides=["video.concurrency=4:2"])
    with pytest.raises(ValueError, match="unknown StageConfig keys"):
        load_config(overrides=["video.nope=1"])
