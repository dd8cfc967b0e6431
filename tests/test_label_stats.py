"""Label metrics: counting per task and flagging drift from each task's design."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.label_stats import LabelHistogram
from pipelines.tasks import get_task, task_names


def test_designed_shares_pass_and_drift_is_flagged() -> None:
    hist = LabelHistogram.for_tasks([get_task("shuffle_learn"), get_task("vcop")])
    rng = np.random.default_rng(0)
    hist.update("shuffle_learn", (rng.random(2000) >= 0.75).astype(int))  # 75% label 0
    hist.update("vcop", rng.integers(0, 6, 2000))
    assert [c.flagged for c in hist.report()] == [False, False]
    drift = LabelHistogram.for_tasks([get_task("shuffle_learn")])
    drift.update("shuffle_learn", [0] * 600 + [1] * 400)
    (check,) = drift.report()
    assert check.flagged and check.deviation == pytest.approx(0.15)
    assert check.allowance == pytest.approx(0.05 + 3 * np.sqrt(0.75 * 0.25 / 1000))
    assert "label 0 at 0.600, designed 0.750" in check.line() and "FLAGGED" in check.line()


def test_a_missing_class_is_flagged() -> None:
    hist = LabelHistogram.for_tasks([get_task("pace")])
    hist.update("pace", np.arange(900) % 3)  # x8 never delivered (videos too short for it?)
    (check,) = hist.report()
    assert check.flagged and "label 3 at 0.000, designed 0.250" in check.reason


def test_labels_outside_the_design_are_flagged_at_any_count() -> None:
    hist = LabelHistogram.for_tasks([get_task("vcop"), get_task("rho_persistence")])
    hist.update("vcop", [0, 7])
    hist.update("rho_persistence", [-1, -1, 0])
    rho, vcop = hist.report()  # in name order
    assert vcop.flagged and "[7]" in vcop.reason
    assert rho.flagged and "[0]" in rho.reason


def test_contrastive_tasks_expect_minus_one() -> None:
    hist = LabelHistogram.for_tasks([get_task("av_contrastive")], min_count=10)
    hist.update("av_contrastive", np.full(50, -1))
    (check,) = hist.report()
    assert not check.flagged and check.expected == {-1: 1.0}


def test_few_labels_are_not_judged_and_unknown_tasks_are_only_counted() -> None:
    hist = LabelHistogram.for_tasks([get_task("arrow_of_time")], min_count=100)
    hist.update("arrow_of_time", [0] * 20)
    hist.update("jigsaw", [3, 3])
    arrow, jigsaw = hist.report()
    assert not arrow.flagged and "too few" in arrow.reason
    assert not jigsaw.flagged and jigsaw.observed == {3: 1.0}


def test_mixed_batches_ranks_merge_and_state_round_trips() -> None:
    a = LabelHistogram.for_tasks([get_task("vcop"), get_task("avc")])
    b = LabelHistogram.for_tasks([get_task("vcop"), get_task("avc")])
    a.update_batch(np.array(["vcop", "avc", "vcop"]), np.array([1, 0, 1]))
    b.update_batch(["avc", "avc"], [1, 0])
    a.merge(b)
    assert a.counts == {"vcop": {1: 2}, "avc": {0: 2, 1: 1}}
    again = LabelHistogram.from_dict(json.loads(json.dumps(a.to_dict())))
    assert again.counts == a.counts and again.expected == a.expected
    assert [c.line() for c in again.report()] == [c.line() for c in a.report()]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"tolerance \(2\)"):
        LabelHistogram(tolerance=2)
    with pytest.raises(ValueError, match=r"expected distribution of 'x' \(\{0: 0.5\}\)"):
        LabelHistogram({"x": {0: 0.5}})


@pytest.mark.parametrize("name", task_names())
def test_every_task_planned_labels_match_its_design(name: str) -> None:
    """Planned labels of every task, on a video every task fits, pass their own check."""
    from tests.test_tasks import POOL, video

    task = get_task(name)
    hist = LabelHistogram.for_tasks([task], tolerance=0.05)
    meta = video(num_frames=400)
    for i in range(600):
        plan = task.plan(meta, np.random.default_rng((1, 0, i)), sample_id=i, pool=POOL)
        assert plan is not None
        hist.update(name, plan.label)
    (check,) = hist.report()
    assert not check.flagged, check.line()


@given(st.lists(st.integers(0, 5), min_size=1, max_size=200), st.integers(1, 4))
def test_split_counts_merge_to_the_whole(labels: list[int], parts: int) -> None:
    whole = LabelHistogram()
    whole.update("t", labels)
    merged = LabelHistogram()
    for chunk in np.array_split(np.array(labels), parts):
        piece = LabelHistogram()
        piece.update("t", chunk)
        merged.merge(piece)
    assert merged.counts == whole.counts and whole.total("t") == len(labels)


def test_a_run_flags_a_task_whose_labels_drift_from_its_design() -> None:
    from pipelines.pretrain import label_checks

    checks = label_checks(
        [get_task("vcop"), get_task("shuffle_learn"), get_task("rho_persistence")],
        {"vcop": {"0": 50, "1": 50, "2": 50, "3": 50, "4": 50, "5": 250},
         "shuffle_learn": {"0": 300, "1": 100}, "rho_persistence": {}},
    )
    verdicts = {c["task"]: c["flagged"] for c in checks}
    assert verdicts == {"vcop": True, "shuffle_learn": False}  # contrastive tasks have no classes
