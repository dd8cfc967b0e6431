"""Per-task objectives: a head and its loss, applied to one task's (already masked) batch.

Each objective is an ``nn.Module`` whose ``forward(batch, encoder)`` returns
``(loss, metrics)``; ``encoder`` is the :class:`~models.pretext.PretextModel` that owns the
shared backbones (passed in, not registered, so the backbones are not duplicated in the
state dict). ``min_rows`` is the fewest valid rows the loss is defined for.
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch
from torch import nn

from models.backbones import prepare_video
from models.heads import AVFusionHead, MotionHead, ProjectionHead
from models.losses import (
    MomentumTarget,
    byol_loss,
    classification_loss,
    info_nce,
    motion_loss,
    nt_xent,
    triplet_loss,
    wmse_loss,
)

Metrics = dict[str, torch.Tensor]
SiameseLoss = Literal["byol", "nt_xent", "wmse"]


class Encoder(Protocol):
    """What objectives need from the model: the shared backbones."""

    video_backbone: nn.Module

    def encode_video(self, video: torch.Tensor) -> torch.Tensor: ...

    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor: ...


class Objective(nn.Module):
    """Base class: subclasses set ``min_rows`` and implement ``forward``."""

    min_rows: int = 1

    def forward(self, batch: dict[str, torch.Tensor], encoder: Encoder) -> tuple[torch.Tensor, Metrics]:
        raise NotImplementedError


def _batch_key(batch: dict[str, torch.Tensor], key: str, task: str) -> torch.Tensor:
    if key not in batch:
        raise ValueError(f"task {task!r} needs batch key {key!r}; got {sorted(batch)}")
    return batch[key]


class Classify(Objective):
    """A video head on the K inputs' features, cross-entropy on ``label`` (-1 rows left out)."""

    def __init__(self, task: str, head: nn.Module) -> None:
        super().__init__()
        self.task, self.head = task, head

    def forward(self, batch, encoder):  # type: ignore[override]
        feats = encoder.encode_video(_batch_key(batch, "video", self.task))
        loss, acc = classification_loss(self.head(feats), _batch_key(batch, "label", self.task))
        return loss, {"acc": acc}


def _mean_video_audio(batch: dict[str, torch.Tensor], encoder: Encoder, task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Video and audio features of each sample: (B, Dv), (B, Da), averaged over K and A."""
    video = encoder.encode_video(_batch_key(batch, "video", task)).mean(dim=1)
    audio = encoder.encode_audio(_batch_key(batch, "audio", task)).mean(dim=1)
    return video, audio


class AVClassify(Objective):
    """Audio-visual correspondence as classification: fusion head, cross-entropy."""

    def __init__(self, task: str, video_dim: int, audio_dim: int, num_classes: int, hidden: int = 128) -> None:
        super().__init__()
        self.task = task
        self.head = AVFusionHead(video_dim, audio_dim, num_classes, hidden)

    def forward(self, batch, encoder):  # type: ignore[override]
        video, audio = _mean_video_audio(batch, encoder, self.task)
        loss, acc = classification_loss(self.head(video, audio), _batch_key(batch, "label", self.task))
        return loss, {"acc": acc}


class AVContrastive(Objective):
    """Cross-modal InfoNCE: each clip's projection against the batch's audio projections."""

    min_rows = 2

    def __init__(
        self, task: str, video_dim: int, audio_dim: int, hidden: int = 2048, out_dim: int = 128,
        temperature: float = 0.1,
    ) -> None:
        super().__init__()
        self.task, self.temperature = task, temperature
        self.video_proj = ProjectionHead(video_dim, hidden, out_dim)
        self.audio_proj = ProjectionHead(audio_dim, hidden, out_dim)

    def forward(self, batch, encoder):  # type: ignore[override]
        video, audio = _mean_video_audio(batch, encoder, self.task)
        loss, top1 = info_nce(self.video_proj(video), self.audio_proj(audio), self.temperature)
        return loss, {"top1": top1}


class Siamese(Objective):
    """Views of one video pulled together: the K inputs are K positives of each other.

    ``byol``: online projector + predictor against an EMA target (backbone + projector);
    the target moves at the start of every training forward (as MoCo's reference code does),
    so the train loop needs no extra call. ``nt_xent``: SimCLR with in-batch negatives.
    ``wmse``: batch whitening then normalized MSE.
    """

    min_rows = 2

    def __init__(
        self,
        task: str,
        backbone: nn.Module,
        in_dim: int,
        loss: SiameseLoss = "byol",
        hidden: int = 4096,
        out_dim: int = 256,
        temperature: float = 0.1,
        momentum: float = 0.99,
        wmse_eps: float = 0.0,
    ) -> None:
        super().__init__()
        if loss not in ("byol", "nt_xent", "wmse"):
            raise ValueError(f"loss ({loss!r}) must be 'byol', 'nt_xent' or 'wmse'")
        self.task, self.loss, self.temperature, self.wmse_eps = task, loss, temperature, wmse_eps
        self.momentum = momentum
        self.projector = ProjectionHead(in_dim, hidden, out_dim)
        if loss == "byol":
            self.predictor: nn.Module = ProjectionHead(out_dim, hidden, out_dim)
            self.target: MomentumTarget | None = MomentumTarget([backbone, self.projector])
        else:
            self.predictor, self.target = nn.Identity(), None

    def update_target(self, backbone: nn.Module, momentum: float | None = None) -> None:
        """EMA step of the BYOL target towards (backbone, projector); no-op for other losses."""
        if self.target is not None:
            self.target.update_target([backbone, self.projector], self.momentum if momentum is None else momentum)

    def forward(self, batch, encoder):  # type: ignore[override]
        video = _batch_key(batch, "video", self.task)
        feats = encoder.encode_video(video)  # (B, K, D)
        b, k, d = feats.shape
        z = self.projector(feats.reshape(b * k, d))
        if self.loss == "nt_xent":
            return nt_xent(z.view(b, k, -1).transpose(0, 1), self.temperature)[0], {}
        if self.loss == "wmse":
            return wmse_loss(z.view(b, k, -1).transpose(0, 1), self.wmse_eps), {}
        assert self.target is not None
        if self.training:
            self.update_target(encoder.video_backbone)
        p = self.predictor(z).view(b, k, -1).transpose(0, 1)
        with torch.no_grad():
            t = self.target(prepare_video(video)).view(b, k, -1).transpose(0, 1)
        return byol_loss(p, t), {}


class Triplet(Objective):
    """Input 0 is the anchor, 1 the positive, 2 the negative: a projection, triplet margin loss."""

    min_rows = 2  # the projection's BatchNorm needs two rows

    def __init__(self, task: str, in_dim: int, hidden: int = 2048, out_dim: int = 128, margin: float = 0.5) -> None:
        super().__init__()
        self.task, self.margin = task, margin
        self.projector = ProjectionHead(in_dim, hidden, out_dim)

    def forward(self, batch, encoder):  # type: ignore[override]
        feats = encoder.encode_video(_batch_key(batch, "video", self.task))
        if feats.shape[1] != 3:
            raise ValueError(f"task {self.task!r} must feed 3 inputs (anchor, positive, negative), got {feats.shape[1]}")
        b, k, d = feats.shape
        z = self.projector(feats.reshape(b * k, d)).view(b, k, -1)
        loss, acc = triplet_loss(z[:, 0], z[:, 1], z[:, 2], self.margin)
        return loss, {"acc": acc}


class MotionContext(Objective):
    """Motion prediction, and context matching when the task feeds a ``keyframe``.

    Motion: the ``motion`` fields (B, M, T, h, w, 2) are regressed from the clip's features
    (the mean of its K inputs); ``motion_mask`` (B, M, T, h, w), when a task provides it,
    selects the cells that carry a vector. Context: the keyframe (B, 1, 1, H, W, 3) goes
    through the same backbone as a one-frame clip, and an InfoNCE pairs each keyframe with its
    own clip against the batch's other clips (Huang et al.'s context matching).

    Args:
        task: task name.
        in_dim: backbone feature size.
        num_fields: M.
        context: whether the batch carries ``keyframe``.
        kind: regression loss, see :func:`~models.losses.motion_loss`.
        context_weight: weight of the context term against the motion term.
        hidden, out_dim, temperature: the context projections and InfoNCE.
    """

    def __init__(
        self, task: str, in_dim: int, num_fields: int, context: bool = True, kind: str = "smooth_l1",
        context_weight: float = 1.0, hidden: int = 2048, out_dim: int = 128, temperature: float = 0.1,
    ) -> None:
        super().__init__()
        self.task, self.kind, self.context_weight, self.temperature = task, kind, context_weight, temperature
        self.head = MotionHead(in_dim, num_fields)
        self.context = context
        # InfoNCE needs in-batch negatives and the projections' BatchNorm two rows
        self.min_rows = 2 if context else 1
        if context:
            self.clip_proj = ProjectionHead(in_dim, hidden, out_dim)
            self.keyframe_proj = ProjectionHead(in_dim, hidden, out_dim)

    def forward(self, batch, encoder):  # type: ignore[override]
        feats = encoder.encode_video(_batch_key(batch, "video", self.task)).mean(dim=1)
        target = _batch_key(batch, "motion", self.task).float()
        pred = self.head(feats, tuple(target.shape[2:5]))
        loss, epe = motion_loss(pred, target, batch.get("motion_mask"), self.kind)  # type: ignore[arg-type]
        metrics = {"motion_loss": loss.detach(), "epe": epe}
        if self.context:
            key = encoder.encode_video(_batch_key(batch, "keyframe", self.task)).mean(dim=1)
            ctx, top1 = info_nce(self.clip_proj(feats), self.keyframe_proj(key), self.temperature)
            loss = loss + self.context_weight * ctx
            metrics |= {"context_loss": ctx.detach(), "top1": top1}
        return loss, metrics
