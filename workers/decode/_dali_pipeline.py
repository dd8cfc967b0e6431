"""The DALI graph that decodes (and resizes) a batch of encoded videos in one run.

One pipeline holds a ``fn.decoders.video`` fed by ``external_source``: sample i of a run is
the encoded bytes of one video with the list of frames to take from it, so a run decodes a
whole batch of videos with DALI's own thread pool (CPU) or NVDEC sessions (GPU, ``mixed``)
working on the samples in parallel, and Python is touched once per batch, not per frame.

Example: a batch of 2 samples
    encoded = [bytes of a.webm, bytes of b.webm]
    frames  = [[0, 1, 2], [40, 48]]
    size    = [[112, 112], [112, 112]]      # (H, W), only in a resizing pipeline
-> video [(3, 112, 112, 3), (2, 112, 112, 3)] uint8, on the GPU for ``device="gpu"``,
   and the decoded (coded) shape of each sample, e.g. [(3, 720, 1280, 3), (2, 200, 200, 3)],
   so the caller can tell that DALI decoded the stream the manifest describes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

Device = Literal["cpu", "gpu"]


def build_pipeline(
    device: Device,
    *,
    resize: bool,
    batch_size: int,
    num_threads: int,
    device_id: int = 0,
) -> Any:
    """Build a decode (+ resize) pipeline.

    Args:
        device: ``"cpu"`` (libavcodec inside DALI: VP8/VP9/MJPEG) or ``"gpu"`` (NVDEC).
        resize: add ``fn.resize`` fed by a per-sample ``size`` input (H, W).
        batch_size: the most videos one run takes; runs may feed fewer.
        num_threads: DALI's CPU worker threads (per-sample parallel decode on the CPU,
            demuxing and NVDEC session feeding on the GPU).
        device_id: the CUDA device of a ``"gpu"`` pipeline.
    Returns:
        a built ``nvidia.dali.Pipeline`` with inputs ``encoded``, ``frames`` (and ``size``)
        and outputs ``video`` and the decoded shape of each sample.
    """
    from nvidia.dali import fn, pipeline_def, types

    gpu = device == "gpu"

    # prefetch_queue_depth=1: runs are driven one at a time by feed_input + run, so a deeper
    # queue would only hold more decoded batches in memory.
    @pipeline_def(
        batch_size=batch_size,
        num_threads=num_threads,
        device_id=device_id if gpu else None,  # type: ignore[arg-type]
        prefetch_queue_depth=1,
    )
    def graph() -> Any:
        encoded = fn.external_source(name="encoded", dtype=types.DALIDataType.UINT8, ndim=1)
        frames = fn.external_source(name="frames", dtype=types.DALIDataType.INT32, ndim=1)
        if gpu:
            # affine=False: the trainer and Ray workers share the cores; pinning DALI's
            # threads to fixed cores would fight them.
            video = fn.decoders.video(encoded, device="mixed", frames=frames, affine=False)
        else:
            video = fn.decoders.video(encoded, device="cpu", frames=frames)
        shape = video.shape()
        if resize:
            size = fn.external_source(name="size", dtype=types.DALIDataType.FLOAT, ndim=1)
            resized = fn.resize(video, size=size, antialias=True,
                                interp_type=types.DALIInterpType.INTERP_LINEAR)
            return resized, shape
        return video, shape

    pipe = graph()
    pipe.build()
    return pipe


def run_pipeline(
    pipe: Any,
    encoded: Sequence[np.ndarray],
    frames: Sequence[Sequence[int]],
    sizes: Sequence[tuple[int, int]] | None,
) -> Any:
    """Feed one batch and run it.

    Args:
        pipe: from :func:`build_pipeline` (with ``resize`` iff ``sizes`` is given).
        encoded: uint8 1-D arrays, one encoded video each.
        frames: frame indices to take from each video.
        sizes: output (H, W) of each sample, before any display rotation.
    Returns:
        DALI's video TensorList (CPU or GPU), valid until the next run of ``pipe``, and the
        decoded (F, H, W, C) shape of each sample as it came out of the decoder.
    Raises:
        RuntimeError: DALI could not decode one of the samples.
    """
    pipe.feed_input("encoded", list(encoded))
    pipe.feed_input("frames", [np.asarray(f, dtype=np.int32) for f in frames])
    if sizes is not None:
        pipe.feed_input("size", [np.asarray(s, dtype=np.float32) for s in sizes])
    video, shapes = pipe.run()
    return video, [tuple(int(d) for d in a) for a in to_numpy(shapes)]


def to_numpy(out: Any) -> list[np.ndarray]:
    """Host copies of every sample of a DALI TensorList (one device-to-host copy on GPU)."""
    host = out.as_cpu() if hasattr(out, "as_cpu") else out
    return [np.array(host[i]) for i in range(len(host))]


def to_torch(out: Any) -> list[Any]:
    """Torch tensors of every sample, on the device where DALI left them.

    A GPU sample becomes a CUDA tensor by a device-to-device copy on torch's current stream
    (DLPack-style hand-over without the host): the copy is needed because DALI reuses its
    output buffers on the next run.
    """
    from nvidia.dali.plugin.pytorch.torch_utils import to_torch_tensor

    return [to_torch_tensor(out[i], copy=True) for i in range(len(out))]


def dali_reason(exc: BaseException) -> str:
    """The line of DALI's error report that says what went wrong.

    DALI wraps the cause in a traceback of the pipeline definition:
    ``Critical error in pipeline: ... encountered:\\n\\n<cause>\\nC++ context: ...``.
    """
    text = str(exc)
    tail = text.split("encountered:", 1)[-1]
    for line in tail.splitlines():
        line = line.strip()
        if line and not line.startswith(("C++ context", "Current pipeline")):
            return line[:300]
    return (text.strip().splitlines() or [type(exc).__name__])[0][:300]
