"""Pretext heads: what sits on the shared backbone's per-input features for each task.

Siamese heads take ``(B, K, D)``, the features of a sample's K inputs in fed order; the AV
head takes a video and an audio feature; projection and motion heads take ``(N, D)``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

PairFusion = Literal["concat", "diff"]


def _pairs(k: int) -> list[tuple[int, int]]:
    """Index pairs i < j of K inputs. Example: K = 3 -> (0, 1), (0, 2), (1, 2)."""
    return [(i, j) for i in range(k) for j in range(i + 1, k)]


def _check_features(f: torch.Tensor, k: int, d: int) -> None:
    if f.dim() != 3 or f.shape[1] != k or f.shape[2] != d:
        raise ValueError(f"features shape {tuple(f.shape)} must be (B, {k}, {d})")


class PairwiseOrderHead(nn.Module):
    """Order classification from pairwise features, as OPN (Lee et al. ICCV'17) and VCOP
    (Xu et al. CVPR'19) build it.

    For every pair i < j of the K inputs, the pair feature (``concat``: ``[f_i, f_j]``, the
    papers' choice; ``diff``: ``f_j - f_i``, an order-sensitive and half-size alternative)
    goes through one shared FC + ReLU (VCOP's fc7); the K(K-1)/2 outputs are concatenated,
    dropped out and mapped to the classes (fc8).

    Args:
        in_dim: backbone feature size D.
        num_inputs: K.
        num_classes: e.g. K! for VCOP, K!/2 for OPN.
        hidden: fc7 width (512 in both papers).
        fusion: ``concat`` or ``diff``.
        dropout: before the classifier (0.5 in VCOP).
    """

    def __init__(
        self,
        in_dim: int,
        num_inputs: int,
        num_classes: int,
        hidden: int = 512,
        fusion: PairFusion = "concat",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if num_inputs < 2 or num_classes < 2:
            raise ValueError(f"num_inputs ({num_inputs}) and num_classes ({num_classes}) must be >= 2")
        if fusion not in ("concat", "diff"):
            raise ValueError(f"fusion ({fusion!r}) must be 'concat' or 'diff'")
        self.in_dim, self.num_inputs, self.fusion = in_dim, num_inputs, fusion
        self.pairs = _pairs(num_inputs)
        self.pair_fc = nn.Linear(2 * in_dim if fusion == "concat" else in_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(len(self.pairs) * hidden, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Args: features (B, K, D). Returns: logits (B, num_classes)."""
        _check_features(features, self.num_inputs, self.in_dim)
        i = torch.tensor([p[0] for p in self.pairs], device=features.device)
        j = torch.tensor([p[1] for p in self.pairs], device=features.device)
        fi, fj = features[:, i], features[:, j]  # (B, P, D)
        pair = torch.cat([fi, fj], dim=2) if self.fusion == "concat" else fj - fi
        h = F.relu(self.pair_fc(pair)).flatten(1)  # (B, P * hidden), pairs in (i, j) order
        return self.classifier(self.dropout(h))


class SumOfDifferencesHead(nn.Module):
    """O3N's sum-of-differences fusion (Fernando et al. CVPR'17): ``sum_{i<j} (f_j - f_i)``,
    then an MLP to the classes.

    The sum equals ``sum_k (2k - K + 1) f_k``: a position-weighted mix, so which input is odd
    stays visible while the fused vector keeps the size D whatever K is.

    Args:
        in_dim: D.
        num_inputs: K (N + 1 in the paper).
        num_classes: K for O3N (the odd input's index).
        hidden: MLP width.
        dropout: before the classifier.
    """

    def __init__(self, in_dim: int, num_inputs: int, num_classes: int, hidden: int = 512, dropout: float = 0.5) -> None:
        super().__init__()
        if num_inputs < 2:
            raise ValueError(f"num_inputs ({num_inputs}) must be >= 2")
        self.in_dim, self.num_inputs = in_dim, num_inputs
        weights = torch.tensor([2.0 * k - num_inputs + 1 for k in range(num_inputs)])
        self.register_buffer("position_weights", weights, persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Args: features (B, K, D). Returns: logits (B, num_classes)."""
        _check_features(features, self.num_inputs, self.in_dim)
        fused = torch.einsum("bkd,k->bd", features, self.position_weights)
        return self.mlp(fused)


class ConcatHead(nn.Module):
    """The generic K-input head: concatenate the K features in fed order, MLP to the classes.

    Shuffle & Learn's triplet head (Misra et al. ECCV'16: fc7 of three frames concatenated,
    fc8 to 2 classes); with K = 1 a plain clip classifier (arrow of time, pace).

    Args:
        in_dim: D.
        num_inputs: K >= 1.
        num_classes: >= 2.
        hidden: MLP width; 0 for a single linear layer.
        dropout: before the classifier.
    """

    def __init__(self, in_dim: int, num_inputs: int, num_classes: int, hidden: int = 512, dropout: float = 0.5) -> None:
        super().__init__()
        if num_inputs < 1 or num_classes < 2:
            raise ValueError(f"num_inputs ({num_inputs}) must be >= 1 and num_classes ({num_classes}) >= 2")
        self.in_dim, self.num_inputs = in_dim, num_inputs
        width = in_dim * num_inputs
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden:
            layers = [nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = hidden
        self.mlp = nn.Sequential(*layers, nn.Linear(width, num_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Args: features (B, K, D). Returns: logits (B, num_classes)."""
        _check_features(features, self.num_inputs, self.in_dim)
        return self.mlp(features.flatten(1))


class AVFusionHead(nn.Module):
    """Audio-visual correspondence: L3-Net's fusion (Arandjelovic & Zisserman ICCV'17), video
    and audio features concatenated, FC 128 + ReLU, FC to the classes (2: match or not).

    Args:
        video_dim, audio_dim: feature sizes of the two backbones.
        num_classes: 2 for AVC and AVTS.
        hidden: 128 in the paper.
    """

    def __init__(self, video_dim: int, audio_dim: int, num_classes: int = 2, hidden: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(video_dim + audio_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes)
        )

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Args: video (B, Dv), audio (B, Da). Returns: logits (B, num_classes)."""
        return self.mlp(torch.cat([video, audio], dim=1))


class ProjectionHead(nn.Module):
    """The MLP of SimCLR/BYOL: Linear, BatchNorm, ReLU, Linear (BYOL's predictor too).

    Args:
        in_dim: input size.
        hidden: hidden width (4096 in BYOL, 2048 in SimCLR; smaller suits small backbones).
        out_dim: embedding size (256 in BYOL, 128 in SimCLR).
        batch_norm: False drops the BatchNorm (a batch of one row cannot be normalized).
    """

    def __init__(self, in_dim: int, hidden: int = 2048, out_dim: int = 128, batch_norm: bool = True) -> None:
        super().__init__()
        norm: nn.Module = nn.BatchNorm1d(hidden) if batch_norm else nn.Identity()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), norm, nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (N, in_dim). Returns: (N, out_dim)."""
        return self.net(x)


class MotionHead(nn.Module):
    """Dense motion-field regression from pooled clip features (motion_context).

    The features are mapped to a coarse field of ``grid = (t, h, w)`` cells and two channels
    (dx, dy), then trilinearly resized to the target's (T, h, w). Predicting a fixed coarse
    grid keeps the parameter count independent of the motion grid the decoder produces
    (macroblock grids differ with the frame size), so one head serves any target size.

    Args:
        in_dim: D.
        num_fields: M, motion windows per sample.
        grid: coarse (t, h, w) of the prediction.
        hidden: MLP width.
    """

    def __init__(
        self, in_dim: int, num_fields: int = 1, grid: tuple[int, int, int] = (4, 7, 7), hidden: int = 512
    ) -> None:
        super().__init__()
        if num_fields < 1 or min(grid) < 1:
            raise ValueError(f"num_fields ({num_fields}) and grid {grid} must be >= 1")
        self.num_fields, self.grid = num_fields, grid
        cells = num_fields * 2 * grid[0] * grid[1] * grid[2]
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, cells))

    def forward(self, features: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
        """Args: features (B, D); size: the target's (T, h, w).

        Returns:
            (B, M, T, h, w, 2) motion vectors, the layout of the task's ``motion`` output.
        """
        b = features.shape[0]
        coarse = self.mlp(features).view(b * self.num_fields, 2, *self.grid)
        field = F.interpolate(coarse, size=size, mode="trilinear", align_corners=False)
        return field.view(b, self.num_fields, 2, *size).permute(0, 1, 3, 4, 5, 2)
