"""Video and audio backbones: clips or log-mel spectrograms in, one feature vector per input out.

Every backbone is an ``nn.Module`` with an ``out_dim`` attribute. Video backbones map float
``(N, 3, T, H, W)`` to ``(N, out_dim)`` and accept ``T = 1`` (single frames, as the frame-based
tasks feed them); audio backbones map log-mel ``(N, C, n_mels, n_frames)`` to ``(N, out_dim)``.
"""

from __future__ import annotations

import itertools
from typing import Literal

import torch
from torch import nn

VideoBackboneName = Literal["tiny3d", "r3d_18", "r2plus1d_18"]
AudioBackboneName = Literal["tiny2d", "vgg"]

VIDEO_BACKBONES: tuple[str, ...] = ("tiny3d", "r3d_18", "r2plus1d_18")
AUDIO_BACKBONES: tuple[str, ...] = ("tiny2d", "vgg")

# The statistics torchvision's Kinetics-400 video models were trained with; the usual choice
# for video pretraining even from scratch, so a later fine-tune sees the same input scale.
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


def prepare_video(video: torch.Tensor) -> torch.Tensor:
    """Turn a batch of task outputs into backbone inputs, on the tensor's own device.

    Args:
        video: uint8 ``(B, K, T, H, W, 3)``, K inputs per sample in fed order (the task
            output convention).

    Returns:
        float32 ``(B*K, 3, T, H, W)`` scaled to [0, 1] and normalized with the Kinetics
        mean/std; row ``b*K + k`` is input k of sample b.
    """
    if video.dim() != 6 or video.shape[-1] != 3:
        raise ValueError(f"video shape {tuple(video.shape)} must be (B, K, T, H, W, 3)")
    b, k, t, h, w, _ = video.shape
    x = video.reshape(b * k, t, h, w, 3).permute(0, 4, 1, 2, 3).float().div_(255.0)
    mean = torch.tensor(KINETICS_MEAN, device=x.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(KINETICS_STD, device=x.device).view(1, 3, 1, 1, 1)
    return (x - mean) / std


class Backbone(nn.Module):
    """A feature extractor: one ``out_dim``-sized vector per input."""

    out_dim: int


def _conv3d_bn(cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> nn.Sequential:
    padding = (kernel[0] // 2, kernel[1] // 2, kernel[2] // 2)
    return nn.Sequential(
        nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    )


class Tiny3D(Backbone):
    """A four-layer 3D CNN for tests and demos on a couple of CPU cores.

    A 16x112x112 clip costs about 0.1 GMAC (R3D-18 costs ~33). Temporal kernels of 3 with
    padding 1 keep ``T = 1`` valid: the padded frame is zeros, so a single frame is a clip.

    Args:
        width: channels of the first layer; they double each layer, ``out_dim = 8 * width``.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv3d_bn(3, w, (3, 7, 7), (1, 4, 4)),  # 112 -> 28; keep time resolution early
            _conv3d_bn(w, 2 * w, (3, 3, 3), (2, 2, 2)),
            _conv3d_bn(2 * w, 4 * w, (3, 3, 3), (2, 2, 2)),
            _conv3d_bn(4 * w, 8 * w, (3, 3, 3), (2, 2, 2)),
        )
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.out_dim = 8 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x float (N, 3, T, H, W). Returns: (N, out_dim)."""
        return self.pool(self.features(x)).flatten(1)


class _TorchvisionVideo(Backbone):
    """A torchvision video ResNet without its classifier: pooled 512-d features."""

    def __init__(self, name: str) -> None:
        super().__init__()
        from torchvision.models import video as tv_video

        # weights=None: never downloads; pretraining starts from scratch by design.
        net = getattr(tv_video, name)(weights=None)
        self.out_dim = int(net.fc.in_features)
        net.fc = nn.Identity()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x float (N, 3, T, H, W). Returns: (N, 512)."""
        return self.net(x)


def build_video_backbone(name: str = "tiny3d", *, width: int = 16) -> Backbone:
    """A video backbone by name.

    Args:
        name: ``tiny3d`` (small, CPU-friendly), ``r3d_18`` or ``r2plus1d_18`` (torchvision,
            randomly initialized, 512-d).
        width: first-layer channels of ``tiny3d`` (ignored by the ResNets).

    Returns:
        A module mapping float ``(N, 3, T, H, W)`` to ``(N, out_dim)``, with ``out_dim`` set.
    """
    if name == "tiny3d":
        return Tiny3D(width)
    if name in ("r3d_18", "r2plus1d_18"):
        return _TorchvisionVideo(name)
    raise ValueError(f"video backbone {name!r} is unknown; known: {', '.join(VIDEO_BACKBONES)}")


def _conv2d_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class AudioCNN(Backbone):
    """A 2D CNN on log-mel spectrograms, global max pooling over frequency and time.

    ``vgg`` follows the audio subnetwork of Arandjelovic & Zisserman's L3-Net (four blocks of
    two 3x3 conv+BN+ReLU and a 2x2 max pool, 64..512 channels); ``tiny2d`` is four strided
    convs of 16..128 channels for CPU tests. An input BatchNorm standardizes the log-mel scale,
    which depends on the audio stage's settings (dB or natural log, reference level).

    Args:
        name: ``tiny2d`` or ``vgg``.
        in_channels: audio channels C of the log-mel input (1 for mono).
    """

    def __init__(self, name: str = "tiny2d", in_channels: int = 1) -> None:
        super().__init__()
        if name not in AUDIO_BACKBONES:
            raise ValueError(f"audio backbone {name!r} is unknown; known: {', '.join(AUDIO_BACKBONES)}")
        if in_channels < 1:
            raise ValueError(f"in_channels ({in_channels}) must be >= 1")
        self.in_channels = in_channels
        layers: list[nn.Module] = [nn.BatchNorm2d(in_channels)]
        if name == "tiny2d":
            chans = [in_channels, 16, 32, 64, 128]
            layers += [_conv2d_bn(a, b, stride=2) for a, b in itertools.pairwise(chans)]
        else:
            chans = [in_channels, 64, 128, 256, 512]
            for a, b in itertools.pairwise(chans):
                # ceil_mode: a 1-frame-wide map after pooling stays 1 wide instead of vanishing
                layers += [_conv2d_bn(a, b), _conv2d_bn(b, b), nn.MaxPool2d(2, ceil_mode=True)]
        self.features = nn.Sequential(*layers)
        self.out_dim = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x float (N, C, n_mels, n_frames). Returns: (N, out_dim)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"audio shape {tuple(x.shape)} must be (N, {self.in_channels}, n_mels, n_frames)"
            )
        return torch.amax(self.features(x), dim=(2, 3))


def build_audio_backbone(name: str = "tiny2d", *, in_channels: int = 1) -> Backbone:
    """An audio backbone by name (see :class:`AudioCNN`).

    Args:
        name: ``tiny2d`` (128-d) or ``vgg`` (512-d).
        in_channels: audio channels of the log-mel input.

    Returns:
        A module mapping float ``(N, C, n_mels, n_frames)`` to ``(N, out_dim)``.
    """
    return AudioCNN(name, in_channels)
