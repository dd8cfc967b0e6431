"""The pretext model: shared backbones, one objective (head + loss) per task.

    model = build_pretext_model({"vcop": 1.0, "pace": 0.5}, backbone="tiny3d")
    loss, metrics = model(batch, "vcop")                 # one task's batch
    loss, metrics = model({"vcop": b1, "pace": b2})      # weighted sum over tasks

Task -> head and loss (K: inputs of the shared video backbone per sample, A: audio windows):

| task            | inputs              | head                                        | loss                          |
|-----------------|---------------------|---------------------------------------------|-------------------------------|
| vcop            | K clips             | pairwise concat, fc 512 per pair, fc (VCOP) | cross-entropy, K! classes     |
| opn             | K frames            | pairwise concat, fc 512 per pair, fc (OPN)  | cross-entropy, K!/2 classes   |
| o3n             | K = N+1 clips       | sum of differences, MLP (O3N)               | cross-entropy, K classes      |
| shuffle_learn   | 3 frames            | concat of the 3, MLP (Shuffle & Learn)      | cross-entropy, 2 classes      |
| arrow_of_time   | 1 clip              | MLP                                         | cross-entropy, 2 classes      |
| pace            | 1 clip              | MLP                                         | cross-entropy, one per stride |
| rho_persistence | K = rho clips       | projector (+ predictor, EMA target)         | BYOL (or nt_xent, wmse)       |
| dsm             | anchor, pos, neg    | projector                                   | triplet margin (cosine)       |
| motion_context  | clip + keyframe     | motion head (coarse field, resized);        | smooth L1 on the next fields  |
|                 |                     | clip and keyframe projectors                | + InfoNCE keyframe vs clips   |
| avc             | 1 frame + A audio   | AV fusion: concat, fc 128, fc 2 (L3-Net)    | cross-entropy, 2 classes      |
| avts            | 1 clip + A audio    | AV fusion: concat, fc 128, fc 2             | cross-entropy, 2 classes      |
| av_contrastive  | 1 clip + A audio    | one projector per modality                  | symmetric InfoNCE, in-batch   |

A task not in the table gets the generic head its outputs call for: classes and no audio ->
concat MLP + cross-entropy; classes and audio -> AV fusion + cross-entropy.
``head_params[task]`` overrides a head's settings (e.g. ``{"rho_persistence": {"loss": "wmse"}}``).

Masking and DDP. A batch may carry ``ok`` (bool, (B,)): rows whose decode failed hold zeros
and ``ok = False``; they are dropped before the backbone (so they neither train the model nor
move BatchNorm statistics) and from the metrics. Every loss this module returns also carries
a zero term touching every trainable parameter, so each rank produces a gradient for every
parameter in every step (a task absent from a batch, a batch with no valid rows, the audio
backbone in a video-only step) and DDP needs no ``find_unused_parameters``. Under DDP, call
the wrapper once per step with all tasks (``ddp(batches, weights=w)`` or
``model.multi_task_loss(batches, w, forward=ddp)``): calling it once per task before one
backward would mark shared parameters ready twice. The BYOL target does not require grad
and is not reduced; it moves by EMA (momentum 0.99) at the start of every training forward,
identically on every rank, so the train loop calls nothing extra.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from models._objectives import (
    AVClassify,
    AVContrastive,
    Classify,
    Metrics,
    MotionContext,
    Objective,
    Siamese,
    Triplet,
)
from models.backbones import Backbone, build_audio_backbone, build_video_backbone, prepare_video
from models.heads import ConcatHead, PairwiseOrderHead, SumOfDifferencesHead
from models.losses import zero_touching
from pipelines.tasks import Decoded, Task, get_task
from workers.meta import VideoMeta

TaskBatch = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class TaskShapes:
    """Per-sample shapes of a task's outputs (no batch dimension), read from a probe sample."""

    name: str
    num_classes: int
    shapes: dict[str, tuple[int, ...]]

    @property
    def num_inputs(self) -> int:
        return self.shapes["video"][0]

    @property
    def has_audio(self) -> bool:
        return "audio" in self.shapes


class _ProbePool:
    def __init__(self, meta: VideoMeta) -> None:
        self.meta = meta

    def draw(self, rng: np.random.Generator, exclude_video_id: int) -> VideoMeta:
        return self.meta


def probe_task(task: Task) -> TaskShapes:
    """Plan and assemble one sample of ``task`` from a long synthetic video of zeros.

    The model sizes its heads from what the task really outputs (K inputs, M motion fields)
    rather than from each task's constructor arguments, so a task parameter such as
    ``num_clips`` or ``rho`` reaches the head without a second source of truth.

    Returns:
        The task's name, class count and output shapes.
    """
    def meta(video_id: int) -> VideoMeta:
        fps, n = 25.0, 3000  # two minutes: long enough for every task's span and offsets
        return VideoMeta(
            video_id=video_id, uri=f"probe://{video_id}", width=128, height=128, avg_fps=fps,
            num_frames=n, duration_s=n / fps, keyframes=tuple(range(0, n, 25)), has_audio=True,
            audio_codec="aac", audio_sample_rate=16000, audio_channels=1, audio_duration_s=n / fps,
        )

    plan = task.plan(meta(1), np.random.default_rng(0), sample_id=0, pool=_ProbePool(meta(2)))
    if plan is None:
        raise ValueError(f"task {task.name!r} planned no sample for a {meta(1).num_frames}-frame probe video")
    h, w = plan.size or (64, 64)
    decoded = Decoded(
        clips=[np.zeros((len(c.frames), h, w, 3), np.uint8) for c in plan.clips],
        audio=[np.zeros((1, 40, 32), np.float32) for _ in plan.audio],
        motion=[np.zeros((max(m.stop - m.start, 1), 4, 4, 2), np.float32) for m in plan.motion],
    )
    out = task.assemble(decoded, plan)
    shapes = {k: tuple(np.shape(v)) for k, v in out.items()}
    if "video" not in shapes:
        raise ValueError(f"task {task.name!r} outputs no 'video' (keys: {sorted(shapes)})")
    return TaskShapes(task.name, int(task.num_classes), shapes)


class PretextModel(nn.Module):
    """Shared video backbone (and audio backbone when a task needs audio), one objective per task.

    Args:
        video_backbone: maps (N, 3, T, H, W) to (N, D), with ``out_dim``.
        audio_backbone: maps (N, C, n_mels, n_frames) to (N, Da), or None.
        objectives: task name -> objective (see ``models._objectives``).
        weights: task name -> default loss weight of the multi-task sum.
    """

    def __init__(
        self,
        video_backbone: Backbone,
        audio_backbone: Backbone | None,
        objectives: Mapping[str, Objective],
        weights: Mapping[str, float],
    ) -> None:
        super().__init__()
        self.video_backbone = video_backbone
        self.audio_backbone = audio_backbone
        self.objectives = nn.ModuleDict(dict(objectives))
        self.weights = dict(weights)

    @property
    def tasks(self) -> list[str]:
        return list(self.objectives)

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """Args: video uint8 (B, K, T, H, W, 3). Returns: features (B, K, D)."""
        if video.dtype != torch.uint8:
            raise ValueError(f"video dtype {video.dtype} must be torch.uint8 (the task output convention)")
        b, k = video.shape[:2]
        return self.video_backbone(prepare_video(video)).view(b, k, -1)

    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """Args: audio float log-mel (B, A, C, n_mels, n_frames). Returns: features (B, A, Da)."""
        if self.audio_backbone is None:
            raise ValueError("this model has no audio backbone: no task given to it needs audio")
        if audio.dim() != 5:
            raise ValueError(f"audio shape {tuple(audio.shape)} must be (B, A, C, n_mels, n_frames)")
        b, a = audio.shape[:2]
        return self.audio_backbone(audio.flatten(0, 1).float()).view(b, a, -1)

    def task_loss(self, batch: TaskBatch, task: str) -> tuple[torch.Tensor, Metrics]:
        """One task's loss on its valid rows, without the parameter-touching term.

        Args:
            batch: the task's tensors with a leading batch dim B (``video``, ``label``, ...,
                optional ``ok`` bool (B,)); non-tensor values are ignored.
            task: a task of this model.

        Returns:
            ``(loss, metrics)``: metrics hold detached scalars, ``loss`` and ``n`` (valid rows)
            always, plus the objective's own (``acc``, ``top1``, ``epe``). Fewer valid rows
            than the objective needs (e.g. one row for a contrastive loss): loss 0, n 0.
        """
        if task not in self.objectives:
            raise ValueError(f"task {task!r} is not in this model; its tasks: {', '.join(self.objectives)}")
        objective: Objective = self.objectives[task]  # type: ignore[assignment]
        rows = _valid_rows(batch)
        n = int(rows.sum()) if rows is not None else _batch_size(batch)
        if n < objective.min_rows:
            zero = torch.zeros((), device=_device(batch))
            return zero, {"loss": zero, "n": torch.tensor(0.0)}
        sub = {k: v[rows] if rows is not None else v for k, v in batch.items()
               if isinstance(v, torch.Tensor) and k != "ok"}
        loss, metrics = objective(sub, self)
        return loss, {"loss": loss.detach(), "n": torch.tensor(float(n)), **metrics}

    def forward(
        self,
        batch: TaskBatch | Mapping[str, TaskBatch],
        task: str | None = None,
        *,
        weights: Mapping[str, float] | None = None,
    ) -> tuple[torch.Tensor, Metrics]:
        """The loss of one task's batch, or the weighted sum over a dict of per-task batches.

        Args:
            batch: ``{key: tensor}`` for ``task``; or, with ``task=None``,
                ``{task: {key: tensor}}`` for any subset of this model's tasks.
            task: the batch's task, or None for the multi-task form.
            weights: multi-task form only: task -> weight (default: the model's weights).

        Returns:
            ``(loss, metrics)``: loss ``sum_t weight_t * loss_t`` plus a zero touching every
            trainable parameter; metrics as in :meth:`task_loss`, prefixed ``"{task}/"`` in
            the multi-task form, with the total under ``"loss"``.
        """
        touch = zero_touching(self.parameters())
        if task is not None:
            loss, task_metrics = self.task_loss(batch, task)  # type: ignore[arg-type]
            return loss + touch, task_metrics
        weights = self.weights if weights is None else weights
        total = touch
        metrics: Metrics = {}
        for name, task_batch in batch.items():
            if name not in weights:
                raise ValueError(f"no weight for task {name!r}; weights: {dict(weights)}")
            loss, task_metrics = self.task_loss(task_batch, name)  # type: ignore[arg-type]
            total = total + float(weights[name]) * loss
            metrics.update({f"{name}/{k}": v for k, v in task_metrics.items()})
        metrics["loss"] = total.detach()
        return total, metrics

    def multi_task_loss(
        self,
        batches: Mapping[str, TaskBatch],
        weights: Mapping[str, float] | None = None,
        *,
        forward: Any = None,
    ) -> tuple[torch.Tensor, Metrics]:
        """``sum_t weight_t * loss_t`` over per-task batches, in one forward call.

        Args:
            batches: ``{task: {key: tensor}}``.
            weights: task -> weight; None: the model's weights.
            forward: the callable wrapping this model for training (a DDP wrapper), called
                once with all tasks so its reducer sees one forward per backward; None: self.

        Returns:
            As :meth:`forward`.
        """
        call = self if forward is None else forward
        return call(batches, weights=weights)

    def update_targets(self, momentum: float | None = None) -> None:
        """EMA step of every momentum target (BYOL) towards the online networks.

        Training forwards already do this once per call; call it directly only to apply a
        schedule of your own (then build the BYOL task with ``momentum=1.0``).
        """
        for objective in self.objectives.values():
            if isinstance(objective, Siamese):
                objective.update_target(self.video_backbone, momentum)


def _valid_rows(batch: TaskBatch) -> torch.Tensor | None:
    ok = batch.get("ok")
    return None if ok is None else ok.to(torch.bool).view(-1)


def _batch_size(batch: TaskBatch) -> int:
    for v in batch.values():
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            return int(v.shape[0])
    return 0


def _device(batch: TaskBatch) -> torch.device:
    for v in batch.values():
        if isinstance(v, torch.Tensor):
            return v.device
    return torch.device("cpu")


_ORDER_HEADS = {"vcop": "pairwise", "opn": "pairwise", "o3n": "sum_diff", "shuffle_learn": "concat",
                "arrow_of_time": "concat", "pace": "concat"}


def _objective(spec: TaskShapes, video: Backbone, audio_dim: int, params: dict[str, Any]) -> Objective:
    """The objective of one task (see the module table); ``params`` go to its head."""
    d, name = video.out_dim, spec.name
    k, classes = spec.num_inputs, spec.num_classes
    if name == "rho_persistence":
        return Siamese(name, video, d, **params)
    if name == "dsm":
        return Triplet(name, d, **params)
    if name == "motion_context" or (classes == 0 and "motion" in spec.shapes):
        params.setdefault("context", "keyframe" in spec.shapes)
        return MotionContext(name, d, num_fields=spec.shapes["motion"][0], **params)
    if name == "av_contrastive" or (classes == 0 and spec.has_audio):
        return AVContrastive(name, d, audio_dim, **params)
    if classes < 2:
        raise ValueError(f"task {name!r} has no head: it is not a classification task and not in the table")
    if spec.has_audio:
        return AVClassify(name, d, audio_dim, classes, **params)
    kind = _ORDER_HEADS.get(name, "concat")
    if kind == "pairwise":
        return Classify(name, PairwiseOrderHead(d, k, classes, **params))
    if kind == "sum_diff":
        return Classify(name, SumOfDifferencesHead(d, k, classes, **params))
    return Classify(name, ConcatHead(d, k, classes, **params))


def build_pretext_model(
    tasks: Sequence[str | Task] | Mapping[str, float],
    *,
    backbone: str = "tiny3d",
    audio_backbone: str | None = None,
    audio_channels: int = 1,
    task_params: Mapping[str, Mapping[str, Any]] | None = None,
    head_params: Mapping[str, Mapping[str, Any]] | None = None,
    weights: Mapping[str, float] | None = None,
) -> PretextModel:
    """A :class:`PretextModel` for ``tasks``.

    Args:
        tasks: task names or task objects, or ``{name: weight}`` (as ``DataConfig.tasks``).
        backbone: video backbone, ``tiny3d`` | ``r3d_18`` | ``r2plus1d_18``.
        audio_backbone: ``tiny2d`` | ``vgg``; None: ``tiny2d`` with ``tiny3d``, else ``vgg``.
            Built only when a task outputs ``audio``.
        audio_channels: C of the log-mel input (1: mono).
        task_params: name -> constructor arguments, for tasks given by name.
        head_params: name -> head settings (see the module docstring).
        weights: name -> loss weight; default 1.0 each (or the mapping's values).

    Returns:
        The model, in training mode.
    """
    if isinstance(tasks, Mapping):
        weights = {**tasks, **(weights or {})}
        tasks = list(tasks)
    if not tasks:
        raise ValueError("tasks must name at least one task")
    objs = [get_task(t, **dict((task_params or {}).get(t, {}))) if isinstance(t, str) else t for t in tasks]
    names = [t.name for t in objs]
    if len(set(names)) != len(names):
        raise ValueError(f"tasks {names} name a task twice")
    specs = [probe_task(t) for t in objs]
    video = build_video_backbone(backbone)
    audio = None
    if any(s.has_audio for s in specs):
        audio = build_audio_backbone(audio_backbone or ("tiny2d" if backbone == "tiny3d" else "vgg"),
                                     in_channels=audio_channels)
    audio_dim = audio.out_dim if audio is not None else 0
    objectives = {s.name: _objective(s, video, audio_dim, dict((head_params or {}).get(s.name, {}))) for s in specs}
    all_weights = {n: float((weights or {}).get(n, 1.0)) for n in names}
    return PretextModel(video, audio, objectives, all_weights)
