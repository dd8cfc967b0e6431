"""Decode benchmark: DALI on NVDEC with 1-32 concurrent decoders beside PyAV on every core.

    python -m workers.decode.bench_gpu --out runs/gpu-check [--seconds 3] [--cpu-only]

Every measurement decodes whole videos at 340x256 (the Kinetics-like ``test.mp4`` and
``demo.mp4`` of ``../shared/media/mmaction2``), all frames in order, resized to (256, 340)
RGB as the stage would deliver them, and counts frames per second of wall time:

- ``dali-batch``: one DALI pipeline whose batch holds N videos; DALI decodes the samples
  of a batch in parallel, so N is the number of concurrent NVDEC sessions. Frames stay on
  the GPU (the colocated case).
- ``dali-pipelines``: N pipelines of one video each, driven from N Python threads (DALI
  releases the GIL while it runs).
- ``dali-batch-host``: ``dali-batch`` at the highest N with frames copied to host arrays,
  as the disaggregated placement delivers them.
- ``pyav``: a process pool, one PyAV decoder per process, for 1 process and for every core.
  PyAV's rate per core is the CPU ceiling of the performance model.

It also measures how far NVDEC frames are from PyAV's (min PSNR per file), the number the
``gpu`` tests bound with ``DALI_GPU_PSNR_DB``. Without a GPU the GPU half is skipped (and
said so) and the CPU half still runs. Full numbers go to ``OUT/bench_gpu.json``; a short
table is printed last.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

MEDIA = Path(__file__).resolve().parents[2] / ".." / "shared" / "media"
BENCH_FILES = ("mmaction2/tests/data/test.mp4", "mmaction2/demo/demo.mp4")
# Files whose NVDEC frames are compared with PyAV's (codecs NVDEC takes, real media).
PSNR_FILES = BENCH_FILES + (
    "torchcodec/test/resources/h265_video.mp4",
    "torchcodec/test/resources/av1_video.mkv",
    "torchcodec/test/resources/nasa_13013.mp4",
    "moviepy/media/transparent.webm",
    "DALI_extra/db/video/containers/mov/cfr.mov",
)
SIZE = (256, 340)  # (H, W): 340x256
CONCURRENCY = (1, 2, 4, 8, 16, 32)
CHUNK = 32  # frames per PyAV call: keeps a worker's memory flat on long videos


def gpu_reason() -> str | None:
    """Why the GPU half cannot run here, or None when it can."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU (torch.cuda.is_available() is False)"
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return "nvidia-dali is not installed"
    return None


def machine() -> dict[str, Any]:
    """What ran the benchmark: host, cores, GPU and library versions."""
    import av

    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "pyav": av.__version__,
    }
    try:
        import nvidia.dali

        info["dali"] = nvidia.dali.__version__
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


# --- CPU half: PyAV ------------------------------------------------------------------------


def _pyav_worker(uri: str, seconds: float) -> tuple[int, float]:
    """Decode ``uri`` whole, again and again, for about ``seconds`` (at least once);
    returns (frames, elapsed)."""
    from workers.decode import open_video
    from workers.probe import probe

    meta = probe(uri)  # once: the manifest's job, not the decoder's
    frames, start = 0, time.perf_counter()
    while True:
        with open_video(uri, backend="pyav", meta=meta, threads=1) as r:  # one core each
            n = r.meta.num_frames
            for s in range(0, n, CHUNK):
                frames += len(r.frames(range(s, min(s + CHUNK, n)), size=SIZE))
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return frames, elapsed


def pyav_rate(uri: str, processes: int, seconds: float) -> dict[str, Any]:
    """Frames/s of ``processes`` PyAV decoders in parallel (the sum of their rates)."""
    # spawn: the parent may hold CUDA and DALI threads, which a fork would copy half-alive.
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        list(pool.map(_pyav_worker, [uri] * processes, [0.0] * processes))  # warm-up
        done = list(pool.map(_pyav_worker, [uri] * processes, [seconds] * processes))
    rate = sum(f / t for f, t in done)
    return {"processes": processes, "frames": sum(f for f, _ in done), "fps": round(rate, 1)}


# --- GPU half: DALI on NVDEC ---------------------------------------------------------------


def _requests(uri: str, copies: int) -> list[Any]:
    """``copies`` whole-video requests, as distinct videos (the decoder merges equal uris)."""
    from dataclasses import replace

    from workers.decode._dali import ClipRequest, read_encoded
    from workers.probe import probe

    meta, data = probe(uri), read_encoded(uri)
    frames = tuple(range(meta.num_frames))
    return [ClipRequest(replace(meta, uri=f"{uri}#{i}"), frames, SIZE, data) for i in range(copies)]


def _drive(decoder: Any, requests: list[Any], seconds: float, host: bool = False
           ) -> tuple[int, float]:
    """Run ``decoder`` over ``requests`` until ``seconds`` pass (at least twice).

    ``host``: copy frames to host arrays (the disaggregated placement) instead of leaving
    them on the GPU as torch tensors (the colocated one).
    """
    import torch

    decode = decoder.decode if host else decoder.decode_torch
    decode(requests)  # warm-up: pipeline build, NVDEC session creation
    torch.cuda.synchronize()
    frames, runs, start = 0, 0, time.perf_counter()
    while runs < 2 or time.perf_counter() - start < seconds:
        frames += sum(len(t) for t in decode(requests))
        runs += 1
    torch.cuda.synchronize()
    return frames, time.perf_counter() - start


def dali_batch_rate(uri: str, n: int, seconds: float, host: bool = False) -> dict[str, Any]:
    """One pipeline, N videos per batch decoded in parallel."""
    from workers.decode._dali import DALIBatchDecoder

    dec = DALIBatchDecoder("gpu", batch_size=n, num_threads=min(n, os.cpu_count() or 1))
    frames, elapsed = _drive(dec, _requests(uri, n), seconds, host)
    return {"mode": "dali-batch-host" if host else "dali-batch", "concurrency": n,
            "frames": frames, "fps": round(frames / elapsed, 1), "fallbacks": dec.fallbacks}


def dali_pipelines_rate(uri: str, n: int, seconds: float) -> dict[str, Any]:
    """N one-video pipelines, each driven by its own thread."""
    from workers.decode._dali import DALIBatchDecoder

    decoders = [DALIBatchDecoder("gpu", batch_size=1, num_threads=1) for _ in range(n)]
    requests = _requests(uri, 1)
    results: list[tuple[int, float]] = [(0, 1.0)] * n
    barrier = threading.Barrier(n)

    def work(i: int) -> None:
        barrier.wait()
        results[i] = _drive(decoders[i], requests, seconds)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rate = sum(f / t for f, t in results)
    return {"mode": "dali-pipelines", "concurrency": n, "frames": sum(f for f, _ in results),
            "fps": round(rate, 1), "fallbacks": sum(d.fallbacks for d in decoders)}


def nvdec_psnr(uri: str) -> dict[str, Any]:
    """Min and mean PSNR (dB) of NVDEC frames against PyAV's, native size, every frame."""
    from workers.decode import open_video

    with open_video(uri, backend="pyav") as ref:
        n = ref.meta.num_frames
        expected = ref.frames(range(n))
    with open_video(uri, backend="dali", device="gpu") as r:
        got = r.frames(range(n))
        fallbacks = r.fallbacks  # type: ignore[attr-defined]
    mse = ((got.astype(np.float64) - expected) ** 2).reshape(n, -1).mean(axis=1)
    psnr = 10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))
    return {"frames": n, "min_db": round(float(psnr.min()), 2),
            "mean_db": round(float(psnr.mean()), 2), "fallbacks": fallbacks}


# --- driver --------------------------------------------------------------------------------


def run(out: Path, seconds: float, cpu_only: bool, concurrency: tuple[int, ...]) -> dict[str, Any]:
    """Both halves (or the CPU half); returns and writes the full numbers."""
    files = [str(MEDIA / f) for f in BENCH_FILES if (MEDIA / f).exists()]
    if not files:
        raise SystemExit(f"no benchmark media under {MEDIA}")
    cores = os.cpu_count() or 1
    result: dict[str, Any] = {"machine": machine(), "size_hw": list(SIZE), "seconds": seconds,
                              "pyav": {}, "dali": {}, "psnr": {}}
    for uri in files:
        name = Path(uri).name
        result["pyav"][name] = [pyav_rate(uri, p, seconds) for p in sorted({1, cores})]
    skip = "--cpu-only was given" if cpu_only else gpu_reason()
    result["gpu_skipped"] = skip
    if skip is None:
        for uri in files:
            rows = [f(uri, n, seconds) for n in concurrency
                    for f in (dali_batch_rate, dali_pipelines_rate)]
            # The same at the highest concurrency with host copies: what disaggregated pays.
            rows.append(dali_batch_rate(uri, max(concurrency), seconds, host=True))
            result["dali"][Path(uri).name] = rows
        for rel in PSNR_FILES:
            if (MEDIA / rel).exists():
                result["psnr"][rel] = nvdec_psnr(str(MEDIA / rel))
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_gpu.json").write_text(json.dumps(result, indent=2))
    return result


def table(result: dict[str, Any]) -> str:
    """The short summary: frames/s per file, PyAV beside DALI at each concurrency."""
    h, w = result["size_hw"]
    where = f"{result['machine'].get('gpu', 'no GPU')}, {result['machine']['cores']} cores"
    lines = [f"decode at {w}x{h}, frames/s ({where})"]
    for name, rows in result["pyav"].items():
        cpu = ", ".join(f"{r['processes']} proc {r['fps']:.0f}" for r in rows)
        lines.append(f"{name:10s} pyav: {cpu}")
        for r in result["dali"].get(name, []):
            lines.append(f"{name:10s} {r['mode']:15s} x{r['concurrency']:<3d} {r['fps']:>9.0f}")
    if result["gpu_skipped"]:
        lines.append(f"GPU half skipped: {result['gpu_skipped']}")
    for rel, p in result["psnr"].items():
        lines.append(f"NVDEC vs PyAV {Path(rel).name}: min {p['min_db']} dB, mean {p['mean_db']} dB"
                     + (f" (PyAV fallback: {p['fallbacks']})" if p["fallbacks"] else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("runs/gpu-check"))
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--cpu-only", action="store_true", help="skip the GPU half")
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    args = parser.parse_args(argv)
    conc = tuple(int(c) for c in args.concurrency.split(","))
    result = run(args.out, args.seconds, args.cpu_only, conc)
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
