"""Frame helpers shared by the decoders: index bookkeeping, display rotation, and the
FFmpeg filter graph that resizes exactly as the ``ffmpeg`` command line does."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import av
import av.filter
import numpy as np

# The filters ffmpeg's command line inserts to show a rotated stream upright
# (clockwise degrees, as VideoMeta.rotation stores them).
TURN_FILTERS: dict[int, tuple[tuple[str, str], ...]] = {
    0: (),
    90: (("transpose", "clock"),),
    180: (("hflip", ""), ("vflip", "")),
    270: (("transpose", "cclock"),),
}


def wanted_slots(indices: Sequence[int]) -> list[tuple[int, list[int]]]:
    """Each distinct index, ascending, with the output positions that want it.

    Example: [9, 2, 9, 5] -> [(2, [1]), (5, [3]), (9, [0, 2])]: decode 2, 5, 9 once each.
    """
    slots: dict[int, list[int]] = {}
    for pos, index in enumerate(indices):
        slots.setdefault(index, []).append(pos)
    return sorted(slots.items())


def rotate(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Turn an (H, W, 3) image ``rotation`` degrees clockwise (a view; pixels are not resampled).

    Args:
        rgb: the image as decoded (coded orientation).
        rotation: 0, 90, 180 or 270 (clockwise, as ``VideoMeta.rotation``).
    Returns:
        The image in displayed orientation.
    """
    if rotation not in TURN_FILTERS:
        raise ValueError(f"rotation ({rotation}) must be one of 0, 90, 180, 270")
    return np.rot90(rgb, k=-(rotation // 90)) if rotation else rgb


def _props(frame: av.VideoFrame) -> tuple[int, int, str, int, int]:
    return (frame.width, frame.height, frame.format.name, int(frame.colorspace), int(frame.color_range))


class ResizeGraph:
    """``buffer -> [turn] -> scale=W:H:flags=F -> format=rgb24 -> buffersink``.

    The same filters, in the same order, as ``ffmpeg -i X -vf scale=W:H:flags=F -pix_fmt
    rgb24`` (whose automatic rotation runs first), so the pixels are the command line's.
    swscale's direct ``sws_scale_frame`` (``VideoFrame.reformat``) differs from the scale
    filter by a few levels once resizing, because the filter also passes the chroma siting.

    Args:
        frame: a frame of the stream (size, pixel format and colour tags are taken from it).
        time_base: the stream's time base.
        size: output (height, width), displayed orientation.
        rotation: clockwise degrees to turn before scaling.
        interpolation: swscale flags, e.g. ``"bilinear"``, ``"bicubic"``, ``"area"``.
        threads: filter threads (0: FFmpeg's choice).
    """

    def __init__(
        self,
        frame: av.VideoFrame,
        time_base: Fraction | None,
        size: tuple[int, int],
        rotation: int,
        interpolation: str,
        threads: int = 0,
    ) -> None:
        if rotation not in TURN_FILTERS:
            raise ValueError(f"rotation ({rotation}) must be one of 0, 90, 180, 270")
        self._props = _props(frame)
        height, width = size
        graph = av.filter.Graph()
        graph.threads = threads
        buffer = graph.add(
            "buffer",
            f"video_size={frame.width}x{frame.height}:pix_fmt={frame.format.name}"
            f":time_base={time_base or Fraction(1, 1000)}:pixel_aspect=1/1"
            f":colorspace={int(frame.colorspace)}:range={int(frame.color_range)}",
        )
        nodes = [buffer]
        nodes += [graph.add(name, args) for name, args in TURN_FILTERS[rotation]]
        nodes.append(graph.add("scale", f"w={width}:h={height}:flags={interpolation}"))
        nodes.append(graph.add("format", "pix_fmts=rgb24"))
        nodes.append(graph.add("buffersink"))
        graph.link_nodes(*nodes).configure()
        self._graph = graph

    def accepts(self, frame: av.VideoFrame) -> bool:
        """Whether ``frame`` has the size, pixel format and colour tags the graph was built for."""
        return _props(frame) == self._props

    def convert(self, frame: av.VideoFrame) -> np.ndarray:
        """uint8 (H, W, 3) RGB of ``frame``, turned and resized."""
        self._graph.vpush(frame)
        return self._graph.vpull().to_ndarray()
