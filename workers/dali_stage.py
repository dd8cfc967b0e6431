"""GPU video decode with DALI in its two placements: disaggregated and colocated.

**Disaggregated** (``data.placement="disaggregated"``, ``video.backend="dali"``):
:class:`DALIVideoStage` is the Ray Data ``video`` operator. Its actors hold their own GPUs
(``video.num_gpus``), decode every row of a Ray Data batch in one DALI run and put host
arrays into the object store::

    ds.map_batches(DALIVideoStage, fn_constructor_args=(data, data.video),
                   batch_format="numpy", **data.video.ray_args())

**Colocated** (``data.placement="colocated"``): the ``video`` operator is
:class:`EncodedBytesStage` (CPU only): it reads each clip's compressed file and ships its
bytes with the plans. The trainer decodes them on its own GPU with
:class:`ColocatedDecoder`; frames become CUDA tensors there and never touch the host::

    ds.map_batches(EncodedBytesStage, fn_constructor_args=(data, data.video),
                   batch_format="numpy", **encoded_stage_args(data.video))

    decoder = ColocatedDecoder(data)                 # once per rank, after CUDA is set up
    for batch in shard.iter_batches(batch_size=b, batch_format="numpy"):
        dec = decoder.decode_batch(batch)            # needs the COLOCATED_COLUMNS
        video = dec.video("vcop")                    # uint8 CUDA (B, K, T, H, W, 3)

The assemble operator must pass :data:`COLOCATED_COLUMNS` through; its ``{task}.video`` holds
zero-frame placeholders (shape (B, K, 0, H, W, 3)) that ``dec.video`` replaces.

When each wins:

- *Disaggregated* when decode must scale apart from training: decode GPUs (or cheaper
  GPUs, or nodes near the data) are added without touching the trainers, and a slow video
  never stalls a training step. It pays a device-to-host copy per frame, the object store's
  bandwidth for raw frames (a vcop sample, 3x16 frames at 112x112, is 1.8 MB of uint8; the
  whole compressed 10 s Kinetics file it came from, ``demo.mp4``, is 0.64 MB), and the
  host-to-device copy in the trainer.
- *Colocated* when the trainer GPUs have spare NVDEC capacity, which they usually do: NVDEC
  engines are separate from the SMs (an H200 has 7), so decode costs the model almost no
  compute; only compressed bytes cross the network and there is no PCIe round trip. But
  decode capacity is tied to the number of trainer GPUs, resizing uses a little SM time and
  memory, and a codec NVDEC lacks falls back to PyAV inside the trainer process (which then
  reads the file itself). Whole files travel, so it suits short clips (Kinetics, 10 s); a
  visit of a minutes-long YFCC video ships all of it for a few clips.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.config import DataConfig, StageConfig
from pipelines.tasks.base import Decoded, SamplePlan
from workers.decode._dali import ClipRequest, DALIBatchDecoder, read_encoded
from workers.errors import CorruptMediaError
from workers.meta import VideoMeta
from workers.stage import Batch, Stage
from workers.video_stage import VideoStage, clip_size

# Columns a colocated trainer needs in its batches: the plans, the manifest rows of the
# videos they read, and the compressed bytes (pickled ``{uri: bytes}`` per row).
COLOCATED_COLUMNS = ("plans", "metas", "encoded")


def encoded_stage_args(stage: StageConfig) -> dict[str, Any]:
    """``map_batches`` arguments of :class:`EncodedBytesStage`: the video stage's, minus its
    GPUs. In the colocated placement ``video.device``/``num_gpus`` describe the decode on
    the trainer's GPU; the operator that only reads bytes must not hold a GPU."""
    args = stage.ray_args()
    args.pop("num_gpus", None)
    return args


def videos_per_run(stage: StageConfig) -> int:
    """DALI batch size for a stage: a row reads one video, two with a negative from
    another video (avc, avts), so twice the rows covers a Ray Data batch in one run."""
    return max(1, 2 * stage.batch_size)


def decode_threads(stage: StageConfig) -> int:
    """DALI threads for a stage. On the CPU they decode, so they get the stage's cores; on
    the GPU each drives one NVDEC session and mostly waits on the engine, so a batch gets
    one per video (up to 16) for its videos to decode concurrently."""
    cores = max(1, int(stage.num_cpus))
    if stage.device == "cpu":
        return cores
    return max(cores, min(videos_per_run(stage), 16))


def clip_requests(
    plans: Sequence[tuple[SamplePlan, ...]],
    metas: Mapping[int, VideoMeta],
    default_size: tuple[int, int],
    encoded: Sequence[Mapping[str, bytes]] | None = None,
) -> tuple[list[ClipRequest], list[tuple[int, int, int]]]:
    """Every ClipRead of every row as a request, with its (row, plan, clip) position.

    Args:
        plans: per row, the plans of one visit.
        metas: manifest rows by video_id (the rows' ``metas`` column).
        default_size: clip (H, W) for plans without ``size``.
        encoded: per row, compressed bytes by uri (colocated); None reads the files.
    Returns:
        the requests and, for each, where its clip goes.
    Raises:
        KeyError: a read whose video has no manifest row (a planner bug).
    """
    requests, where = [], []
    for r, row in enumerate(plans):
        for p, plan in enumerate(row):
            size = clip_size(plan, default_size)
            for c, read in enumerate(plan.clips):
                data = encoded[r].get(read.uri) if encoded is not None else None
                requests.append(ClipRequest(metas[read.video_id], read.frames, size, data))
                where.append((r, p, c))
    return requests, where


def _row_errors(results: Sequence[Any], where: Sequence[tuple[int, int, int]], rows: int
                ) -> list[CorruptMediaError | None]:
    """The first per-file error of each row (None where all its clips decoded)."""
    errors: list[CorruptMediaError | None] = [None] * rows
    for res, (r, _, _) in zip(results, where):
        if isinstance(res, CorruptMediaError) and errors[r] is None:
            errors[r] = res
    return errors


def _files_of(plans: Sequence[SamplePlan]) -> dict[str, bytes]:
    """Compressed bytes of every video the plans' clips read, once per uri."""
    files: dict[str, bytes] = {}
    for plan in plans:
        for read in plan.clips:
            if read.uri not in files:
                files[read.uri] = read_encoded(read.uri).tobytes()
    return files


class BatchFirst(Stage):
    """A stage whose real work is :meth:`fill_batch` (one DALI run for many rows); a single
    row is a batch of one."""

    def fill(self, plans: tuple[SamplePlan, ...], decoded: list[Decoded]) -> None:
        (error,) = self.fill_batch([plans], [decoded], [""])
        if error is not None:
            raise error


class DALIVideoStage(BatchFirst, VideoStage):
    """The ``video`` operator on DALI: all rows of a Ray Data batch in one DALI run.

    Output is what :class:`~workers.video_stage.VideoStage` gives (host uint8 clips
    (T, H, W, 3) resized to ``plan.size or data.size``), so assembly is backend-blind.
    ``fallbacks`` counts videos PyAV decoded under ``codec_policy="fallback"``.
    """

    name = "video"

    def __init__(self, data: DataConfig, stage: StageConfig) -> None:
        super().__init__(data, stage)
        # Ray gives a num_gpus actor its GPU as CUDA device 0 (CUDA_VISIBLE_DEVICES).
        self.decoder = DALIBatchDecoder(
            stage.device, batch_size=videos_per_run(stage), device_id=0,
            num_threads=decode_threads(stage), codec_policy=stage.codec_policy,
            max_pixels=data.max_pixels,
        )

    @property
    def fallbacks(self) -> int:
        return self.decoder.fallbacks

    def fill_batch(
        self, plans: list[tuple[SamplePlan, ...]], decoded: list[list[Decoded]], errors: list[str]
    ) -> list[CorruptMediaError | None]:
        live = [i for i, e in enumerate(errors) if not e]
        requests, where = clip_requests([plans[i] for i in live], self.metas, self.data.size)
        results = self.decoder.decode(requests)
        for i in live:
            for d in decoded[i]:
                d.clips = []
        for res, (r, p, _) in zip(results, where):
            if not isinstance(res, CorruptMediaError):
                decoded[live[r]][p].clips.append(res)
        out: list[CorruptMediaError | None] = [None] * len(plans)
        for r, err in enumerate(_row_errors(results, where, len(live))):
            out[live[r]] = err
        return out


class EncodedBytesStage(VideoStage):
    """The ``video`` operator of the colocated placement: compressed bytes, no decode.

    Adds the ``encoded`` column (pickled ``{uri: bytes}`` of the row's clip videos) and fills
    ``Decoded.clips`` with zero-frame placeholders (0, H, W, 3) so assembly keeps its shapes
    apart from T. A missing or unreadable file is the row's error, as in any stage.
    """

    name = "video"

    def __init__(self, data: DataConfig, stage: StageConfig) -> None:
        super().__init__(data, stage)
        self._encoded: list[dict[str, bytes]] = []  # of the batch being filled

    def fill(self, plans: tuple[SamplePlan, ...], decoded: list[Decoded]) -> None:
        self._encoded = [_files_of(plans)]
        self.fill_zeros(plans, decoded)

    def fill_batch(
        self, plans: list[tuple[SamplePlan, ...]], decoded: list[list[Decoded]], errors: list[str]
    ) -> list[CorruptMediaError | None]:
        self._encoded = [{} for _ in plans]
        out: list[CorruptMediaError | None] = [None] * len(plans)
        for i, (p, d, err) in enumerate(zip(plans, decoded, errors)):
            if err:
                continue
            try:
                self._encoded[i] = _files_of(p)
                self.fill_zeros(p, d)
            except CorruptMediaError as e:
                out[i] = e
        return out

    def fill_zeros(self, plans: tuple[SamplePlan, ...], decoded: list[Decoded]) -> None:
        for plan, d in zip(plans, decoded):
            h, w = clip_size(plan, self.data.size)
            d.clips = [np.zeros((0, h, w, 3), np.uint8) for _ in plan.clips]

    def __call__(self, batch: Batch) -> Batch:
        out = super().__call__(batch)
        shipped = [pickle.dumps(e, protocol=5) for e in self._encoded]
        out["encoded"] = np.array(shipped, dtype=object)
        return out


@dataclass
class ColocatedBatch:
    """Decoded clips of a batch on the trainer's device.

    Attributes:
        clips: ``clips[row][plan][clip]`` uint8 tensors (T, H, W, 3); zeros where the row failed.
        tasks: task name of each plan position (the same for every row of a run).
        errors: per row, the error text ("" when every clip decoded).
        kinds: per row, the error kind ("" when none).
    """

    clips: list[list[list[Any]]]
    tasks: list[str]
    errors: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    def video(self, task: str | int) -> Any:
        """``video`` of one task for the whole batch: uint8 (B, K, T, H, W, 3), the K clips
        of each plan stacked in fed order (the convention of ``Decoded``)."""
        import torch

        p = self.tasks.index(task) if isinstance(task, str) else task
        return torch.stack([torch.stack(row[p]) for row in self.clips])

    def ok(self) -> np.ndarray:
        """Per row, whether every clip decoded."""
        return np.array([not e for e in self.errors], dtype=bool)


class ColocatedDecoder:
    """Decodes streamed compressed bytes on the trainer's own GPU (colocated placement).

    Args:
        data: the data config: clip size, ``video.device``, ``video.codec_policy``,
            ``max_pixels``.
        device_id: CUDA device; None takes torch's current device.
        batch_size: videos per DALI run (concurrent NVDEC sessions); None sizes it from
            the stage config.
    """

    def __init__(self, data: DataConfig, *, device_id: int | None = None,
                 batch_size: int | None = None) -> None:
        self.data = data
        device = data.video.device
        if device == "gpu" and device_id is None:
            import torch

            device_id = torch.cuda.current_device()
        self.device_id = device_id or 0
        self.decoder = DALIBatchDecoder(
            device, batch_size=batch_size or videos_per_run(data.video),
            num_threads=decode_threads(data.video),
            device_id=self.device_id, codec_policy=data.video.codec_policy,
            max_pixels=data.max_pixels,
        )

    def decode_batch(self, batch: Mapping[str, Any]) -> ColocatedBatch:
        """Decode the clips of every row of a batch that carries :data:`COLOCATED_COLUMNS`.

        Args:
            batch: numpy batch of rows (``plans``, ``metas``, ``encoded`` pickled; ``error``
                and ``error_kind`` when present mark rows an earlier stage failed).
        Returns:
            the clips as tensors on the decode device, with per-row errors.
        """
        plans = [pickle.loads(b) for b in batch["plans"]]
        metas: dict[int, VideoMeta] = {}
        for b in batch["metas"]:
            metas.update(pickle.loads(b))
        encoded = [pickle.loads(b) for b in batch["encoded"]]
        errors = [str(e) for e in batch.get("error", [""] * len(plans))]
        kinds = [str(k) for k in batch.get("error_kind", [""] * len(plans))]
        requests, where = clip_requests(plans, metas, self.data.size, encoded)
        live = [i for i, (r, _, _) in enumerate(where) if not errors[r]]
        results = self.decoder.decode_torch([requests[i] for i in live])
        return self._collect(plans, requests, where, dict(zip(live, results)), errors, kinds)

    def _collect(self, plans: list[tuple[SamplePlan, ...]], requests: list[ClipRequest],
                 where: list[tuple[int, int, int]], results: dict[int, Any],
                 errors: list[str], kinds: list[str]) -> ColocatedBatch:
        """Place results by (row, plan, clip); failed rows get zeros of the planned shape."""
        import torch

        for i, res in results.items():
            r = where[i][0]
            if isinstance(res, CorruptMediaError) and not errors[r]:
                errors[r], kinds[r] = str(res), res.kind
        device = f"cuda:{self.device_id}" if self.decoder.device == "gpu" else "cpu"
        clips: list[list[list[Any]]] = [[[] for _ in row] for row in plans]
        for i, (r, p, _) in enumerate(where):
            res = results.get(i)
            if errors[r] or res is None or isinstance(res, CorruptMediaError):
                req = requests[i]
                h, w = req.size or (req.meta.height, req.meta.width)
                res = torch.zeros((len(req.frames), h, w, 3), dtype=torch.uint8, device=device)
            clips[r][p].append(res)
        tasks = [plan.task for plan in plans[0]] if plans else []
        return ColocatedBatch(clips=clips, tasks=tasks, errors=errors, kinds=kinds)
