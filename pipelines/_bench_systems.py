"""The systems the benchmark compares, each a function run inside a runner process.

Every function returns a :data:`RunResult`: ``items`` (samples delivered), ``frames``
(delivered frames), ``decoded`` (frames the decoder produced, where countable), ``t_start``
and ``t_end`` (``time.monotonic()``, shared by all processes of the machine) and
``arrivals``: ``(time, samples so far)`` at every batch the consumer received. The steady
rate is taken between the arrivals of the 10% and the 90% marks
(:func:`pipelines._bench_summary.steady_window`), so a pipeline's start-up (forking
workers, starting actors, filling its queues) and its drain are left out of the rate.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

RunResult = dict[str, Any]


def _result(items: int, frames: int, decoded: int | None, t_start: float,
            arrivals: list[tuple[float, int]] | None = None, **extra: Any) -> RunResult:
    """A RunResult stamped now; without ``arrivals`` the whole call is the window."""
    t_end = time.monotonic()
    return {"items": items, "frames": frames, "decoded": decoded, "t_start": t_start,
            "t_end": t_end, "arrivals": arrivals or [(t_start, 0), (t_end, items)], **extra}


# ---------------------------------------------------------------------- clipstream (Ray Data)


def start_ray(ray_cpus: int, attempts: int = 3) -> dict:
    """Start the local Ray of this runner, retrying a start that timed out.

    Ray gives its raylet a fixed 30 s to register; on a small machine busy with other work
    that can run out, and a second try usually succeeds.
    """
    import ray

    from pipelines.runtime import init_ray

    for attempt in range(1, attempts + 1):
        try:
            init_ray(num_cpus=ray_cpus)
            return {"attempts": attempt, "resources": ray.cluster_resources()}
        except Exception as err:  # Ray raises a bare Exception for the start-up timeout
            if "timed out during startup" not in str(err) or attempt == attempts:
                raise
            ray.shutdown()
    raise AssertionError("unreachable")


def clipstream(visits: list, tasks: list, data: Any, *, batch_size: int, ray_cpus: int) -> RunResult:
    """clipstream end to end: ``build_dataset`` -> ``iter_batches`` into a counting consumer."""
    import ray.data

    from pipelines.dataset import build_dataset

    start_ray(ray_cpus)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    t_start = time.monotonic()
    ds = build_dataset(visits, data, tasks)
    video_keys = [f"{t.name}.video" for t in tasks]
    items = frames = failed = 0
    arrivals: list[tuple[float, int]] = []
    ids: set[int] = set()
    for batch in ds.iter_batches(batch_size=batch_size, batch_format="numpy"):
        items += len(batch["sample_id"])
        arrivals.append((time.monotonic(), items))
        failed += int((~batch["ok"]).sum())
        ids.update(int(i) for i in batch["sample_id"])
        frames += sum(int(np.prod(batch[k].shape[:-3])) for k in video_keys)
    return _result(items, frames, None, t_start, arrivals, failed=failed, unique=len(ids),
                   stats=ds.stats())


# ------------------------------------------------------------------- the DataLoader baseline


def dataloader(visits: list, *, size: tuple[int, int], workers: int, batch_size: int) -> RunResult:
    """A ``torch.utils.data.DataLoader`` over :class:`PyAVClipDataset` with ``workers`` processes."""
    import torch

    from pipelines._bench_baseline import PyAVClipDataset

    t_start = time.monotonic()
    loader = torch.utils.data.DataLoader(PyAVClipDataset(visits, size), batch_size=batch_size,
                                         num_workers=workers, shuffle=False)
    items = frames = decoded = 0
    arrivals: list[tuple[float, int]] = []
    for batch in loader:
        items += int(batch["video"].shape[0])
        arrivals.append((time.monotonic(), items))
        frames += int(np.prod(batch["video"].shape[:3]))
        decoded += int(batch["decoded"].sum())
    # Stamp the end before the iterator is torn down, so the workers' CPU is still counted.
    result = _result(items, frames, decoded, t_start, arrivals)
    del loader
    return result


# --------------------------------------------------------------------------- worker pools


def _pool_map(fn: Callable[..., dict], args: list[tuple]) -> list[dict]:
    """Run ``fn(*a)`` for every ``a`` in its own forked process, all at once."""
    ctx = mp.get_context("fork")
    with ctx.Pool(len(args)) as pool:
        return pool.starmap(fn, args)


def _decode_all(uris: list[str]) -> dict:
    """Decode every frame of ``uris`` in order on this core (one decoder thread)."""
    import av

    start, cpu, frames = time.perf_counter(), time.process_time(), 0
    for uri in uris:
        with av.open(uri) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_type = "NONE"  # one core: no frame/slice threads
            for _ in container.decode(stream):
                frames += 1
    return {"frames": frames, "seconds": time.perf_counter() - start,
            "cpu_s": time.process_time() - cpu}


def ceiling(uris: list[str], *, procs: int) -> RunResult:
    """FFmpeg's sequential decode rate: ``procs`` processes each decode every frame of every
    file (starting at different files), one decoder thread each."""
    t_start = time.monotonic()
    shifts = [uris[i % len(uris):] + uris[:i % len(uris)] for i in range(procs)]
    parts = _pool_map(_decode_all, [(s,) for s in shifts])
    frames = sum(p["frames"] for p in parts)
    per_core = [p["frames"] / p["seconds"] for p in parts]
    return _result(frames, frames, frames, t_start, per_core_fps=per_core,
                   own_cpu_s=sum(p["cpu_s"] for p in parts), steady_items=frames)


def _stage_batches(rows: list[dict], batch_size: int) -> list[dict[str, np.ndarray]]:
    """Rows -> numpy column batches as Ray Data hands them to a ``map_batches`` callable."""
    out = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        out.append({k: np.array([r[k] for r in chunk],
                                dtype=np.int64 if k in ("sample_id", "video_id") else object)
                    for k in chunk[0]})
    return out


def _preload_stage() -> None:
    """Import what a VideoStage imports on first use (its decoder, the crash ledger's and
    telemetry's modules), so forked workers inherit it and no measurement pays for it."""
    import ray  # noqa: F401  (the stage looks for the run's crash ledger through it)

    import workers.decode._pyav
    import workers.video_stage  # noqa: F401


AS_SHIPPED = "as shipped"  # decoder threads: whatever VideoStage asks for


def _run_stage(rows: list[dict], data: Any, threads: int | str | None = AS_SHIPPED) -> dict:
    """clipstream's VideoStage on this core, without Ray; counts the frames it decodes.

    The first batch is a warm-up (a fresh process's first decodes pay one-time costs, as
    an actor's do before its first output): ``seconds`` and ``cpu_s`` (this process's CPU,
    decoder threads included) cover the ``timed_rows`` after it.

    ``threads``: decoder threads forced onto every reader (None: FFmpeg's choice), or
    :data:`AS_SHIPPED` to leave VideoStage's own choice alone.
    """
    import workers.video_stage as vs

    opened: list[Any] = []
    open_video = vs.open_video

    def counting_open(*args: Any, **kwargs: Any) -> Any:
        if threads != AS_SHIPPED:
            kwargs["threads"] = threads
        reader = open_video(*args, **kwargs)
        opened.append(reader.stats)  # type: ignore[attr-defined]  # PyAVReader's counters
        return reader

    vs.open_video = counting_open  # this forked process only
    stage = vs.VideoStage(data, data.video)
    batches = _stage_batches(rows, data.video.batch_size)
    warm = batches[:1] if len(batches) > 1 else []
    for batch in warm:
        stage(batch)
    start, cpu = time.perf_counter(), time.process_time()
    for batch in batches[len(warm):]:
        stage(batch)
    return {"rows": len(rows), "timed_rows": len(rows) - sum(len(b["sample_id"]) for b in warm),
            "seconds": time.perf_counter() - start, "cpu_s": time.process_time() - cpu,
            "decoded": sum(s.decoded for s in opened), "delivered": sum(s.delivered for s in opened),
            "seeks": sum(s.seeks for s in opened)}


def inprocess(visits: list, data: Any, *, procs: int, threads: int | str | None = AS_SHIPPED) -> RunResult:
    """clipstream's decode worker in-process: ``procs`` processes each run ``VideoStage`` over
    a shard of the rows. ``clips_per_s_sum`` is the sum of the processes' own rates;
    ``own_cpu_s`` their CPU over the same timed rows (``steady_items``)."""
    from workers.stage import encode_row

    _preload_stage()
    rows = [encode_row(v.plans, v.metas) for v in visits]
    frames = sum(len(r.frames) for v in visits for p in v.plans for r in p.clips)
    t_start = time.monotonic()
    parts = _pool_map(_run_stage, [(rows[i::procs], data, threads) for i in range(procs)])
    rates = [p["timed_rows"] / p["seconds"] for p in parts]
    return _result(len(rows), frames, sum(p["decoded"] for p in parts), t_start,
                   clips_per_s_sum=sum(rates), own_cpu_s=sum(p["cpu_s"] for p in parts),
                   steady_items=sum(p["timed_rows"] for p in parts), per_process=parts)


def profile_stage(visits: list, data: Any, *, threads: int | str | None = AS_SHIPPED,
                  top: int = 25) -> dict:
    """cProfile (in CPU time) of VideoStage over ``visits`` in this process: the functions with
    the most own time, and that time grouped by what it does (decode, scale, seek table, pickle...).

    The stage's watchdog is turned off (``sample_timeout_s=0``) so the decode runs on the
    profiled thread; its per-row helper thread is the only work this leaves out."""
    import cProfile
    import dataclasses
    import pstats

    from workers.stage import encode_row

    _preload_stage()
    data = dataclasses.replace(data, sample_timeout_s=0.0)
    rows = [encode_row(v.plans, v.metas) for v in visits]
    prof = cProfile.Profile(time.process_time)  # CPU, not wall: the machine may be shared
    prof.enable()
    part = _run_stage(rows, data, threads)
    prof.disable()
    stats = pstats.Stats(prof)
    entries = []
    for (file, line, fn), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        entries.append({"function": f"{os.path.basename(file)}:{line}:{fn}", "calls": calls,
                        "own_s": tottime, "cum_s": cumtime})
    entries.sort(key=lambda e: -e["own_s"])
    total = sum(e["own_s"] for e in entries)
    return {"seconds": part["seconds"], "rows": part["timed_rows"], "profiled_s": total,
            "buckets": profile_buckets(entries), "top": entries[:top]}


def reader_breakdown(visits: list, *, size: tuple[int, int]) -> dict[str, float]:
    """CPU ms per sample of each step of the decode worker (:mod:`pipelines._bench_breakdown`)."""
    from pipelines._bench_breakdown import breakdown

    return breakdown(visits, size)


# Where own time goes, by the function names cProfile records (first match wins).
BUCKETS = (
    # The seek table's pass decodes the first frame(s) through VideoStream.decode (probe.py).
    ("seek table (demux pass per open)", ("frame_table", "probe.py", "VideoStream' objects", "demux")),
    ("decode (libavcodec)", ("CodecContext' objects", "_pyav.py:284:_decode")),
    ("resize + RGB (swscale filter graph)", ("vpush", "vpull", "to_ndarray", "Graph", "reformat", "convert")),
    ("seek", ("seek",)),
    ("open / close container", ("core.open", "close")),
    ("pickle (rows in / out)", ("pickle", "dumps", "loads")),
)


def profile_buckets(entries: list[dict]) -> dict[str, float]:
    """Own seconds per bucket of :data:`BUCKETS`; the rest under ``other``."""
    out = {name: 0.0 for name, _ in BUCKETS}
    out["other"] = 0.0
    for e in entries:
        name = next((b for b, keys in BUCKETS if any(k in e["function"] for k in keys)), "other")
        out[name] += e["own_s"]
    return out
