"""The Ray Data graph: planned visits -> video -> audio -> motion -> assemble.

Each decode stage is its own operator (an autoscaling actor pool with its own resources and
``concurrency=(min, max)``), so decode capacity is scaled per stage and independently of the
trainers. Stages a run does not need (no task reads audio, say) are left out of the graph.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import numpy as np

from pipelines.config import DataConfig, StageConfig
from pipelines.planner import Visit
from pipelines.tasks import Task
from pipelines.telemetry import Reporter
from workers.stage import Batch, encode_row


class AssembleStage:
    """Turns decoded rows into fixed-shape named arrays, ``{task}.{key}`` per task.

    Every row keeps ``sample_id``, ``video_id``, ``ok`` (False where a stage failed; its arrays
    are zeros of the right shape, so the batch keeps its size) and the error text.
    """

    def __init__(self, tasks: Sequence[Task], telemetry: str = "", passthrough: Sequence[str] = ()) -> None:
        self.tasks = list(tasks)
        self.reporter = Reporter("stage", "assemble", sink=telemetry)
        self.passthrough = list(passthrough)  # columns the trainer still needs (colocated)

    def __call__(self, batch: Batch) -> Batch:
        plans = [pickle.loads(b) for b in batch["plans"]]
        decoded = [pickle.loads(b) for b in batch["decoded"]]
        errors = np.asarray(batch["error"], dtype=object)
        out: Batch = {
            "sample_id": np.asarray(batch["sample_id"], dtype=np.int64),
            "video_id": np.asarray(batch["video_id"], dtype=np.int64),
            "ok": np.array([not e for e in errors], dtype=bool),
            "error": errors,
            "error_kind": np.asarray(batch["error_kind"], dtype=object),
        }
        for j, task in enumerate(self.tasks):
            items = [task.assemble(decoded[i][j], plans[i][j]) for i in range(len(plans))]
            for key in items[0]:
                out[f"{task.name}.{key}"] = np.stack([item[key] for item in items])
        for key in self.passthrough:
            out[key] = batch[key]
        self.reporter.add(rows=len(plans), errors=int((~out["ok"]).sum()))
        return out


def _stage_class(name: str, cfg: StageConfig, placement: str = "disaggregated") -> type:
    if name == "video":
        if placement == "colocated":
            from workers.dali_stage import EncodedBytesStage

            return EncodedBytesStage
        if cfg.backend == "dali":
            from workers.dali_stage import DALIVideoStage

            return DALIVideoStage
        from workers.video_stage import VideoStage

        return VideoStage
    if name == "audio":
        if cfg.backend == "dali":
            from workers.audio_dali import DALIAudioStage

            return DALIAudioStage
        from workers.audio import AudioStage

        return AudioStage
    from workers.motion_stage import MotionStage

    return MotionStage


def needed_stages(tasks: Sequence[Task]) -> list[str]:
    stages = ["video"]
    if any(t.needs_audio for t in tasks):
        stages.append("audio")
    if any(t.needs_motion for t in tasks):
        stages.append("motion")
    return stages


def build_dataset(visits: Sequence[Visit], data: DataConfig, tasks: Sequence[Task]):
    """The streaming dataset of assembled samples for ``visits`` (in planned order).

    Args:
        visits: an epoch's visits (``Planner.plan_epoch(e).visits``), possibly a remainder.
        data: the data config (stages, size, policies).
        tasks: the tasks whose plans each visit holds, in the same order.
    Returns:
        a ``ray.data.Dataset`` whose rows are assembled samples.
    """
    import ray.data

    rows = [encode_row(v.plans, v.metas) for v in visits]
    blocks = max(1, min(len(rows), -(-len(rows) // data.video.batch_size)))
    ds: ray.data.Dataset = ray.data.from_items(rows, override_num_blocks=blocks)
    colocated = data.placement == "colocated"
    if colocated:
        check_colocated(data, tasks)
    for name in needed_stages(tasks):
        cfg: StageConfig = getattr(data, name)
        args = cfg.ray_args()
        if colocated and name == "video":
            from workers.dali_stage import encoded_stage_args

            args = encoded_stage_args(cfg)
        ds = ds.map_batches(
            _stage_class(name, cfg, data.placement),
            fn_constructor_args=(data, cfg),
            batch_format="numpy",
            zero_copy_batch=True,
            **args,
        )
    passthrough: Sequence[str] = ()
    if colocated:
        from workers.dali_stage import COLOCATED_COLUMNS as passthrough
    return ds.map_batches(
        AssembleStage,
        fn_constructor_args=(list(tasks), data.telemetry, passthrough),
        batch_format="numpy",
        **data.assemble.ray_args(),
    )


def check_colocated(data: DataConfig, tasks: Sequence[Task]) -> None:
    """The colocated placement decodes with DALI in the trainer and builds ``video`` from
    the clips alone, so it needs the DALI backend and tasks without pixel work in assemble."""
    if data.video.backend != "dali":
        raise ValueError(f"placement 'colocated' decodes with DALI in the trainer; video.backend "
                         f"is {data.video.backend!r}, set it to 'dali'")
    bad = [t.name for t in tasks if not t.video_is_clips]
    if bad:
        raise ValueError(f"placement 'colocated' cannot serve tasks {bad}: their assemble works on "
                         f"pixels; use 'disaggregated' for them")
