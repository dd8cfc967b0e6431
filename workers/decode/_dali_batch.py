"""Batch decode with NVIDIA DALI: the clips of many plans in one pipeline run.

:class:`DALIBatchDecoder` serves the video stage and the colocated trainer: clips of the
same video and size are merged into one decode of the union of their frames, the videos
become the samples of a DALI batch, DALI decodes them in parallel (CPU threads, or NVDEC
sessions on the GPU) and resizes them on the device, so Python is touched once per batch.

Codec policy (``codec_policy``), for a video DALI cannot decode on the device:

- ``"fallback"``: PyAV decodes it and the decoder counts it in ``fallbacks``.
  E.g. an H.264 clip on ``device="cpu"`` -> PyAV frames, ``fallbacks == 1``.
- ``"error"``: :class:`~workers.errors.UnsupportedCodecError` naming the file and codec
  (a per-file error the stage turns into a quarantined row, never a crash).

The same policy covers a run DALI rejects at decode time (e.g. H.264 4:4:4 or 10-bit on
NVDEC, which the codec name alone does not reveal); with ``"error"`` it is a
:class:`~workers.errors.CorruptMediaError` carrying DALI's reason.

Frames come back in displayed orientation: ``meta.rotation`` (the clockwise turn a viewer
applies, as in the manifest) is applied after decode and resize, as PyAV does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlparse

import numpy as np

from workers.decode._dali_pipeline import (
    build_pipeline,
    dali_reason,
    run_pipeline,
    to_numpy,
    to_torch,
)
from workers.errors import CorruptMediaError, TooManyPixelsError, UnsupportedCodecError
from workers.io import ALLOWED_SCHEMES, FORMAT_WHITELIST, REMOTE_SCHEMES, scheme_of
from workers.meta import VideoMeta

Device = Literal["cpu", "gpu"]
CodecPolicy = Literal["fallback", "error"]

# Frames of DALI agree with PyAV (FFmpeg's swscale rgb24) to this PSNR (dB, per frame, at
# native size). Same bitstream decoder (libavcodec) on the CPU; only the YUV->RGB step
# differs: DALI upsamples chroma bilinearly, swscale's rgb24 path repeats chroma samples, so
# the error sits on colour edges. Measured min 44.6 dB (big_buck_bunny VP8 720p) and
# 47.2 dB (transparent.webm VP9); smooth synthetic VP9/MJPEG clips are above 40 dB too,
# saturated sawtooth colours fall to 29 dB.
DALI_PSNR_DB = 40.0
# With a resize (DALI linear + antialias vs swscale bilinear in FFmpeg's scale filter).
# Measured min 38.4 dB (VP8 1280x720 -> 112x112), 42.7 dB (VP9 200x200 -> 64x64).
DALI_RESIZED_PSNR_DB = 35.0
# NVDEC decodes the same bitstream bit-exactly; DALI's CUDA colour conversion may differ
# from swscale more than its CPU path does. Not yet measured on a GPU:
# tests/gpu/check.sh prints the measured values next to this bound.
DALI_GPU_PSNR_DB = 35.0

# Codec names as the manifest writes them (FFmpeg's canonical codec names).
CPU_CODECS = frozenset({"vp8", "vp9", "mjpeg"})
GPU_CODECS = CPU_CODECS | {"h264", "hevc", "av1", "mpeg4"}
# DALI demuxes the bytes itself with libavformat; only hand it containers our own
# whitelist lets FFmpeg open, so a crafted playlist never reaches a demuxer that opens URLs.
_SAFE_CONTAINERS = frozenset(FORMAT_WHITELIST.split(","))
# NVDEC decodes 4:2:0 only (no H.264 4:4:4 or 4:2:2), and DALI's output path is 8-bit; other
# formats go to the codec policy up front instead of failing (or worse) inside a batch.
# "" is a manifest written before pix_fmt was recorded: let DALI try, the run check catches it.
_NVDEC_PIX_FMTS = frozenset({"", "yuv420p", "yuvj420p", "nv12"})
# Smallest coded (width, height) NVDEC takes (cuvidGetDecoderCaps on recent GPUs); smaller
# videos fail to open a decoder, so they go to the policy before a batch is spent on them.
_NVDEC_MIN_SIZE = {"hevc": (144, 144), "vp9": (128, 128), "av1": (128, 128)}
_NVDEC_MIN_DEFAULT = (48, 16)


def psnr_bound(device: Device) -> float:
    """The PSNR (dB) DALI frames on ``device`` keep against PyAV's."""
    return DALI_GPU_PSNR_DB if device == "gpu" else DALI_PSNR_DB


def supports(device: Device, codec: str) -> bool:
    """Whether DALI decodes ``codec`` (a manifest ``video_codec``) on ``device``."""
    return codec in (GPU_CODECS if device == "gpu" else CPU_CODECS)


def read_encoded(uri: str) -> np.ndarray:
    """The bytes of ``uri`` as a uint8 array (local path, ``file://`` or ``pyarrow.fs`` URI).

    Raises:
        CorruptMediaError: missing or unreadable file.
        ValueError: a scheme that is not allowed.
    """
    scheme = scheme_of(uri)
    if scheme not in ALLOWED_SCHEMES:
        raise ValueError(f"{uri}: scheme {scheme!r} is not allowed; allowed: {ALLOWED_SCHEMES}")
    try:
        if scheme in REMOTE_SCHEMES:
            import pyarrow.fs as pafs

            fs, path = pafs.FileSystem.from_uri(uri)
            with fs.open_input_stream(path) as f:
                data = f.read()
        else:
            with open(urlparse(uri).path if scheme == "file" else uri, "rb") as f:
                data = f.read()
    except FileNotFoundError as e:
        raise CorruptMediaError(uri, "file not found") from e
    except OSError as e:
        raise CorruptMediaError(uri, f"cannot read: {e}") from e
    return np.frombuffer(data, dtype=np.uint8)


@dataclass(frozen=True)
class ClipRequest:
    """Frames of one video to decode, at one size.

    Attributes:
        meta: the video's manifest row (uri, codec, rotation, frame count).
        frames: frame indices in presentation order, any order, repeats allowed.
        size: output (H, W) in displayed orientation; None keeps the native size.
        encoded: the file's bytes when the caller has them (colocated placement); read
            from ``meta.uri`` otherwise.
    """

    meta: VideoMeta
    frames: tuple[int, ...]
    size: tuple[int, int] | None = None
    encoded: bytes | np.ndarray | None = None


@dataclass
class _Job:
    """One DALI sample: the sorted union of frames of every request on (uri, size)."""

    meta: VideoMeta
    frames: list[int]
    size: tuple[int, int] | None
    encoded: bytes | np.ndarray | None


Result = Any  # np.ndarray or torch.Tensor or CorruptMediaError


class DALIBatchDecoder:
    """Decodes the clips of many plans in as few DALI runs as the batch size allows.

    Not thread-safe: use one per thread (a DALI pipeline runs one batch at a time).

    Args:
        device: ``"cpu"`` or ``"gpu"`` (NVDEC through DALI's ``mixed`` decoder).
        batch_size: videos per DALI run (also the number of concurrent NVDEC sessions).
        num_threads: DALI CPU threads.
        device_id: CUDA device for ``"gpu"``.
        codec_policy: ``"fallback"`` (PyAV, counted in ``fallbacks``) or ``"error"``.
        max_pixels: refuse videos with more pixels per frame (None: no bound).
    """

    def __init__(
        self,
        device: Device = "cpu",
        *,
        batch_size: int = 8,
        num_threads: int | None = None,
        device_id: int = 0,
        codec_policy: CodecPolicy = "fallback",
        max_pixels: int | None = None,
    ) -> None:
        if device not in ("cpu", "gpu"):
            raise ValueError(f"device ({device!r}) must be 'cpu' or 'gpu'")
        if codec_policy not in ("fallback", "error"):
            raise ValueError(f"codec_policy ({codec_policy!r}) must be 'fallback' or 'error'")
        if batch_size < 1:
            raise ValueError(f"batch_size ({batch_size}) must be >= 1")
        self.device: Device = device
        self.batch_size = batch_size
        self.num_threads = num_threads or min(4, os.cpu_count() or 1)
        self.device_id = device_id
        self.codec_policy: CodecPolicy = codec_policy
        self.max_pixels = max_pixels
        self.fallbacks = 0  # videos PyAV decoded instead of DALI
        self.runs = 0  # DALI pipeline runs
        self._pipes: dict[bool, Any] = {}

    def decode(self, requests: Sequence[ClipRequest]) -> list[Result]:
        """Decode every request to host memory.

        Args:
            requests: clips, of one or many videos.
        Returns:
            per request, uint8 (len(frames), H, W, 3) RGB in displayed orientation, or the
            :class:`~workers.errors.CorruptMediaError` of its video.
        Raises:
            ValueError: a frame index outside ``[0, meta.num_frames)``.
        """
        return self._decode(requests, as_torch=False)

    def decode_torch(self, requests: Sequence[ClipRequest]) -> list[Result]:
        """As :meth:`decode`, but torch uint8 tensors left where DALI decoded them.

        On ``device="gpu"`` they are CUDA tensors of ``device_id`` that never visited the
        host (the colocated placement); a PyAV fallback is copied up to that device.
        """
        return self._decode(requests, as_torch=True)

    def can_decode(self, meta: VideoMeta) -> bool:
        """Whether DALI itself (not the fallback) takes this video on this device."""
        names = meta.container.split(",") if meta.container else []
        if self.device == "gpu" and _nvdec_limit(meta) is not None:
            return False
        return supports(self.device, meta.video_codec) and all(
            n in _SAFE_CONTAINERS for n in names
        )

    def _decode(self, requests: Sequence[ClipRequest], as_torch: bool) -> list[Result]:
        jobs, where = _merge(requests)
        done: dict[int, Result] = {}
        dali_jobs: list[int] = []
        for j, job in enumerate(jobs):
            _check_frames(job)
            routed = self._route(job, as_torch)
            if routed is None:
                dali_jobs.append(j)
            else:
                done[j] = routed
        done.update(_load(jobs, dali_jobs))
        dali_jobs = [j for j in dali_jobs if j not in done]
        for chunk in _chunks(dali_jobs, jobs, self.batch_size):
            done.update(self._run_isolating(chunk, jobs, as_torch))
        return [_take(done[j], pos) for j, pos in where]

    def _route(self, job: _Job, as_torch: bool) -> Result | None:
        """The result of a job that needs no DALI run (refused, empty, fallback), else None."""
        refusal = self._refusal(job.meta)
        if refusal is not None:
            return refusal
        if not job.frames:
            return self._empty(job, as_torch)
        if self.can_decode(job.meta):
            return None
        return self._unsupported(job, as_torch)

    def _refusal(self, meta: VideoMeta) -> CorruptMediaError | None:
        pixels = meta.width * meta.height
        if self.max_pixels is not None and pixels > self.max_pixels:
            return TooManyPixelsError(
                meta.uri, f"{meta.width}x{meta.height} = {pixels} pixels > bound {self.max_pixels}"
            )
        return None

    def _empty(self, job: _Job, as_torch: bool) -> Result:
        """A request without frames: (0, H, W, 3), without touching the file."""
        h, w = job.size or (job.meta.height, job.meta.width)
        frames = np.zeros((0, h, w, 3), np.uint8)
        if not as_torch:
            return frames
        import torch

        return torch.from_numpy(frames).to(self._torch_device())

    def _torch_device(self) -> str:
        return f"cuda:{self.device_id}" if self.device == "gpu" else "cpu"

    def _unsupported(self, job: _Job, as_torch: bool) -> Result:
        if self.codec_policy == "error":
            return UnsupportedCodecError(job.meta.uri, self._why_not(job.meta))
        return self._fallback(job, as_torch)

    def _why_not(self, meta: VideoMeta) -> str:
        """Why DALI refuses a video, naming codec, pixel format or container."""
        codecs = ", ".join(sorted(GPU_CODECS if self.device == "gpu" else CPU_CODECS))
        what = f"codec {meta.video_codec or 'unknown'}"
        if supports(self.device, meta.video_codec):
            limit = _nvdec_limit(meta) if self.device == "gpu" else None
            return limit or f"DALI does not demux container {meta.container!r}"
        return f"DALI on {self.device} cannot decode {what} (it decodes {codecs})"

    def _fallback(self, job: _Job, as_torch: bool) -> Result:
        """PyAV decodes the job (resizing and rotating as it always does).

        PyAV reads ``meta.uri`` itself, also where the bytes came with the request (the
        colocated trainer), so the trainer needs read access to the dataset for fallbacks.
        """
        from workers.decode import open_video

        self.fallbacks += 1
        try:
            with open_video(job.meta.uri, backend="pyav", meta=job.meta,
                            max_pixels=self.max_pixels) as r:
                frames = r.frames(job.frames, size=job.size)
        except CorruptMediaError as e:
            return e
        if not as_torch:
            return frames
        import torch

        return torch.from_numpy(frames).to(self._torch_device())

    def _run_isolating(
        self, chunk: list[int], jobs: list[_Job], as_torch: bool
    ) -> dict[int, Result]:
        """Run a chunk; when DALI rejects it, run its videos one by one to find the culprit.

        DALI fails a whole run for one bad sample, so one broken file must not cost the
        other videos of the batch their frames.
        """
        try:
            return dict(zip(chunk, self._run(chunk, jobs, as_torch)))
        except RuntimeError as e:
            self._pipes.clear()  # a fresh pipeline after an error, whatever state it left
            if len(chunk) == 1:
                return {chunk[0]: self._rejected(jobs[chunk[0]], dali_reason(e), as_torch)}
        out: dict[int, Result] = {}
        for j in chunk:
            out.update(self._run_isolating([j], jobs, as_torch))
        return out

    def _rejected(self, job: _Job, why: str, as_torch: bool) -> Result:
        """A video DALI took but could not decode as the manifest describes it."""
        if self.codec_policy == "fallback":
            return self._fallback(job, as_torch)
        return CorruptMediaError(
            job.meta.uri, f"DALI ({self.device}) cannot decode {job.meta.video_codec}: {why}"
        )

    def _run(self, chunk: list[int], jobs: list[_Job], as_torch: bool) -> list[Result]:
        """One DALI run over the jobs of ``chunk`` (all resizing, or none)."""
        batch = [jobs[j] for j in chunk]
        resize = batch[0].size is not None
        sizes = None
        if resize:
            sizes = [_coded_size(job.size, job.meta.rotation) for job in batch if job.size]
        pipe = self._pipe(resize)
        encoded = [np.frombuffer(job.encoded, np.uint8) for job in batch]  # type: ignore[arg-type]
        out, shapes = run_pipeline(pipe, encoded, [job.frames for job in batch], sizes)
        self.runs += 1
        arrays = to_torch(out) if as_torch else to_numpy(out)
        results = []
        for array, shape, job in zip(arrays, shapes, batch):
            wrong = _wrong_stream(job.meta, shape)
            results.append(self._rejected(job, wrong, as_torch) if wrong
                           else _rotate(array, job.meta.rotation))
        return results

    def _pipe(self, resize: bool) -> Any:
        if resize not in self._pipes:
            self._pipes[resize] = build_pipeline(
                self.device, resize=resize, batch_size=self.batch_size,
                num_threads=self.num_threads, device_id=self.device_id,
            )
        return self._pipes[resize]


def _merge(requests: Sequence[ClipRequest]) -> tuple[list[_Job], list[tuple[int, list[int]]]]:
    """Merge requests on the same (uri, size) into one job of the sorted union of frames.

    Returns the jobs and, per request, (its job, the rows of the job's output it takes).
    Example: [4, 5, 6] and [6, 7] of one video -> job frames [4, 5, 6, 7]; rows [0, 1, 2]
    and [2, 3].
    """
    keys: dict[tuple[str, Any], int] = {}
    wanted: list[set[int]] = []
    jobs: list[_Job] = []
    for req in requests:
        key = (req.meta.uri, req.size)
        if key not in keys:
            keys[key] = len(jobs)
            jobs.append(_Job(req.meta, [], req.size, req.encoded))
            wanted.append(set())
        wanted[keys[key]].update(int(f) for f in req.frames)
    for job, frames in zip(jobs, wanted):
        job.frames = sorted(frames)
    where = []
    for req in requests:
        j = keys[(req.meta.uri, req.size)]
        row = {f: i for i, f in enumerate(jobs[j].frames)}
        where.append((j, [row[int(f)] for f in req.frames]))
    return jobs, where


def _load(jobs: list[_Job], order: list[int]) -> dict[int, CorruptMediaError]:
    """Read the bytes of jobs that came without them, each file once; a file that cannot be
    read is that job's result, not the batch's failure."""
    cache: dict[str, np.ndarray | CorruptMediaError] = {}
    failed: dict[int, CorruptMediaError] = {}
    for j in order:
        job = jobs[j]
        if job.encoded is not None:
            continue
        uri = job.meta.uri
        if uri not in cache:
            try:
                cache[uri] = read_encoded(uri)
            except CorruptMediaError as e:
                cache[uri] = e
        got = cache[uri]
        if isinstance(got, CorruptMediaError):
            failed[j] = got
        else:
            job.encoded = got
    return failed


def _check_frames(job: _Job) -> None:
    """Out-of-range indices are a planning bug: DALI would silently pad them with black."""
    n = job.meta.num_frames
    bad = [f for f in job.frames if f < 0 or (n > 0 and f >= n)]
    if bad:
        raise ValueError(f"{job.meta.uri}: frame indices {bad[:5]} outside [0, {n})")


def _chunks(order: list[int], jobs: list[_Job], batch_size: int) -> list[list[int]]:
    """Runs of at most ``batch_size`` jobs; resizing and native-size jobs never share a run
    (they need different pipelines)."""
    groups: dict[bool, list[int]] = {True: [], False: []}
    for j in order:
        groups[jobs[j].size is not None].append(j)
    return [g[i:i + batch_size] for g in groups.values() for i in range(0, len(g), batch_size)]


def _nvdec_limit(meta: VideoMeta) -> str | None:
    """Why NVDEC cannot take a video of a codec it has (pixel format, size), or None."""
    what = f"{meta.video_codec} {meta.pix_fmt}".strip()
    if meta.pix_fmt not in _NVDEC_PIX_FMTS:
        return f"NVDEC cannot decode {what} (4:2:0 8-bit only)"
    min_w, min_h = _NVDEC_MIN_SIZE.get(meta.video_codec, _NVDEC_MIN_DEFAULT)
    h, w = _coded_size((meta.height, meta.width), meta.rotation)
    if 0 < w < min_w or 0 < h < min_h:
        return f"NVDEC cannot decode {meta.video_codec} at {w}x{h} (minimum {min_w}x{min_h})"
    return None


def _wrong_stream(meta: VideoMeta, shape: tuple[int, ...]) -> str | None:
    """Why DALI's frames are not the manifest's stream, or None when their size agrees.

    DALI picks its own video stream and demuxes on its own; when what it decoded is not the
    size the manifest recorded (another stream of a multi-stream file, a stale manifest),
    its frames must not silently stand in for the planned ones.
    """
    if meta.width <= 0 or meta.height <= 0 or len(shape) != 4:
        return None
    coded = _coded_size((meta.height, meta.width), meta.rotation)
    if tuple(shape[1:3]) == coded:
        return None
    return (f"DALI decoded a {shape[2]}x{shape[1]} stream; the manifest's video stream is "
            f"{coded[1]}x{coded[0]} (another stream of the file?)")


def _coded_size(size: tuple[int, int], rotation: int) -> tuple[int, int]:
    """The resize target before rotation: a 90/270 turn swaps height and width."""
    return (size[1], size[0]) if rotation in (90, 270) else size


def _rotate(frames: Any, rotation: int) -> Any:
    """Turn (N, H, W, C) frames clockwise by ``rotation`` degrees (numpy or torch)."""
    k = (-(rotation // 90)) % 4  # rot90 turns counter-clockwise for positive k
    if k == 0:
        return frames
    if isinstance(frames, np.ndarray):
        return np.ascontiguousarray(np.rot90(frames, k, axes=(1, 2)))
    return frames.rot90(k, dims=(1, 2)).contiguous()


def _take(result: Result, rows: list[int]) -> Result:
    """The rows of a job's output one request asked for (errors pass through)."""
    if isinstance(result, CorruptMediaError):
        return result
    if len(rows) == len(result) and rows == list(range(len(result))):
        return result
    return result[rows] if isinstance(result, np.ndarray) else result[_index(result, rows)]


def _index(tensor: Any, rows: list[int]) -> Any:
    import torch

    return torch.as_tensor(rows, dtype=torch.long, device=tensor.device)
