"""The baseline users would write instead: a PyTorch ``DataLoader`` whose workers decode each
sample with PyAV the way PyTorchVideo's ``EncodedVideoPyAV.get_clip`` does.

Per sample: open the container, seek (backward, to the keyframe before) to the start time of
the sample's span minus PyTorchVideo's 1024-tick margin, decode forward and keep the frames
whose pts lie in [start, end), convert every kept frame to an RGB array (``to_rgb()``), then
pick the planned frames and resize them in torch (bilinear ``interpolate``), as
PyTorchVideo's transforms (``UniformTemporalSubsample``, ``ShortSideScale``) do afterwards.
A multi-clip plan (VCOP) is one span from its first to its last frame, decoded once.

Where this is kinder to the baseline than PyTorchVideo itself: the file is opened in place
(PyTorchVideo reads it into a ``BytesIO`` first), audio is not decoded, and only the planned
frames are turned into float32 for the resize (PyTorchVideo turns the whole span into a
float32 tensor). PyAV's decoder threading is left at its defaults, as PyTorchVideo does.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import av
import numpy as np
import torch
import torch.nn.functional as F

from pipelines.planner import Visit

SEEK_MARGIN = 1024  # pts ticks, PyTorchVideo's _pyav_decode_stream margin


def secs_to_pts(secs: Fraction, time_base: Fraction, start_pts: int) -> int:
    """PyTorchVideo's ``secs_to_pts`` with ``round_mode="ceil"``."""
    return math.ceil(secs / time_base) + start_pts


def decode_span(uri: str, first: int, last: int) -> tuple[list[np.ndarray], int]:
    """RGB frames of presentation indices [first, last] and the number of frames decoded.

    Indices become seconds (``i / fps``) as a time-based loader sees them, in exact
    fractions: with floats, 100 / 28 fps in a 1/14336 time base lands one tick past frame
    100's pts and the span loses its first frame (PyTorchVideo's docstring warns of this).
    """
    with av.open(uri) as container:
        stream = container.streams.video[0]
        tb, start = stream.time_base or Fraction(1, 1000), stream.start_time or 0
        fps = stream.average_rate or stream.guessed_rate or Fraction(30)
        lo = secs_to_pts(Fraction(first) / fps, tb, start)
        hi = secs_to_pts(Fraction(last + 1) / fps, tb, start)
        container.seek(max(lo - SEEK_MARGIN, 0), any_frame=False, backward=True, stream=stream)
        kept: dict[int, Any] = {}
        decoded = 0
        for frame in container.decode(video=0):
            decoded += 1
            if frame.pts is None:  # PyTorchVideo cannot place such a frame in time either
                continue
            if lo <= frame.pts < hi:
                kept[frame.pts] = frame
            elif frame.pts >= hi:
                break
        # Every frame of the span becomes RGB, wanted or not: the community loaders convert
        # the decoded window first and subsample afterwards.
        return [kept[p].to_rgb().to_ndarray() for p in sorted(kept)], decoded


def resize_clip(frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> uint8 (T, h, w, 3), bilinear, through float32 CTHW."""
    clip = torch.from_numpy(frames).permute(3, 0, 1, 2).to(torch.float32)  # C, T, H, W
    out = F.interpolate(clip, size=size, mode="bilinear", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 3, 0).contiguous()


class PyAVClipDataset(torch.utils.data.Dataset):
    """Map-style dataset over planned visits; item i is visit i decoded as described above.

    Returns ``{"video": uint8 (K, T, h, w, 3), "label": int64, "decoded": int64}`` where
    ``decoded`` counts every frame the decoder produced for the sample (for the
    decoded-per-delivered ratio).
    """

    def __init__(self, visits: list[Visit], size: tuple[int, int]) -> None:
        self.items = [(v.plans[0], v.metas) for v in visits]
        self.size = size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        plan, metas = self.items[i]
        meta = metas[plan.video_id]
        first = min(min(r.frames) for r in plan.clips)
        last = max(max(r.frames) for r in plan.clips)
        span, decoded = decode_span(meta.uri, first, last)
        clips = []
        for read in plan.clips:
            # A span shorter than asked (timestamps off the constant grid) repeats its last frame.
            pick = [min(f - first, len(span) - 1) for f in read.frames]
            clips.append(resize_clip(np.stack([span[j] for j in pick]), self.size))
        return {"video": torch.stack(clips), "label": torch.tensor(plan.label),
                "decoded": torch.tensor(decoded)}
