"""Losses of the pretext tasks: classification, contrastive, BYOL, W-MSE, triplet, motion regression.

Every function takes already-selected rows (the model drops rows whose decode failed before
calling them) and returns a scalar tensor. Functions that also report a metric return
``(loss, metric)``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy over the rows whose label is a class; rows labelled -1 are left out.

    Args:
        logits: (N, num_classes).
        labels: int (N,), a class index or -1.

    Returns:
        ``(loss, accuracy)`` over the labelled rows; both 0 (the loss still attached to
        ``logits``) when no row is labelled.
    """
    keep = labels >= 0
    if not bool(keep.any()):
        zero = logits.sum() * 0.0
        return zero, zero.detach()
    logits, labels = logits[keep], labels[keep].long()
    loss = F.cross_entropy(logits, labels)
    acc = (logits.argmax(dim=1) == labels).float().mean()
    return loss, acc.detach()


def info_nce(
    query: torch.Tensor, key: torch.Tensor, temperature: float = 0.1, symmetric: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE with in-batch negatives: row i of ``query`` matches row i of ``key`` only.

    Used across modalities (video i vs audio i, the other N-1 audios are negatives). Both
    sides are L2-normalized, so logits are cosine similarities over the temperature.

    Args:
        query, key: (N, D), N >= 2.
        temperature: softmax temperature tau.
        symmetric: also score key -> query and average the two directions (CLIP-style).

    Returns:
        ``(loss, top1)``: the mean cross-entropy and how often the true pair ranks first.
    """
    if query.shape != key.shape or query.dim() != 2:
        raise ValueError(f"query {tuple(query.shape)} and key {tuple(key.shape)} must both be (N, D)")
    q, k = F.normalize(query, dim=1), F.normalize(key, dim=1)
    logits = q @ k.t() / temperature
    target = torch.arange(q.shape[0], device=q.device)
    loss = F.cross_entropy(logits, target)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(logits.t(), target))
    top1 = (logits.argmax(dim=1) == target).float().mean()
    return loss, top1.detach()


def nt_xent(views: torch.Tensor, temperature: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCLR's NT-Xent over V views of N samples, with in-batch negatives.

    Every one of the V*N embeddings is an anchor; its positives are the other V-1 views of the
    same sample and its negatives all views of the other samples. With V = 2 this is exactly
    Chen et al.'s loss: ``-log exp(s_ip/t) / sum_{k != i} exp(s_ik/t)`` averaged over 2N
    anchors. With V > 2 each positive is scored against the same denominator (less the other
    positives) and the terms are averaged, which reduces to the V = 2 case.

    Args:
        views: (V, N, D), V >= 2, N >= 2 (N = 1 has no negatives).
        temperature: softmax temperature tau.

    Returns:
        ``(loss, top1)``: top1 is how often an anchor's most similar other embedding is one of
        its positives.
    """
    if views.dim() != 3 or views.shape[0] < 2:
        raise ValueError(f"views shape {tuple(views.shape)} must be (V >= 2, N, D)")
    v, n, _ = views.shape
    z = F.normalize(views.reshape(v * n, -1), dim=1)
    sim = z @ z.t() / temperature
    ids = torch.arange(n, device=z.device).repeat(v)  # sample id of each row: 0..N-1, 0..N-1, ...
    self_mask = torch.eye(v * n, dtype=torch.bool, device=z.device)
    pos = (ids[:, None] == ids[None, :]) & ~self_mask
    # Each positive competes with the negatives only (other positives are removed), so V > 2
    # does not make the positives push each other down.
    neg_logits = sim.masked_fill(pos | self_mask, float("-inf"))
    pos_rows, pos_cols = pos.nonzero(as_tuple=True)
    pos_logits = sim[pos_rows, pos_cols]
    denom = torch.logaddexp(pos_logits, torch.logsumexp(neg_logits[pos_rows], dim=1))
    loss = (denom - pos_logits).mean()
    nearest = sim.masked_fill(self_mask, float("-inf")).argmax(dim=1)
    top1 = pos[torch.arange(v * n, device=z.device), nearest].float().mean()
    return loss, top1.detach()


def normalized_mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``2 - 2 cos(x, y)`` averaged over rows: the MSE of L2-normalized vectors (BYOL, W-MSE).

    Args:
        x, y: (N, D).

    Returns:
        Scalar in [0, 4].
    """
    return (2 - 2 * F.cosine_similarity(x, y, dim=-1)).mean()


def whiten(x: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Cholesky whitening of a batch of embeddings (Ermolov et al., W-MSE, ICML 2021).

    With ``C = L L^T`` the (shrunk) covariance of the centred rows, returns ``(x - mu) L^-T``,
    whose covariance is the identity. The batch must have more rows than dimensions for C to
    be full rank; ``eps`` shrinks C towards the identity, ``(1 - eps) C + eps I``, which keeps
    small or degenerate batches finite at the price of exactness.

    Args:
        x: (N, D).
        eps: shrinkage in [0, 1).

    Returns:
        (N, D) whitened rows.
    """
    n, d = x.shape
    if n < 2:
        raise ValueError(f"whitening needs at least 2 rows, got {n}")
    # Cholesky in float64: the factor of a near-singular covariance is badly conditioned.
    xc = (x - x.mean(dim=0, keepdim=True)).double()
    eye = torch.eye(d, dtype=xc.dtype, device=xc.device)
    cov = (1 - eps) * (xc.t() @ xc) / (n - 1) + eps * eye
    chol = torch.linalg.cholesky(cov)
    # Solve L W = xc^T instead of forming L^-1: same result, better numerics.
    white = torch.linalg.solve_triangular(chol, xc.t(), upper=False).t()
    return white.to(x.dtype)


def wmse_loss(views: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """W-MSE: whiten each view's embeddings over the batch, then the normalized MSE between
    every pair of views of the same sample (Ermolov et al., ICML 2021).

    The reference implementation also whitens random sub-batches several times per step
    (``w_iter``/``w_size``); here the whole batch is whitened once, which keeps the loss
    deterministic and needs no random generator.

    Args:
        views: (V, N, D), V >= 2, N > D for an exact whitening.
        eps: covariance shrinkage, see :func:`whiten`.

    Returns:
        Scalar, averaged over the V(V-1)/2 pairs.
    """
    if views.dim() != 3 or views.shape[0] < 2:
        raise ValueError(f"views shape {tuple(views.shape)} must be (V >= 2, N, D)")
    white = [whiten(v, eps) for v in views]
    pairs = [(i, j) for i in range(len(white)) for j in range(i + 1, len(white))]
    return torch.stack([normalized_mse(white[i], white[j]) for i, j in pairs]).mean()


def triplet_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triplet margin loss on cosine distances: ``max(0, d(a, p) - d(a, n) + margin)``.

    Args:
        anchor, positive, negative: (N, D).
        margin: required gap between the two distances (cosine distance is in [0, 2]).

    Returns:
        ``(loss, accuracy)``: accuracy is how often the positive is nearer than the negative.
    """
    d_pos = 1 - F.cosine_similarity(anchor, positive, dim=-1)
    d_neg = 1 - F.cosine_similarity(anchor, negative, dim=-1)
    loss = F.relu(d_pos - d_neg + margin).mean()
    return loss, (d_pos < d_neg).float().mean().detach()


def motion_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    kind: Literal["smooth_l1", "l1", "mse"] = "smooth_l1",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Regression of dense motion fields, averaged over the valid cells only.

    Args:
        pred, target: (..., 2) motion vectors in pixels per frame.
        mask: bool or 0/1 of ``target.shape[:-1]`` (e.g. macroblocks that carry a vector);
            None: every cell counts.
        kind: ``smooth_l1`` (robust to the large outliers of block matching), ``l1`` or ``mse``.

    Returns:
        ``(loss, epe)``: epe is the mean end-point error (Euclidean, pixels) on valid cells.
    """
    if pred.shape != target.shape or pred.shape[-1] != 2:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must match, (..., 2)")
    fns = {"smooth_l1": F.smooth_l1_loss, "l1": F.l1_loss, "mse": F.mse_loss}
    if kind not in fns:
        raise ValueError(f"kind ({kind!r}) must be one of {', '.join(map(repr, fns))}")
    per_cell = fns[kind](pred, target, reduction="none").sum(dim=-1)
    epe = (pred - target).norm(dim=-1)
    weight = torch.ones_like(per_cell) if mask is None else mask.to(per_cell.dtype)
    count = weight.sum().clamp_min(1.0)
    return (per_cell * weight).sum() / count, ((epe * weight).sum() / count).detach()


class MomentumTarget(nn.Module):
    """The target network of BYOL: a frozen copy of online modules, moved by an EMA.

    ``update_target(m)`` sets every target parameter ``t <- m * t + (1 - m) * o`` and copies
    buffers (BatchNorm statistics) as they are. Target parameters never require grad, so DDP
    neither reduces nor waits for them; every rank applies the same update to the same online
    weights, so the copies stay identical without communication.

    Args:
        online: the modules to follow, in order (e.g. backbone, projector).
    """

    def __init__(self, online: Sequence[nn.Module]) -> None:
        super().__init__()
        self.target = nn.ModuleList(copy.deepcopy(m) for m in online)
        for p in self.target.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update_target(self, online: Sequence[nn.Module], momentum: float) -> None:
        """EMA step towards ``online`` (the same modules, in the order given at construction).

        Args:
            online: the online modules.
            momentum: m in [0, 1]; 1 keeps the target, 0 copies the online weights.
        """
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum ({momentum}) must be in [0, 1]")
        for tgt, src in zip(self.target, online):
            for t, o in zip(tgt.parameters(), src.parameters()):
                t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
            for tb, ob in zip(tgt.buffers(), src.buffers()):
                tb.copy_(ob)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The target modules applied in sequence, without gradient."""
        for m in self.target:
            x = m(x)
        return x


def byol_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BYOL over V views: every view's online prediction regresses every other view's target.

    Args:
        predictions: (V, N, D) online predictor outputs.
        targets: (V, N, D) target projections (no gradient flows into them).

    Returns:
        Scalar: normalized MSE averaged over the V(V-1) ordered pairs (V = 2 is the paper's
        symmetrized loss divided by 2).
    """
    if predictions.shape != targets.shape or predictions.shape[0] < 2:
        raise ValueError(
            f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} must be (V >= 2, N, D)"
        )
    v = predictions.shape[0]
    terms = [normalized_mse(predictions[i], targets[j].detach()) for i in range(v) for j in range(v) if i != j]
    return torch.stack(terms).mean()


def zero_touching(params: Iterable[nn.Parameter]) -> torch.Tensor:
    """A zero that depends on every trainable parameter.

    Added to a loss, it gives each parameter a (zero) gradient even when a step did not use
    it (a head of a task absent from this batch, a batch whose decodes all failed), so DDP's
    gradient all-reduce runs on every rank in step without ``find_unused_parameters``.
    """
    terms = [p.sum() * 0.0 for p in params if p.requires_grad]
    if not terms:
        raise ValueError("no trainable parameters to touch")
    return torch.stack(terms).sum()
