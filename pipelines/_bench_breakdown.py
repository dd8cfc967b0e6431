"""Where a sample's CPU goes in clipstream's decode worker, step by step, on one thread.

Each step runs over the same visits and is timed with ``time.process_time`` (CPU of this
process, which background load on a shared machine barely changes, unlike wall time):

- ``open``: open and close the reader (``open_video`` with the manifest row);
- ``seek_table``: the per-open demux pass the reader makes before its first seek
  (``workers.probe.frame_table``);
- ``span_decode``: open the file, seek to the keyframe before the first wanted frame and
  decode up to the last one, with no conversion: the least a reader that decodes the whole
  span must do (a reader that skips GOPs between sparse frames can do less);
- ``reader``: what VideoStage does per video: open, ``frames(indices, size)``, close;
- ``reader_cached_table``: the same with the seek table handed in, as it would be if the
  manifest carried the pts the reader seeks to;
- ``stage_pickle``: Stage.__call__'s pickling of a row's decoded clips (dumps + loads);
- ``baseline``: the DataLoader baseline's per-sample work (PyTorchVideo-style span decode
  and resize), with one torch thread as in a DataLoader worker (with more, the resize's
  OpenMP threads spin and double its CPU).
"""

from __future__ import annotations

import bisect
import pickle
import time
from collections.abc import Callable
from typing import Any

import av

from pipelines._bench_baseline import PyAVClipDataset


def _reads(visit: Any) -> tuple[str, Any, list[int]]:
    plan = visit.plans[0]
    meta = visit.metas[plan.video_id]
    frames = sorted({f for r in plan.clips for f in r.frames})
    return meta.uri, meta, frames


def _span_decode(uri: str, meta: Any, frames: list[int], pts: tuple[int, ...]) -> None:
    """Decode from the keyframe before ``frames[0]`` to ``frames[-1]`` (``pts``: every
    frame's timestamp, known in advance)."""
    keys = sorted(set(meta.keyframes) | {0})
    key = keys[bisect.bisect_right(keys, frames[0]) - 1]
    with av.open(uri) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "NONE"
        if key:
            container.seek(pts[key], stream=stream, backward=True)
        want = frames[-1] - key + 1
        for i, _ in enumerate(container.decode(stream)):
            if i + 1 >= want:
                break


def steps(visits: list, size: tuple[int, int]) -> dict[str, Callable[[Any], None]]:
    """The timed steps, each a function of one visit."""
    from workers.decode import open_video
    from workers.probe import frame_table
    from workers.video_stage import VideoStage  # noqa: F401  (same imports as the stage)

    tables = {_reads(v)[0]: frame_table(_reads(v)[0]) for v in visits}
    baseline = PyAVClipDataset(visits, size)
    index = {id(v): i for i, v in enumerate(visits)}

    def reader(visit: Any, cached: bool = False) -> None:
        uri, meta, frames = _reads(visit)
        with open_video(uri, meta=meta, threads=1) as r:
            if cached:
                r._table = tables[uri]  # type: ignore[attr-defined]  # what a pts column would give
            r.frames(frames, size=size)

    def open_close(visit: Any) -> None:
        uri, meta, _ = _reads(visit)
        open_video(uri, meta=meta, threads=1).close()

    decoded = {}  # the clips each visit's row carries out of the stage, decoded once up front
    for v in visits:
        uri, meta, frames = _reads(v)
        with open_video(uri, meta=meta, threads=1) as r:
            decoded[id(v)] = [r.frames(frames, size=size)]

    return {
        "open": open_close,
        "seek_table": lambda v: frame_table(_reads(v)[0]),
        "span_decode": lambda v: _span_decode(*_reads(v), tables[_reads(v)[0]].pts),
        "reader": reader,
        "reader_cached_table": lambda v: reader(v, cached=True),
        "stage_pickle": lambda v: pickle.loads(pickle.dumps(decoded[id(v)], protocol=5)),
        "baseline": lambda v: baseline[index[id(v)]],
    }


def breakdown(visits: list, size: tuple[int, int] = (112, 112)) -> dict[str, float]:
    """CPU milliseconds per sample of every step (total CPU over the visits / visits)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as torch does in every DataLoader worker
    try:
        out: dict[str, float] = {}
        for name, step in steps(visits, size).items():
            start = time.process_time()
            for visit in visits:
                step(visit)
            out[name] = 1000 * (time.process_time() - start) / len(visits)
        return out
    finally:
        torch.set_num_threads(threads)
