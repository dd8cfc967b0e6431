"""OPN: order prediction (Lee, Huang, Singh and Yang, "Unsupervised Representation Learning
by Sorting Sequences", ICCV 2017)."""

from __future__ import annotations

import itertools

import numpy as np

from pipelines.tasks import register
from pipelines.tasks._arrays import crop_at, crop_size, frames_as_inputs, label_array
from pipelines.tasks._sampling import (
    Sampled,
    SampledTask,
    check_short_video,
    motion_weighted_start,
)
from pipelines.tasks.base import ClipRead, Decoded, SamplePlan, ShortVideoPolicy, VideoPool
from pipelines.tasks.vcop import clamp_frames
from workers.meta import VideoMeta


def order_classes(n: int) -> tuple[list[tuple[int, ...]], dict[tuple[int, ...], int]]:
    """The n!/2 order classes of n frames: each order merged with its reverse.

    Returns the class representatives (the one of each pair that comes first in
    ``itertools.permutations`` order) and the class of every order. For n = 4: 12 classes;
    (0,1,2,3) and (3,2,1,0) are class 0, (0,1,3,2) and (2,3,1,0) class 1.
    """
    classes: list[tuple[int, ...]] = []
    of: dict[tuple[int, ...], int] = {}
    for p in itertools.permutations(range(n)):
        if p[::-1] in of:
            of[p] = of[p[::-1]]
        else:
            of[p] = len(classes)
            classes.append(p)
    return classes, of


@register
class OPN(SampledTask):
    """Sort a shuffled sequence: ``num_frames`` frames (sorted, from a window of ``window``
    frames drawn with probability proportional to its motion, uniform without
    ``meta.motion``) are fed in one of the n! orders, uniformly; the label is the order's
    class, an order and its reverse being one class (forward and backward are equally
    plausible motions): 4 frames give 24 orders and 12 classes.

    Per frame, decided in the plan and applied by ``assemble``:
    - spatial jitter: each frame is cropped to ``crop_fraction`` of each side at its own
      offset (fractions of the free room, so any decoded size works), so the frames cannot be
      sorted by aligning their borders;
    - channel splitting: one RGB channel per frame, copied to all three, so low-level
      chromatic cues cannot sort them.

    Example: frames (40, 47, 52, 60), order (2, 0, 3, 1) -> fed (52, 40, 60, 47); its reverse
    (1, 3, 0, 2) comes first in permutation order and names class 9, so the label is 9
    (``label_names()[9] == "1302/2031"``).
    With channels (1, 0, 2, 2), the first fed frame is its G channel as grey.

    Output: ``video`` uint8 (num_frames, 1, h, w, 3) in fed order, each frame one input of a
    shared 2D backbone, h = round(crop_fraction * H) (98 for H = 112); ``label`` int64.
    """

    name = "opn"

    def __init__(
        self,
        num_frames: int = 4,
        window: int = 30,
        crop_fraction: float = 0.875,
        channel_split: bool = True,
        spatial_jitter: bool = True,
        short_video: ShortVideoPolicy = "skip",
    ) -> None:
        if not 3 <= num_frames <= 6:
            raise ValueError(f"num_frames ({num_frames}) must be in [3, 6]")
        if window < num_frames:
            raise ValueError(f"window ({window}) must be >= num_frames ({num_frames})")
        if not 0.0 < crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction ({crop_fraction}) must be in (0, 1]")
        self.num_frames, self.window, self.crop_fraction = num_frames, window, crop_fraction
        self.channel_split, self.spatial_jitter = channel_split, spatial_jitter
        self.short_video = check_short_video(short_video)
        self.need = num_frames
        self.orders = list(itertools.permutations(range(num_frames)))
        self.classes, self.class_of = order_classes(num_frames)
        self.num_classes = len(self.classes)

    def sample(
        self, meta: VideoMeta, rng: np.random.Generator, pool: VideoPool | None
    ) -> Sampled | None:
        n = meta.num_frames
        span = max(min(self.window, n), self.num_frames)
        start = motion_weighted_start(meta, span, rng)
        frames = start + np.sort(rng.choice(span, size=self.num_frames, replace=False))
        order = self.orders[int(rng.integers(len(self.orders)))]
        k = self.num_frames
        crops = rng.random((k, 2)) if self.spatial_jitter else np.full((k, 2), 0.5)
        channels = rng.integers(0, 3, size=k) if self.channel_split else None
        return Sampled(
            label=self.class_of[order],
            clips=(ClipRead(meta.uri, meta.video_id, clamp_frames(frames[list(order)], n)),),
            params={
                "order": order,
                "crops": tuple((float(y), float(x)) for y, x in crops),
                "channels": None if channels is None else tuple(int(c) for c in channels),
            },
        )

    def assemble(self, decoded: Decoded, plan: SamplePlan) -> dict[str, np.ndarray]:
        frames = decoded.clips[0]
        size = crop_size(frames.shape[1], frames.shape[2], self.crop_fraction)
        crops = plan.params["crops"]
        out = np.stack([crop_at(f, fy, fx, size) for f, (fy, fx) in zip(frames, crops)])
        channels = plan.params["channels"]
        if channels is not None:
            # frame i keeps channel channels[i] in all three: (k, h, w, 1) -> (k, h, w, 3)
            picked = np.take_along_axis(out, np.array(channels)[:, None, None, None], axis=3)
            out = np.repeat(picked, 3, axis=3)
        return {"video": frames_as_inputs(out), "label": label_array(plan.label)}

    def label_names(self) -> list[str]:
        return ["".join(map(str, p)) + "/" + "".join(map(str, p[::-1])) for p in self.classes]
