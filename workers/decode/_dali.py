"""``backend="dali"``: the VideoReader of one video, decoded by NVIDIA DALI.

    with open_video(uri, backend="dali", device="gpu") as r:
        r.frames([0, 8, 16], size=(112, 112))         # uint8 numpy (3, 112, 112, 3)
        r.frames_torch([0, 8, 16], size=(112, 112))   # the same, a CUDA tensor (no host copy)
        r.audio(0.0, 1.0, sample_rate=16000)          # PyAV: DALI demuxes no container audio

``device="gpu"`` decodes H.264, HEVC, AV1, MPEG-4, VP8/9 and MJPEG on NVDEC; ``device="cpu"``
decodes VP8, VP9 and MJPEG (DALI's CPU decoder has no other codec). Other codecs follow
``codec_policy`` (see :mod:`workers.decode._dali_batch`). A reader is a batch decoder of one
video; many videos at once go through :class:`DALIBatchDecoder`, as the video stage does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np

from workers.decode._dali_batch import (
    CPU_CODECS,
    DALI_GPU_PSNR_DB,
    DALI_PSNR_DB,
    DALI_RESIZED_PSNR_DB,
    GPU_CODECS,
    ClipRequest,
    CodecPolicy,
    DALIBatchDecoder,
    Device,
    psnr_bound,
    read_encoded,
    supports,
)
from workers.errors import CorruptMediaError
from workers.meta import VideoMeta


class DALIReader:
    """One video decoded by DALI; frames in displayed orientation, RGB uint8.

    Args:
        uri: local path, ``file://`` or ``pyarrow.fs`` URI.
        device: ``"cpu"`` or ``"gpu"``.
        meta: the manifest row; probed with PyAV when None (frame count, codec, rotation).
        codec_policy: ``"fallback"`` (PyAV decodes what DALI cannot; see ``fallbacks``)
            or ``"error"`` (``frames`` raises UnsupportedCodecError).
        device_id: CUDA device for ``"gpu"``.
        num_threads: DALI CPU threads.
        max_pixels: refuse videos with more pixels per frame (None: no bound).
        decoder: share a batch decoder (and its built pipelines) between readers.
    """

    def __init__(
        self,
        uri: str,
        *,
        device: Device = "cpu",
        meta: VideoMeta | None = None,
        codec_policy: CodecPolicy = "fallback",
        device_id: int = 0,
        num_threads: int | None = None,
        max_pixels: int | None = None,
        decoder: DALIBatchDecoder | None = None,
    ) -> None:
        if meta is None:
            from workers.probe import probe

            meta = probe(uri, max_pixels=max_pixels)
        self.uri = uri
        self._meta = meta
        self._decoder = decoder or DALIBatchDecoder(
            device, batch_size=1, num_threads=num_threads, device_id=device_id,
            codec_policy=codec_policy, max_pixels=max_pixels,
        )
        self._encoded: np.ndarray | None = None
        self._pyav: Any = None

    @property
    def meta(self) -> VideoMeta:
        return self._meta

    @property
    def device(self) -> Device:
        return self._decoder.device

    @property
    def fallbacks(self) -> int:
        """How many ``frames`` calls PyAV served under the ``fallback`` policy."""
        return self._decoder.fallbacks

    def frames(self, indices: Sequence[int], size: tuple[int, int] | None = None) -> np.ndarray:
        """Frames ``indices`` (presentation order) as uint8 (N, H, W, 3) RGB.

        Args:
            indices: frame indices in ``[0, meta.num_frames)``, any order, repeats allowed.
            size: output (H, W); None keeps the displayed size.
        Returns:
            host array, in displayed orientation.
        Raises:
            CorruptMediaError: the file cannot be decoded (UnsupportedCodecError with
                ``codec_policy="error"`` and a codec DALI lacks on this device).
            ValueError: an index out of range.
        """
        return self._one(self._decoder.decode([self._request(indices, size)]))

    def frames_torch(self, indices: Sequence[int], size: tuple[int, int] | None = None) -> Any:
        """As :meth:`frames`, as a torch uint8 tensor on the decode device (CUDA for "gpu")."""
        return self._one(self._decoder.decode_torch([self._request(indices, size)]))

    def audio(
        self,
        start_s: float,
        end_s: float,
        sample_rate: int | None = None,
        mono: bool = False,
    ) -> np.ndarray:
        """Audio window ``[start_s, end_s)`` as float32 (C, S), decoded by PyAV."""
        if self._pyav is None:
            from workers.decode import open_video

            self._pyav = open_video(self.uri, backend="pyav", meta=self._meta)
        return self._pyav.audio(start_s, end_s, sample_rate=sample_rate, mono=mono)

    def close(self) -> None:
        self._encoded = None
        if self._pyav is not None:
            self._pyav.close()
            self._pyav = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, indices: Sequence[int], size: tuple[int, int] | None) -> ClipRequest:
        # Read the file once per reader, and only when DALI (not the fallback) will use it.
        if self._encoded is None and self._decoder.can_decode(self._meta):
            self._encoded = read_encoded(self.uri)
        size = None if size is None else (int(size[0]), int(size[1]))
        return ClipRequest(self._meta, tuple(int(i) for i in indices), size, self._encoded)

    @staticmethod
    def _one(results: list[Any]) -> Any:
        (result,) = results
        if isinstance(result, CorruptMediaError):
            raise result
        return result


__all__ = [
    "CPU_CODECS", "DALI_GPU_PSNR_DB", "DALI_PSNR_DB", "DALI_RESIZED_PSNR_DB", "GPU_CODECS", "ClipRequest",
    "DALIBatchDecoder", "DALIReader", "psnr_bound", "read_encoded", "supports",
]
