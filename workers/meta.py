"""VideoMeta: what the manifest knows about one video (one Parquet row)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def video_id_of(uri: str) -> int:
    """Stable int64 id of a uri (first 8 bytes of its SHA-1, sign bit cleared).

    The same uri gives the same id on every machine and run, so ids in metrics,
    checkpoints and quarantine files can be joined across runs.
    """
    digest = hashlib.sha1(uri.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass(frozen=True)
class VideoMeta:
    """One manifest row. Field names are the manifest's column names.

    ``width``/``height`` are the displayed size (after rotation); ``num_frames`` is
    counted from packets; ``keyframes`` are frame indices (presentation order) of the
    frames a decoder can start from; ``motion`` is the per-frame mean motion-vector
    magnitude when the manifest was indexed with ``--motion`` (else empty); ``pix_fmt`` is
    FFmpeg's pixel format of the decoded frames (``yuv420p10le`` is 10-bit 4:2:0, which
    NVDEC cannot decode for H.264, so a GPU backend routes it to PyAV).
    """

    video_id: int
    uri: str
    size_bytes: int = 0
    container: str = ""
    video_codec: str = ""
    width: int = 0
    height: int = 0
    rotation: int = 0
    avg_fps: float = 0.0
    num_frames: int = 0
    duration_s: float = 0.0
    keyframes: tuple[int, ...] = ()
    is_vfr: bool = False
    has_audio: bool = False
    audio_codec: str = ""
    audio_sample_rate: int = 0
    audio_channels: int = 0
    audio_duration_s: float = 0.0
    label: str = ""
    label_id: int = -1
    status: str = "ok"
    error: str = ""
    motion: tuple[float, ...] = field(default=(), repr=False)
    pix_fmt: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> VideoMeta:
        """Build from a manifest row (a dict from pyarrow's ``to_pylist``); unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in row.items() if k in names and v is not None}
        for k in ("keyframes", "motion"):
            if k in kw:
                kw[k] = tuple(kw[k])
        return cls(**kw)

    def to_row(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["keyframes"] = list(self.keyframes)
        row["motion"] = list(self.motion)
        return row
