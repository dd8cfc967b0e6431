"""End to end on a local Ray: index -> plan -> decode -> stream -> DDP train."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.config import load_config
from pipelines.synthetic import SyntheticSpec, generate

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# One motion class: clip order is then visible in every video, so the loss falls within the
# few dozen steps a CI run can afford.
SPEC = SyntheticSpec(num_videos=12, num_frames=48, width=96, height=64, gop=12, seed=1,
                     classes=("right",))


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> str:
    from pipelines.manifest import index_paths, write_manifest

    root = tmp_path_factory.mktemp("synthetic")
    generate(root / "videos", SPEC)
    result = index_paths([str(root / "videos")], root=str(root / "videos"), label_from_dir=True)
    path = root / "manifest.parquet"
    write_manifest(result.rows, path)
    return str(path)


def run_config(manifest: str, out: Path, *extra: str):
    return load_config(overrides=[
        f"data.manifest={manifest}", f"train.out={out}", "train.workers=2", "train.batch_size=8",
        "size=32x32", "task_params={vcop: {clip_len: 6, interval: 3}}",
        "video.concurrency=1:2", "video.batch_size=2", *extra,
    ])


def test_two_ranks_exactly_once_and_the_loss_falls(manifest: str, ray_local, tmp_path: Path) -> None:
    from pipelines.pretrain import pretrain

    metrics = pretrain(run_config(manifest, tmp_path, "train.epochs=34"))
    s = metrics["samples"]
    assert s["expected"] == 408 and s["delivered"] == 408
    assert s["unique"] == 408 and s["duplicated"] == 0 and s["missing"] == 0
    assert s["per_rank"] == [204, 204]
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["samples"] == s
    assert 0.0 <= metrics["stall_fraction"] <= 1.0
    assert sum(metrics["label_histogram"]["vcop"].values()) == 408
    loss = metrics["loss"]
    assert len(loss) == metrics["steps"] == 26  # 204 per rank in batches of 8: 25 full + 1 of 4
    first, last = sum(loss[:8]) / 8, sum(loss[-8:]) / 8
    assert last < first - 0.1, loss


def _manifest(root: Path, spec: SyntheticSpec, motion: bool = False) -> str:
    from pipelines.manifest import index_paths, write_manifest

    generate(root / "videos", spec)
    result = index_paths([str(root / "videos")], root=str(root / "videos"), label_from_dir=True,
                         motion=motion)
    write_manifest(result.rows, root / "manifest.parquet")
    return str(root / "manifest.parquet")


def test_one_decode_feeds_two_tasks_through_stages_of_their_own(ray_local, tmp_path: Path) -> None:
    """avc + motion_context: video by PyAV (1 actor), audio log-mel by DALI, motion vectors
    by PyAV on 2 actors; each visit is decoded once for both tasks."""
    from pipelines.pretrain import pretrain

    spec = SyntheticSpec(num_videos=8, num_frames=48, width=96, height=64, gop=12, seed=2)
    manifest = _manifest(tmp_path / "data", spec, motion=True)
    metrics = pretrain(load_config(overrides=[
        f"data.manifest={manifest}", f"train.out={tmp_path / 'run'}", "train.workers=2",
        "train.batch_size=4", "train.epochs=2", "size=32x32",
        "tasks={avc: 1.0, motion_context: 0.5}", "task_params={motion_context: {clip_len: 8}}",
        "video.concurrency=1:1", "audio.backend=dali", "audio.concurrency=1:1",
        # Ray Data gets the CPUs the 2 ranks leave (4 of 6): 1 + 1 + 2 x 0.5 + 0.5 (assemble).
        "motion.concurrency=2:2", "motion.batch_size=2", "motion.num_cpus=0.5",
    ]))
    s = metrics["samples"]
    assert (s["expected"], s["delivered"], s["duplicated"], s["missing"]) == (16, 16, 0, 0)
    assert set(metrics["task_loss"]) == {"avc", "motion_context"}
    assert sum(metrics["label_histogram"]["avc"].values()) == 16
    assert metrics["config"]["data"]["audio"]["backend"] == "dali"
    # Every actor that ever reported (the number alive at each sample is a timing matter).
    actors = {name: points[-1]["actors_seen"] for name, points in metrics["stages"].items()}
    assert actors["motion"] == 2 and actors["video"] == 1 and actors["audio"] == 1, actors


def test_colocated_placement_decodes_in_the_trainer(ray_local, tmp_path: Path) -> None:
    """The video operator ships compressed bytes; each rank decodes its clips with DALI (its
    CPU decoder here, on VP9; NVDEC on a GPU machine)."""
    from pipelines.pretrain import pretrain

    spec = SyntheticSpec(num_videos=6, num_frames=48, width=96, height=64, gop=12, seed=3,
                         codec="libvpx-vp9")
    manifest = _manifest(tmp_path / "data", spec)
    metrics = pretrain(load_config(overrides=[
        f"data.manifest={manifest}", f"train.out={tmp_path / 'run'}", "train.workers=2",
        "train.batch_size=3", "train.epochs=2", "size=32x32", "placement=colocated",
        "video.backend=dali", "task_params={vcop: {clip_len: 6, interval: 3}}",
    ]))
    s = metrics["samples"]
    assert (s["expected"], s["delivered"], s["duplicated"], s["missing"], s["failed"]) == (12, 12, 0, 0, 0)
    assert metrics["failed"] == []
