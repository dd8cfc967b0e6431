"""Backbones, heads, losses and the pretext model: shapes, hand-computed loss values, row
masking, DDP-friendliness, and a learnability smoke test of VCOP on a tiny 3D CNN."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models import (
    AVFusionHead,
    ConcatHead,
    MomentumTarget,
    MotionHead,
    PairwiseOrderHead,
    ProjectionHead,
    SumOfDifferencesHead,
    build_audio_backbone,
    build_pretext_model,
    build_video_backbone,
    byol_loss,
    classification_loss,
    info_nce,
    motion_loss,
    nt_xent,
    prepare_video,
    triplet_loss,
    whiten,
    wmse_loss,
    zero_touching,
)
from models._objectives import (
    AVClassify,
    AVContrastive,
    MotionContext,
    Objective,
    Siamese,
    SiameseLoss,
    Triplet,
)
from models.backbones import KINETICS_MEAN
from models.pretext import PretextModel, probe_task
from pipelines.tasks import AudioRead, ClipRead, Decoded, SamplePlan, Task


def _video(gen: torch.Generator, b: int, k: int, t: int, h: int = 32, w: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (b, k, t, h, w, 3), generator=gen, dtype=torch.uint8)


# --- backbones -------------------------------------------------------------------------


@pytest.mark.parametrize("t,size", [(16, 112), (1, 64)])
def test_tiny3d_maps_clips_and_single_frames_to_features(t: int, size: int) -> None:
    net = build_video_backbone("tiny3d")
    out = net(torch.zeros(2, 3, t, size, size))
    assert out.shape == (2, net.out_dim) == (2, 128)


@pytest.mark.slow  # building 33M parameters takes seconds on two cores
@pytest.mark.parametrize("name", ["r3d_18", "r2plus1d_18"])
def test_torchvision_backbones_have_no_classifier(name: str) -> None:
    net = build_video_backbone(name).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 4, 32, 32)).shape == (1, 512)
        assert net(torch.zeros(1, 3, 1, 32, 32)).shape == (1, 512)  # single frames too


def test_unknown_backbone_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="tiny3d, r3d_18, r2plus1d_18"):
        build_video_backbone("resnet50")
    with pytest.raises(ValueError, match="tiny2d, vgg"):
        build_audio_backbone("wav2vec")


@pytest.mark.parametrize("name,dim", [("tiny2d", 128), ("vgg", 512)])
def test_audio_cnn_on_log_mel(name: str, dim: int) -> None:
    net = build_audio_backbone(name, in_channels=2)
    assert net(torch.randn(3, 2, 40, 25)).shape == (3, dim)
    with pytest.raises(ValueError, match=r"\(N, 2, n_mels, n_frames\)"):
        net(torch.randn(3, 1, 40, 25))


def test_prepare_video_layout_and_normalization() -> None:
    video = torch.zeros(2, 3, 4, 5, 6, 3, dtype=torch.uint8)
    video[1, 2, 3, 4, 5] = torch.tensor([round(m * 255) for m in KINETICS_MEAN], dtype=torch.uint8)
    x = prepare_video(video)
    assert x.shape == (6, 3, 4, 5, 6) and x.dtype == torch.float32
    # sample 1, input 2 -> row 1*3 + 2; the pixel at the mean normalizes to ~0
    assert torch.allclose(x[5, :, 3, 4, 5], torch.zeros(3), atol=0.01)
    assert (x[0] < 0).all()
    with pytest.raises(ValueError, match=r"\(B, K, T, H, W, 3\)"):
        prepare_video(torch.zeros(2, 4, 5, 6, 3, dtype=torch.uint8))


# --- heads -----------------------------------------------------------------------------


def test_pairwise_head_follows_vcop_layout() -> None:
    head = PairwiseOrderHead(8, num_inputs=3, num_classes=6, hidden=16)
    assert head.pairs == [(0, 1), (0, 2), (1, 2)]
    assert head.pair_fc.in_features == 16 and head.classifier.in_features == 3 * 16
    head.eval()
    f = torch.randn(5, 3, 8)
    expected = head.classifier(torch.cat([F.relu(head.pair_fc(torch.cat([f[:, i], f[:, j]], 1)))
                                          for i, j in head.pairs], 1))
    assert torch.allclose(head(f), expected, atol=1e-6)
    diff = PairwiseOrderHead(8, num_inputs=4, num_classes=12, hidden=16, fusion="diff")
    assert diff(torch.randn(5, 4, 8)).shape == (5, 12) and diff.pair_fc.in_features == 8
    with pytest.raises(ValueError, match=r"\(B, 3, 8\)"):
        head(torch.randn(5, 4, 8))


def test_sum_of_differences_matches_its_definition() -> None:
    head = SumOfDifferencesHead(8, num_inputs=4, num_classes=4, hidden=16).eval()
    f = torch.randn(5, 4, 8)
    fused = sum(f[:, j] - f[:, i] for i, j in itertools.combinations(range(4), 2))
    assert torch.allclose(head(f), head.mlp(fused), atol=1e-5)


def test_concat_av_projection_and_motion_heads_shapes() -> None:
    assert ConcatHead(8, 3, 2, hidden=16)(torch.randn(4, 3, 8)).shape == (4, 2)
    assert ConcatHead(8, 1, 4, hidden=0)(torch.randn(4, 1, 8)).shape == (4, 4)
    assert AVFusionHead(8, 6)(torch.randn(4, 8), torch.randn(4, 6)).shape == (4, 2)
    assert ProjectionHead(8, 16, 5)(torch.randn(4, 8)).shape == (4, 5)
    motion = MotionHead(8, num_fields=2, grid=(2, 3, 3), hidden=16)
    assert motion(torch.randn(4, 8), (5, 7, 9)).shape == (4, 2, 5, 7, 9, 2)


# --- losses ----------------------------------------------------------------------------


def test_cross_entropy_leaves_out_unlabelled_rows() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, -5.0]], requires_grad=True)
    loss, acc = classification_loss(logits, torch.tensor([0, -1, 1]))
    expected = (-math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(math.exp(-5) / (math.exp(5) + math.exp(-5)))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6) and acc.item() == 0.5
    loss, acc = classification_loss(logits, torch.tensor([-1, -1, -1]))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def _nt_xent_direct(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """SimCLR's formula written out anchor by anchor."""
    z = F.normalize(torch.cat([z1, z2]), dim=1).tolist()
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        pos = (i + n2 // 2) % n2
        s = [sum(a * b for a, b in zip(z[i], z[k])) / tau for k in range(n2)]
        total += -s[pos] + math.log(sum(math.exp(s[k]) for k in range(n2) if k != i))
    return total / n2


def test_nt_xent_matches_the_direct_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 4, generator=gen), torch.randn(5, 4, generator=gen)
    loss, top1 = nt_xent(torch.stack([z1, z2]), temperature=0.5)
    assert loss.item() == pytest.approx(_nt_xent_direct(z1, z2, 0.5), rel=1e-5)
    _, top1 = nt_xent(torch.stack([z1, z1 + 1e-3]), temperature=0.5)
    assert top1.item() == 1.0


def test_info_nce_matches_the_direct_formula() -> None:
    gen = torch.Generator().manual_seed(1)
    q, k = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    s = F.normalize(q, dim=1) @ F.normalize(k, dim=1).t() / 0.2
    one_way = torch.stack([-s[i, i] + torch.logsumexp(s[i], 0) for i in range(4)]).mean()
    other = torch.stack([-s[i, i] + torch.logsumexp(s[:, i], 0) for i in range(4)]).mean()
    assert info_nce(q, k, 0.2, symmetric=False)[0].item() == pytest.approx(one_way.item(), rel=1e-5)
    assert info_nce(q, k, 0.2)[0].item() == pytest.approx(0.5 * (one_way + other).item(), rel=1e-5)


def test_whitening_gives_identity_covariance() -> None:
    gen = torch.Generator().manual_seed(2)
    mix = torch.randn(6, 6, generator=gen)
    x = torch.randn(200, 6, generator=gen) @ mix + 3.0  # correlated, off-centre
    w = whiten(x)
    cov = (w - w.mean(0)).t() @ (w - w.mean(0)) / (len(w) - 1)
    assert torch.allclose(cov, torch.eye(6), atol=1e-4)
    # W-MSE is zero for identical views, positive otherwise
    assert wmse_loss(torch.stack([x, x])).item() == pytest.approx(0.0, abs=1e-5)
    assert wmse_loss(torch.stack([x, torch.randn(200, 6, generator=gen)])).item() > 0.5


def test_byol_ema_update_math() -> None:
    online = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    target = MomentumTarget([online])
    assert all(not p.requires_grad for p in target.parameters())
    before = [p.clone() for p in target.parameters()]
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    online.train()(torch.randn(8, 3))  # moves the online BatchNorm statistics
    target.update_target([online], momentum=0.9)
    for t, b, o in zip(target.parameters(), before, online.parameters()):
        assert torch.allclose(t, 0.9 * b + 0.1 * o)
    # buffers (BatchNorm statistics) are copied as they are
    assert torch.equal(dict(target.named_buffers())["target.0.1.running_mean"],
                       dict(online.named_buffers())["1.running_mean"])
    target.update_target([online], momentum=0.0)
    assert all(torch.equal(t, o) for t, o in zip(target.parameters(), online.parameters()))
    with pytest.raises(ValueError, match=r"momentum \(1.5\)"):
        target.update_target([online], 1.5)


def test_byol_loss_is_normalized_mse_over_ordered_pairs() -> None:
    p = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    t = torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]]])
    assert byol_loss(p, t).item() == pytest.approx(0.0)  # view 0 predicts view 1's target
    assert byol_loss(p, p).item() == pytest.approx(2.0)  # orthogonal: 2 - 2 cos = 2


def test_triplet_and_motion_losses_by_hand() -> None:
    a, p, n = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert triplet_loss(a, p, n, margin=0.5)[0].item() == 0.0  # gap 1 > margin
    loss, acc = triplet_loss(a, n, p, margin=0.5)
    assert loss.item() == pytest.approx(1.5) and acc.item() == 0.0
    pred = torch.zeros(1, 2, 2, 2)
    target = torch.tensor([[[[3.0, 4.0], [0.0, 0.0]], [[100.0, 0.0], [0.0, 0.0]]]])
    mask = torch.tensor([[[True, True], [False, True]]])
    loss, epe = motion_loss(pred, target, mask, kind="l1")
    assert loss.item() == pytest.approx(7 / 3) and epe.item() == pytest.approx(5 / 3)


def test_zero_touching_gives_every_parameter_a_zero_gradient() -> None:
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    zero_touching(net.parameters()).backward()
    assert all(p.grad is not None and not p.grad.any() for p in net.parameters())


# --- the pretext model -----------------------------------------------------------------


def _vcop_batch(gen: torch.Generator, b: int = 4, t: int = 4) -> dict[str, torch.Tensor]:
    return {"video": _video(gen, b, 3, t), "label": torch.randint(0, 6, (b,), generator=gen)}


def test_probe_reads_the_task_outputs() -> None:
    from pipelines.tasks import get_task

    spec = probe_task(get_task("vcop", num_clips=4, clip_len=2, interval=1))
    assert spec.num_classes == 24 and spec.num_inputs == 4 and spec.shapes["video"][1] == 2


def test_bad_rows_are_left_out_of_loss_and_metrics() -> None:
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(0)
    model = build_pretext_model(["vcop"], task_params={"vcop": {"clip_len": 4}}).eval()
    batch = _vcop_batch(gen, b=5)
    batch["ok"] = torch.tensor([True, False, True, True, False])
    batch["label"][1] = 99  # garbage in a failed row must not even be looked at
    loss, metrics = model(batch, "vcop")
    keep = batch["ok"]
    clean, clean_metrics = model({"video": batch["video"][keep], "label": batch["label"][keep]}, "vcop")
    assert loss.item() == pytest.approx(clean.item(), rel=1e-6)
    assert metrics["n"].item() == 3 and metrics["acc"] == clean_metrics["acc"]


def test_a_batch_without_valid_rows_is_zero_and_touches_every_parameter() -> None:
    gen = torch.Generator().manual_seed(4)
    model = build_pretext_model(["vcop"])
    stats = dict(model.video_backbone.named_buffers())["features.0.1.running_mean"].clone()
    batch = _vcop_batch(gen) | {"ok": torch.zeros(4, dtype=torch.bool)}
    loss, metrics = model(batch, "vcop")
    loss.backward()
    assert loss.item() == 0.0 and metrics["n"].item() == 0
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
    assert torch.equal(dict(model.video_backbone.named_buffers())["features.0.1.running_mean"], stats)


def test_multi_task_loss_is_the_weighted_sum() -> None:
    gen = torch.Generator().manual_seed(5)
    model = build_pretext_model(["vcop", _Renamed("pairs", num_clips=2, clip_len=4)],
                                task_params={"vcop": {"clip_len": 4}}).eval()
    b1 = _vcop_batch(gen)
    b2 = {"video": _video(gen, 4, 2, 4), "label": torch.randint(0, 2, (4,), generator=gen)}
    l1, _ = model(b1, "vcop")
    l2, _ = model(b2, "pairs")
    total, metrics = model.multi_task_loss({"vcop": b1, "pairs": b2}, {"vcop": 0.3, "pairs": 2.0})
    assert total.item() == pytest.approx(0.3 * l1.item() + 2.0 * l2.item(), rel=1e-5)
    assert set(metrics) >= {"vcop/loss", "vcop/acc", "pairs/loss", "loss"}
    with pytest.raises(ValueError, match="no weight for task 'pairs'"):
        model({"pairs": b2}, weights={"vcop": 1.0})
    with pytest.raises(ValueError, match="not in this model"):
        model(b1, "pace")


def _batch_like(shapes: dict[str, tuple[int, ...]], num_classes: int, b: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A random batch of ``b`` rows shaped like a task's outputs."""
    out: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        if key in ("video", "keyframe"):
            out[key] = torch.randint(0, 256, (b, *shape), generator=gen, dtype=torch.uint8)
        elif key == "label":
            out[key] = torch.randint(0, num_classes, (b,), generator=gen) if num_classes else torch.full((b,), -1)
        elif len(shape) == 0:
            out[key] = torch.zeros(b, dtype=torch.int64)
        else:
            out[key] = torch.randn(b, *shape, generator=gen)
    return out


def test_every_registered_task_trains_in_one_multi_task_step() -> None:
    """Decode once, feed many: all tasks of the catalog, one forward, one backward."""
    from pipelines.tasks import get_task, task_names

    gen = torch.Generator().manual_seed(12)
    small = {"vcop": {"clip_len": 2}, "o3n": {"seq_len": 2, "num_elements": 4}, "pace": {"clip_len": 2},
             "arrow_of_time": {"clip_len": 2}, "rho_persistence": {"clip_len": 2},
             "dsm": {"clip_len": 2}, "motion_context": {"clip_len": 2, "motion_len": 2},
             "avts": {"clip_len": 2}}
    tasks = [get_task(n, **small.get(n, {})) for n in task_names()]
    model = build_pretext_model(tasks, head_params={"rho_persistence": {"hidden": 32}})
    batches = {}
    for task in tasks:
        spec = probe_task(task)
        batches[task.name] = _batch_like(spec.shapes, spec.num_classes, 3, gen)
        batches[task.name]["ok"] = torch.tensor([True, True, False])
    loss, metrics = model(batches)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(metrics[f"{t.name}/n"].item() == 2 for t in tasks)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    o3n_head = model.objectives["o3n"].head
    assert isinstance(o3n_head, SumOfDifferencesHead) and o3n_head.num_inputs == 4


def _ddp_steps(model: PretextModel, batches: list[Any], tmp_path) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(model, find_unused_parameters=False)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
        for batch in batches:
            loss, _ = model.multi_task_loss(batch, forward=ddp)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        dist.destroy_process_group()


def test_ddp_needs_no_unused_parameter_search(tmp_path) -> None:
    """Steps that leave a task out (or all rows bad) still reduce every parameter."""
    gen = torch.Generator().manual_seed(6)
    model = build_pretext_model([_Renamed("a", num_clips=2, clip_len=2), _Renamed("b", num_clips=3, clip_len=2)])
    a = {"video": _video(gen, 2, 2, 2), "label": torch.tensor([0, 1])}
    b = {"video": _video(gen, 2, 3, 2), "label": torch.tensor([0, 5]), "ok": torch.tensor([False, False])}
    _ddp_steps(model, [{"a": a}, {"a": a, "b": b}, {"b": b}], tmp_path)


class _Renamed(Task):
    """vcop under another name, built directly (not through the registry)."""

    def __init__(self, name: str, **params: Any) -> None:
        from pipelines.tasks.vcop import VCOP

        self.inner = VCOP(**params)
        self.name = name  # type: ignore[misc]
        self.num_classes = self.inner.num_classes  # type: ignore[misc]

    def plan(self, meta, rng, *, sample_id=0, pool=None):  # type: ignore[override]
        return self.inner.plan(meta, rng, sample_id=sample_id, pool=pool)

    def assemble(self, decoded: Decoded, plan: SamplePlan) -> dict[str, np.ndarray]:
        return self.inner.assemble(decoded, plan)


class _FrameAndSound(Task):
    """A made-up AV task: one frame and one audio window, 2 classes."""

    name = "frame_and_sound"
    num_classes = 2

    def plan(self, meta, rng, *, sample_id=0, pool=None):  # type: ignore[override]
        return SamplePlan(sample_id, self.name, meta.video_id, 0, clips=(ClipRead(meta.uri, meta.video_id, (0,)),),
                          audio=(AudioRead(meta.uri, meta.video_id, 0.0, 1.0),))

    def assemble(self, decoded: Decoded, plan: SamplePlan) -> dict[str, np.ndarray]:
        return {"video": np.stack(decoded.clips), "audio": np.stack(decoded.audio), "label": np.array(plan.label, np.int64)}


def test_an_unlisted_audio_task_gets_the_fusion_head_and_an_audio_backbone() -> None:
    gen = torch.Generator().manual_seed(7)
    model = build_pretext_model([_FrameAndSound()])
    assert isinstance(model.objectives["frame_and_sound"], AVClassify) and model.audio_backbone is not None
    batch = {"video": _video(gen, 3, 1, 1), "audio": torch.randn(3, 1, 1, 40, 20, generator=gen),
             "label": torch.tensor([0, 1, 1]), "ok": torch.tensor([True, True, False])}
    loss, metrics = model(batch, "frame_and_sound")
    loss.backward()
    assert torch.isfinite(loss) and metrics["n"].item() == 2
    assert build_pretext_model(["vcop"]).audio_backbone is None


def _model_with(objective: Objective, audio: bool = False) -> PretextModel:
    video = build_video_backbone("tiny3d", width=4)
    return PretextModel(video, build_audio_backbone("tiny2d") if audio else None, {"t": objective}, {"t": 1.0})


def test_byol_objective_moves_its_target_and_keeps_it_out_of_gradients() -> None:
    gen = torch.Generator().manual_seed(8)
    video = build_video_backbone("tiny3d", width=4)
    siamese = Siamese("t", video, video.out_dim, loss="byol", hidden=16, out_dim=8, momentum=0.5)
    model = PretextModel(video, None, {"t": siamese}, {"t": 1.0})
    assert siamese.target is not None
    with torch.no_grad():
        for p in video.parameters():
            p.add_(0.1)
    old_target = [p.clone() for p in siamese.target.target[0].parameters()]
    loss, _ = model({"video": _video(gen, 4, 2, 2)}, "t")
    loss.backward()
    for t, old, o in zip(siamese.target.target[0].parameters(), old_target, video.parameters()):
        assert torch.allclose(t, 0.5 * old + 0.5 * o, atol=1e-6) and t.grad is None
    # one row: BYOL's BatchNorm projector cannot run, the step is a zero
    assert model({"video": _video(gen, 1, 2, 2)}, "t")[1]["n"].item() == 0


@pytest.mark.parametrize("loss", ["nt_xent", "wmse"])
def test_siamese_alternatives_run(loss: SiameseLoss) -> None:
    gen = torch.Generator().manual_seed(9)
    video = build_video_backbone("tiny3d", width=4)
    model = PretextModel(video, None, {"t": Siamese("t", video, video.out_dim, loss=loss, hidden=16, out_dim=4,
                                                     wmse_eps=0.1)}, {"t": 1.0})
    out, _ = model({"video": _video(gen, 6, 3, 2)}, "t")
    out.backward()
    assert torch.isfinite(out)


def test_triplet_av_contrastive_and_motion_objectives_run() -> None:
    gen = torch.Generator().manual_seed(10)
    model = _model_with(Triplet("t", 32, hidden=16, out_dim=8))
    loss, metrics = model({"video": _video(gen, 3, 3, 2)}, "t")
    assert torch.isfinite(loss) and "acc" in metrics
    model = _model_with(AVContrastive("t", 32, 128, hidden=16, out_dim=8), audio=True)
    batch = {"video": _video(gen, 3, 1, 2), "audio": torch.randn(3, 1, 1, 40, 20, generator=gen)}
    loss, metrics = model(batch, "t")
    assert torch.isfinite(loss) and "top1" in metrics
    model = _model_with(MotionContext("t", 32, num_fields=1, hidden=16, out_dim=8))
    batch = {"video": _video(gen, 3, 1, 2), "keyframe": _video(gen, 3, 1, 1),
             "motion": torch.randn(3, 1, 2, 4, 4, 2, generator=gen)}
    loss, metrics = model(batch, "t")
    loss.backward()
    assert torch.isfinite(loss) and metrics["epe"] > 0 and "top1" in metrics


# --- learnability ----------------------------------------------------------------------


def _bar_clips(gen: torch.Generator, b: int, t: int = 4, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """VCOP batches of a bright bar sweeping left to right across 3 clips, fed shuffled.

    Frame f of the 3*t-frame sequence has the bar at column ``x0 + 2 * f``; the label is the
    index of the fed order among the 6 permutations, as the vcop task defines it.
    """
    perms = list(itertools.permutations(range(3)))
    labels = torch.randint(0, 6, (b,), generator=gen)
    x0 = torch.randint(0, size - 2 * 3 * t - 3, (b,), generator=gen)
    video = torch.randint(0, 40, (b, 3, t, size, size, 3), generator=gen, dtype=torch.uint8)
    for i in range(b):
        for slot, clip in enumerate(perms[int(labels[i])]):
            for f in range(t):
                x = int(x0[i]) + 2 * (clip * t + f)
                video[i, slot, f, :, x:x + 3] = 255
    return video, labels


@pytest.mark.slow
def test_vcop_on_tiny3d_learns_clip_order_above_chance() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(11)
    model = build_pretext_model(["vcop"], task_params={"vcop": {"clip_len": 4}})
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(20):  # unloaded, two cores: ~10 s; accuracy reaches 1.0 by step ~10
        video, labels = _bar_clips(gen, 12)
        loss, _ = model({"video": video, "label": labels}, "vcop")
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    video, labels = _bar_clips(gen, 120)
    with torch.no_grad():
        _, metrics = model({"video": video, "label": labels}, "vcop")
    assert metrics["acc"].item() > 0.5, f"accuracy {metrics['acc'].item():.2f} vs chance 1/6"
