"""Learnability: the small models of cheap pretext tasks beat chance on held-out samples of
generated videos, and the benchmark's pieces (batches, chance, the docs section) behave."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipelines.learnability import (
    SECTION,
    LearnConfig,
    batches,
    binomial_tail,
    build_manifest,
    chance_of,
    markdown,
    run_task,
    write_section,
)
from pipelines.synthetic import SyntheticSpec
from pipelines.tasks import get_task

# (task, params, steps, training samples, required margin over chance). Measured on this
# dataset with seeds 0 and 1: pace 0.68-0.69 against chance 0.29 (+0.39) after 250 steps on
# 384 samples; avts 0.78-0.82 against 0.53 (+0.25..0.29) after 400 steps on 512. The margins
# leave room for another machine's floating point and the pools' draw.
CASES = [
    ("pace", {"clip_len": 8}, 250, 384, 0.2),
    ("avts", {"clip_len": 8}, 400, 512, 0.15),
]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 generated videos (2 per kind of motion) of 128 frames, indexed with motion."""
    spec = SyntheticSpec(num_videos=12, num_frames=128, width=128, height=96)
    return build_manifest(tmp_path_factory.mktemp("learnability"), spec)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "params", "steps", "train_n", "margin"), CASES)
def test_small_model_beats_chance_on_held_out_samples(
    manifest: Path, name: str, params: dict[str, object], steps: int, train_n: int, margin: float
) -> None:
    torch.set_num_threads(1)
    cfg = LearnConfig(steps=steps, train_n=train_n, eval_n=128, seed=0)
    (record,) = run_task(name, cfg, manifest, params)
    summary = {k: record[k] for k in ("accuracy", "chance", "p_value", "before", "after")}
    assert record["decode_failed"] == 0
    assert record["eval_n"] == 128 and record["steps"] == steps
    assert record["accuracy"] >= record["chance"] + margin, summary
    chance = 1 / get_task(name, **params).num_classes
    assert record["after"]["balanced_accuracy"] >= chance + margin, summary
    assert record["p_value"] < 1e-4, summary
    assert record["after"]["loss"] < record["before"]["loss"], summary


def test_batches_are_reshuffled_full_passes() -> None:
    gen = torch.Generator().manual_seed(0)
    out = list(batches(10, 4, 5, gen))
    assert [len(b) for b in out] == [4, 4, 4, 4, 4]  # the 2 left over each pass are dropped
    first_pass = torch.cat(out[:2])
    assert len(set(first_pass.tolist())) == 8
    again = list(batches(10, 4, 5, torch.Generator().manual_seed(0)))
    assert all(torch.equal(a, b) for a, b in zip(out, again))


def test_chance_is_the_design_or_the_pools_majority() -> None:
    shuffle = get_task("shuffle_learn")  # 75% negatives by design
    labels = torch.tensor([0] * 70 + [1] * 30)
    got = chance_of(shuffle, labels)
    assert got["chance_design"] == 0.75 and got["chance"] == 0.75
    assert got["chance_kind"] == "majority share of the design"
    pace = get_task("pace")  # uniform over 4 strides, but this pool leans to stride 1
    got = chance_of(pace, torch.tensor([0] * 40 + [1] * 20 + [2] * 20 + [3] * 20))
    assert got["chance_design"] == 0.25 and got["chance"] == pytest.approx(0.4)
    assert got["chance_kind"] == "1/4"


def test_binomial_tail() -> None:
    assert binomial_tail(10, 0, 0.3) == pytest.approx(1.0)
    assert binomial_tail(2, 2, 0.5) == pytest.approx(0.25)
    assert binomial_tail(100, 90, 0.5) < 1e-15


def test_config_keeps_the_pools_apart() -> None:
    with pytest.raises(ValueError, match="eval_seed"):
        LearnConfig(train_n=64, seed=0, eval_seed=10)
    with pytest.raises(ValueError, match="steps"):
        LearnConfig(steps=0)


def _report() -> dict[str, object]:
    record = {
        "task": "pace", "kind": "classification", "model": "tiny3d", "params": {"clip_len": 8},
        "steps": 10, "chance": 0.25, "chance_kind": "1/4", "accuracy": 0.5, "p_value": 1e-9,
        "after": {"balanced_accuracy": 0.5, "predicted_shares": [0.25] * 4},
    }
    return {
        "date": "Thu Jan  1 00:00:00 UTC 2026", "machine": "test", "command": "cmd",
        "runtime_s": 1.0, "cpu_s": 1.0, "dataset": {"num_videos": 2},
        "config": {"size": [64, 64], "train_n": 8, "eval_n": 8, "seed": 0, "eval_seed": 9,
                   "steps": 10, "lr": 0.001, "weight_decay": 0.0001, "batch_size": 4},
        "tasks": [record],
    }


def test_write_section_replaces_only_its_own_section(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\n## Decode\n\nkeep me\n")
    text = markdown(_report())
    assert "| pace | 4 | 0.250 (1/4) | 0.500 (0.500), p 1e-09 | - | 10 | clip_len=8 |" in text
    write_section(page, text)
    write_section(page, text.replace("0.500 (0.500)", "0.600 (0.500)"))
    out = page.read_text()
    assert out.count(SECTION) == 1 and "keep me" in out
    assert "0.600 (0.500)" in out and "0.500 (0.500), p" not in out
    page.write_text(out + "\n## Later section\n\nalso kept\n")
    write_section(page, text)
    assert "also kept" in page.read_text() and page.read_text().count(SECTION) == 1
