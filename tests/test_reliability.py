"""Reliability: bad media at run time, hostile input, hangs, crashes, dead actors, memory.

Without Ray: the quarantine file, the error budget, the crash ledger's protocol, the
watchdog on a stalled read (a FIFO that never delivers), a corpus of broken files through
the video stage, crafted playlists, a declared 8K frame and a path-traversal manifest.
With one local Ray: a decoder that kills its process on one file (bounded retries, then
quarantine), a run over the broken corpus that aborts past ``--max-errors`` and is resumed
while a decode actor is SIGKILLed (exact multiset of ids over both runs), and the object
store under a stalled consumer.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from pipelines.config import DataConfig, RunConfig, StageConfig, load_config
from pipelines.planner import Planner, Visit
from pipelines.quarantine import (
    CrashLedger,
    QuarantineRow,
    budget_message,
    error_budget,
    quarantine_rows,
    read_quarantine,
    split_error,
    write_quarantine,
)
from pipelines.synthetic import SyntheticSpec, generate
from tests._synth import write_8k
from tests.test_manifest import write_audio_only
from workers.errors import CorruptMediaError, DecodeTimeoutError, TooManyPixelsError
from workers.meta import VideoMeta, video_id_of
from workers.probe import probe
from workers.stage import Watchdog, encode_row

VCOP = {"vcop": {"clip_len": 6, "interval": 3}}
SPEC = SyntheticSpec(num_videos=6, num_frames=48, width=64, height=48, gop=12, seed=3,
                     classes=("right",))


# ------------------------------------------------------------------ media the tests break


def remux_faststart(src: Path, dst: Path) -> Path:
    """``src`` remuxed with the moov atom first, so a cut keeps the index and loses data."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return dst


# name -> (expected error_kind, reason pattern)
BROKEN = {
    "truncated": ("corrupt", r"never came out of the decoder|Invalid data|End of file"),
    "zero_bytes": ("corrupt", r"Invalid data|End of file"),
    "garbage": ("corrupt", r"Invalid data"),
    "missing_moov": ("corrupt", r"Invalid data|moov atom not found"),
    "no_video_stream": ("corrupt", r"no video stream"),
    "declared_8k": ("too_many_pixels", r"7680x4320 = 33177600 pixels > bound"),
}


def break_files(paths: list[Path], tmp: Path) -> dict[str, Path]:
    """Overwrite one good file per entry of BROKEN, after it was probed: the manifest says
    ok, the file on disk is broken (as a file damaged after indexing is)."""
    assert len(paths) >= len(BROKEN)
    out = dict(zip(BROKEN, paths))
    data = out["missing_moov"].read_bytes()
    assert data.find(b"moov") > len(data) // 2  # FFmpeg writes the index last
    out["missing_moov"].write_bytes(data[: data.find(b"moov") - 4])
    fast = remux_faststart(out["truncated"], tmp / "faststart.mp4").read_bytes()
    out["truncated"].write_bytes(fast[: int(len(fast) * 0.3)])
    out["zero_bytes"].write_bytes(b"")
    out["garbage"].write_bytes(np.random.default_rng(0).bytes(20000))
    write_audio_only(tmp / "audio.mp4")
    out["no_video_stream"].write_bytes((tmp / "audio.mp4").read_bytes())
    write_8k(tmp / "8k.mp4")
    out["declared_8k"].write_bytes((tmp / "8k.mp4").read_bytes())
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[VideoMeta], dict[str, Path]]:
    """12 videos indexed while good; then 6 of them are broken, one per kind of damage."""
    root = tmp_path_factory.mktemp("corpus")
    paths = generate(root / "videos", dataclasses.replace(SPEC, num_videos=12))
    metas = [probe(str(p)) for p in paths]
    return metas, break_files(paths[:len(BROKEN)], root)


def visits_of(metas: list[VideoMeta], epochs: int = 1, seed: int = 0) -> list[Visit]:
    planner = Planner(metas, VCOP, seed=seed, size=(32, 32))
    return [v for e in range(epochs) for v in planner.plan_epoch(e).visits]


def run_stage(stage, visits: list[Visit]) -> dict[str, np.ndarray]:
    rows = [encode_row(v.plans, v.metas) for v in visits]
    batch = {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]}
    return stage(batch)


# ------------------------------------------------------------------------- no Ray: files


def test_split_error_takes_the_known_uri_and_the_rest_is_the_reason() -> None:
    uris = ["/d/a.mp4", "/d/a.mp4.bak"]
    assert split_error("/d/a.mp4.bak: moov atom not found", uris) == ("/d/a.mp4.bak", "moov atom not found")
    assert split_error("/d/a.mp4: x: y", uris) == ("/d/a.mp4", "x: y")
    assert split_error("something else", uris) == ("", "something else")


def test_quarantine_rows_name_the_failing_file_and_round_trip(tmp_path: Path) -> None:
    a, b = VideoMeta(video_id_of("/d/a.mp4"), "/d/a.mp4"), VideoMeta(video_id_of("/d/b.mp4"), "/d/b.mp4")
    failed = [
        {"sample_id": 7, "video_id": a.video_id, "kind": "corrupt", "error": "/d/a.mp4: empty file"},
        # the sample of video a failed on its negative, b: the row names b
        {"sample_id": 3, "video_id": a.video_id, "kind": "timeout", "error": "/d/b.mp4: decode did not finish"},
    ]
    rows = quarantine_rows(failed, [a, b])
    assert rows == [QuarantineRow("/d/b.mp4", b.video_id, 3, "timeout", "decode did not finish"),
                    QuarantineRow("/d/a.mp4", a.video_id, 7, "corrupt", "empty file")]
    write_quarantine(rows, tmp_path / "quarantine.parquet")
    assert read_quarantine(tmp_path / "quarantine.parquet") == rows


def test_error_budget_and_its_message() -> None:
    assert error_budget(DataConfig(max_errors=5)) == 5
    assert error_budget(DataConfig(max_errors=5, error_policy="raise")) == 0
    assert budget_message(5, 5) is None
    assert budget_message(6, 5, "/d/a.mp4: empty file") == (
        "6 samples failed to decode, past the error budget of 5 (--max-errors); "
        "first: /d/a.mp4: empty file")


def test_crash_ledger_charges_a_death_to_the_row_that_caused_it() -> None:
    """The docstring's example: batch [a, b, c] dies on b twice; a and c are delivered."""
    ledger = CrashLedger(max_crashes=2)
    rows = [(1, 10), (2, 20), (3, 30)]  # (sample_id, video_id); sample 2 kills the decoder
    ledger.register("video", 100)
    assert ledger.busy("video") == []
    assert ledger.start_batch("video", 100, rows) == ("go", ["", "", ""])
    assert ledger.busy("video") == [100] and ledger.actors("video") == [100]
    # pid 100 died; the retry on pid 101 finds every row under one death: row by row.
    assert ledger.start_batch("video", 101, rows) == ("suspect", ["", "", ""])
    assert ledger.start_row("video", 101, 1, 10) == ""
    ledger.finish("video", 101, [1])
    assert ledger.start_row("video", 101, 2, 20) == ""  # dies again
    assert ledger.start_batch("video", 102, rows) == ("suspect", ["", "", ""])
    assert ledger.start_row("video", 102, 1, 10) == ""
    ledger.finish("video", 102, [1])
    assert ledger.start_row("video", 102, 2, 20) == "the video decoder process died 2 times on this sample"
    assert ledger.start_row("video", 102, 3, 30) == ""
    ledger.finish("video", 102, [3])
    # Another sample of video 20 is quarantined without being tried; other stages are not.
    assert ledger.start_batch("video", 102, [(9, 20), (8, 40)]) == (
        "go", ["the video decoder process died 2 times on this sample", ""])
    assert ledger.start_row("audio", 102, 9, 20) == ""
    s = ledger.summary()
    assert s["quarantined_after_deaths"] == 1 and s["retried_after_death"] == 3


# ---------------------------------------------------------------------- no Ray: watchdog


def test_watchdog_cuts_a_hang_and_passes_results_and_errors_through() -> None:
    dog = Watchdog(0.3)
    t0 = time.perf_counter()
    with pytest.raises(DecodeTimeoutError, match=r"^/d/a.mp4: decode did not finish within 0.3 s"):
        dog.run(lambda: time.sleep(3), "/d/a.mp4")
    assert time.perf_counter() - t0 < 2.0
    assert dog.timeouts == 1 and dog.stuck() == 1
    assert dog.run(lambda: 42, "/d/b.mp4") == 42
    with pytest.raises(CorruptMediaError, match="bad"):
        dog.run(lambda: (_ for _ in ()).throw(CorruptMediaError("/d/c.mp4", "bad")), "/d/c.mp4")
    assert Watchdog(0).run(lambda: threading.current_thread(), "x") is threading.current_thread()


@pytest.fixture
def stalled_fifo(tmp_path: Path):
    """A named pipe posing as a video: the writer sends the first 64 bytes, then stalls."""
    good = tmp_path / "good.mp4"
    generate(tmp_path / "v", dataclasses.replace(SPEC, num_videos=1))[0].rename(good)
    fifo = tmp_path / "stalled.mp4"
    os.mkfifo(fifo)
    release = threading.Event()

    def writer() -> None:
        with open(fifo, "wb") as f:
            f.write(good.read_bytes()[:64])
            f.flush()
            release.wait(30)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    yield good, fifo
    release.set()
    thread.join(5)


def test_a_stalled_read_is_cut_by_the_watchdog_and_the_batch_goes_on(stalled_fifo) -> None:
    from workers.video_stage import VideoStage

    good, fifo = stalled_fifo
    meta = probe(str(good))
    stalled = dataclasses.replace(meta, uri=str(fifo), video_id=video_id_of(str(fifo)))
    data = DataConfig(size=(32, 32), sample_timeout_s=1.0)
    stage = VideoStage(data, StageConfig())
    t0 = time.perf_counter()
    out = run_stage(stage, visits_of([meta, stalled]))
    assert time.perf_counter() - t0 < 8.0
    kinds = dict(zip(out["video_id"].tolist(), out["error_kind"].tolist()))
    assert kinds == {meta.video_id: "", stalled.video_id: "timeout"}
    err = next(e for e in out["error"] if e)
    assert err == f"{fifo}: decode did not finish within 1 s (watchdog)"


# ----------------------------------------------------------- no Ray: broken and hostile


def test_every_broken_file_becomes_a_masked_row_with_its_kind_and_reason(corpus) -> None:
    from workers.video_stage import VideoStage

    metas, broken = corpus
    out = run_stage(VideoStage(DataConfig(size=(32, 32)), StageConfig()), visits_of(metas))
    by_uri = {m.video_id: m.uri for m in metas}
    got = {by_uri[v]: (k, e) for v, k, e in zip(out["video_id"], out["error_kind"], out["error"])}
    for name, path in broken.items():
        kind, reason = BROKEN[name]
        assert got[str(path)][0] == kind, (name, got[str(path)])
        assert got[str(path)][1].startswith(f"{path}: ") and re.search(reason, got[str(path)][1]), name
    good = set(by_uri.values()) - {str(p) for p in broken.values()}
    assert all(got[u] == ("", "") for u in good)


def test_a_declared_8k_stream_is_refused_before_any_frame_is_decoded(tmp_path: Path) -> None:
    from workers.decode import open_video

    path = write_8k(tmp_path / "8k.mp4")
    with pytest.raises(TooManyPixelsError, match=r"8k.mp4: 7680x4320 = 33177600 pixels > bound 9437184"):
        open_video(str(path), max_pixels=DataConfig().max_pixels)


@pytest.mark.parametrize("name,text", [
    ("playlist.mp4", "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{target}\n#EXT-X-ENDLIST\n"),
    ("concat.mp4", "ffconcat version 1.0\nfile '{target}'\n"),
    ("concat_protocol.mp4", "ffconcat version 1.0\nfile 'concat:{target}|{target}'\n"),
])
def test_a_crafted_playlist_cannot_make_ffmpeg_read_another_file(tmp_path: Path, name: str, text: str) -> None:
    """The playlist points at a real, readable video: refused by the format whitelist."""
    from workers.decode import open_video

    target = generate(tmp_path / "v", dataclasses.replace(SPEC, num_videos=1))[0]
    crafted = tmp_path / name
    crafted.write_text(text.format(target=target))
    with pytest.raises(CorruptMediaError, match=re.escape(str(crafted))):
        probe(str(crafted))
    with pytest.raises(CorruptMediaError, match=re.escape(str(crafted))):
        open_video(str(crafted), meta=dataclasses.replace(probe(str(target)), uri=str(crafted)))


def test_a_manifest_escaping_its_root_is_refused(tmp_path: Path) -> None:
    from pipelines.manifest import read_manifest, write_manifest
    from pipelines.pretrain import check_uris
    from workers.errors import UnsafePathError

    root = tmp_path / "data"
    evil = [VideoMeta(1, str(root / "a.mp4")), VideoMeta(2, f"{root}/../../etc/passwd")]
    write_manifest(evil, tmp_path / "manifest.parquet")
    with pytest.raises(UnsafePathError, match=r"etc/passwd: escapes the dataset root"):
        read_manifest(tmp_path / "manifest.parquet", root=str(root))
    with pytest.raises(UnsafePathError, match=r"'\.\.' in a path is not allowed"):
        check_uris(read_manifest(tmp_path / "manifest.parquet"))
    assert len(check_uris(read_manifest(tmp_path / "manifest.parquet", root=None)[:1])) == 1


# ------------------------------------------------------------------------------ with Ray


def _crashing_stage():
    """A video stage that kills its own process on any file named ``crash*`` (as a codec
    segfault would); a class local to a function, so Ray ships it by value."""
    from workers.video_stage import VideoStage

    class CrashingVideoStage(VideoStage):
        def fill(self, plans, decoded):
            if "crash" in Path(self._uri(plans)).name:
                os._exit(11)
            super().fill(plans, decoded)

    return CrashingVideoStage


@pytest.mark.ray
@pytest.mark.slow
def test_a_file_that_kills_the_decoder_is_retried_then_quarantined(ray_local, tmp_path: Path) -> None:
    import ray

    from pipelines.quarantine import start_ledger, stop_ledger

    paths = generate(tmp_path / "v", dataclasses.replace(SPEC, num_videos=4))
    crash = paths[0].with_name("crash.mp4")
    paths[0].rename(crash)
    metas = [probe(str(p)) for p in [crash, *paths[1:]]]
    visits = visits_of(metas, epochs=2)
    data = DataConfig(size=(32, 32))
    ledger = start_ledger()
    try:
        ds = ray.data.from_items([encode_row(v.plans, v.metas) for v in visits], override_num_blocks=4)
        ds = ds.map_batches(_crashing_stage(), fn_constructor_args=(data, StageConfig()),
                            batch_format="numpy", batch_size=2, num_cpus=1,
                            compute=ray.data.ActorPoolStrategy(size=1))
        rows = ds.select_columns(["sample_id", "video_id", "error_kind", "error"]).take_all()
        summary = ray.get(ledger.summary.remote())
    finally:
        stop_ledger()
    assert sorted(r["sample_id"] for r in rows) == sorted(v.sample_id for v in visits)
    crashed = [r for r in rows if r["video_id"] == metas[0].video_id]
    assert len(crashed) == 2 and all(r["error_kind"] == "crash" for r in crashed), crashed
    assert crashed[0]["error"].startswith(f"{crash}: the video decoder process died 2 times")
    assert all(r["error_kind"] == "" for r in rows if r["video_id"] != metas[0].video_id)
    assert summary["quarantined_after_deaths"] == 1 and summary["retried_after_death"] >= 1


def run_config(manifest: str, out: Path, *extra: str) -> RunConfig:
    return load_config(overrides=[
        f"data.manifest={manifest}", f"train.out={out}", "train.workers=2", "train.batch_size=4",
        "train.epochs=3", "size=32x32", "task_params={vcop: {clip_len: 6, interval: 3}}",
        "video.concurrency=1:2", "video.batch_size=2", *extra,
    ])


def kill_a_decoder(after_rows: int, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL a video actor once ``after_rows`` rows were decoded: one with a decode in
    flight if one shows up within 2 s, else any live one (its queued tasks are retried)."""
    import ray

    from pipelines.quarantine import LEDGER_NAME

    since = None
    while not stop.is_set():
        time.sleep(0.02)
        try:
            ledger = ray.get_actor(LEDGER_NAME)
            if ray.get(ledger.summary.remote())["finished"] < after_rows:
                continue
            since = since or time.monotonic()
            pids = ray.get(ledger.busy.remote("video"))
            if not pids and time.monotonic() - since > 2:
                pids = ray.get(ledger.actors.remote("video"))
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue  # died already (a restarted actor has a new pid)
                killed.append(pid)
                return
        except (ValueError, ray.exceptions.RayError):
            pass  # the run's ledger is not up yet


@pytest.mark.ray
@pytest.mark.slow
def test_broken_corpus_aborts_past_the_budget_then_resumes_through_a_killed_actor(
    corpus, ray_local, tmp_path: Path
) -> None:
    """12 videos, 6 broken, 3 epochs = 36 samples of which 18 fail. Run 1 stops at its first
    step (8 samples of 12 videos hold at least 2 broken ones: past a budget of 1); the
    resumed run (budget 100) loses a decode actor to SIGKILL midway. Over both runs every
    planned id is delivered exactly once and every broken file is in quarantine.parquet
    with its kind and reason."""
    from pipelines.manifest import write_manifest
    from pipelines.pretrain import pretrain
    from pipelines.quarantine import ErrorBudgetExceeded

    metas, broken = corpus
    manifest = tmp_path / "manifest.parquet"
    write_manifest(metas, manifest)
    out = tmp_path / "run"
    with pytest.raises(ErrorBudgetExceeded, match=r"^\d+ samples failed to decode, past the error budget of 1"):
        pretrain(run_config(str(manifest), out, "data.max_errors=1"))
    first = read_quarantine(out / "quarantine.parquet")
    assert 1 < len(first) < 18

    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=kill_a_decoder, args=(4, killed, stop), daemon=True)
    killer.start()
    try:
        metrics = pretrain(run_config(str(manifest), out), resume=str(out))
    finally:
        stop.set()
        killer.join(5)
    assert killed, "no decode actor was killed"
    s = metrics["samples"]
    assert (s["expected"], s["delivered"], s["duplicated"], s["missing"]) == (36, 36, 0, 0), s
    assert s["failed"] == 18 and metrics["aborted"] is None
    assert metrics["decode_crashes"]["actors_seen"]["video"] >= 2  # the killed one was replaced
    rows = read_quarantine(out / "quarantine.parquet")
    assert len(rows) == 18 and {r.sample_id for r in first} <= {r.sample_id for r in rows}
    by_uri: dict[str, list[QuarantineRow]] = {}
    for r in rows:
        by_uri.setdefault(r.uri, []).append(r)
    assert set(by_uri) == {str(p) for p in broken.values()}
    for name, path in broken.items():
        kind, reason = BROKEN[name]
        assert len(by_uri[str(path)]) == 3  # one sample per epoch
        assert all(r.kind == kind and re.search(reason, r.reason) for r in by_uri[str(path)]), by_uri[str(path)]


def plasma_mib() -> tuple[int, int]:
    """(MiB in the object store now, MiB spilled so far), from Ray's memory summary."""
    import ray
    from ray._private.internal_api import memory_summary

    text = memory_summary(ray.get_runtime_context().gcs_address, stats_only=True)
    used = re.search(r"Plasma memory usage (\d+) MiB", text)
    spilled = re.search(r"Spilled (\d+) MiB", text)
    return int(used.group(1)) if used else 0, int(spilled.group(1)) if spilled else 0


@pytest.mark.ray
@pytest.mark.slow
def test_the_object_store_stays_bounded_while_the_consumer_stalls(ray_local, tmp_path: Path) -> None:
    """~180 MB of decoded clips (1.4 MB each) behind a 24 MiB cap: while the consumer sleeps,
    the pipeline stops at the cap instead of decoding everything into the object store."""
    from pipelines.dataset import build_dataset
    from pipelines.pretrain import ingest_options

    metas = [probe(str(p)) for p in generate(tmp_path / "v", SPEC)]
    run = load_config(overrides=["size=160x160", "train.workers=1", "train.batch_size=4",
                                 "video.concurrency=2:2", "video.batch_size=2"])
    planner = Planner(metas, VCOP, seed=0, size=run.data.size)
    visits = [v for e in range(22) for v in planner.plan_epoch(e).visits]  # 132 samples
    cap = 24 << 20
    ds = build_dataset(visits, run.data, planner.tasks)
    ds.context.execution_options = ingest_options(run, visits[0], min_bytes=cap, batches=1)
    assert ds.context.execution_options.resource_limits.object_store_memory == cap
    base, _ = plasma_mib()
    peak, rows = 0, 0
    for i, batch in enumerate(ds.iter_batches(batch_size=4, prefetch_batches=1)):
        rows += len(batch["sample_id"])
        if i == 0:  # the consumer stalls: 12 s is enough to decode everything twice over
            t_end = time.monotonic() + 12
            while time.monotonic() < t_end:
                peak = max(peak, plasma_mib()[0] - base)
                time.sleep(0.2)
    _, spilled = plasma_mib()
    total_mib = len(visits) * 18 * 160 * 160 * 3 / 2**20
    assert rows == len(visits)
    assert spilled == 0
    # It filled up to about the cap (the stall was long enough to matter) and stopped there;
    # measured here: a plateau at 42 MiB with the cap, 153 MiB at the peak without one.
    assert cap / 2**21 <= peak < 3 * cap / 2**20 < total_mib / 2, (peak, total_mib)


def test_flatness_is_the_slope_after_the_warm_up() -> None:
    from pipelines.soak import flatness

    f = flatness([0, 1000, 2000, 3000, 4000], [100, 400, 402, 401, 403], tolerance_mb=5)
    assert f["flat"] and f["slope_mb_per_1000"] == pytest.approx(0.8) and f["growth_mb"] == 3.0
    assert not flatness([1000, 2000, 3000], [400, 420, 440], tolerance_mb=5)["flat"]


def test_soak_judges_shared_pages_against_the_store_and_the_rest_by_slope() -> None:
    from pipelines.soak import Curve, summarize

    samples = [0, 1000, 2000, 3000, 4000]
    curve = Curve(samples, [0.0] * 5, {
        "driver private": [150, 160, 161, 160, 162],
        "driver shared": [10, 40, 70, 100, 130],      # climbs, but inside the store's pages
        "object store pages": [200, 218, 218, 218, 218],
        "actor private": [150, 170, 190, 210, 230],   # a leak
    })
    verdict = {k: v["held"] for k, v in summarize({"ray": curve}, tolerance_mb=5)["ray"].items()}
    assert verdict == {"driver private": True, "driver shared": True, "object store pages": True,
                       "actor private": False}
    curve.mb["object store pages"] = [100, 110, 120, 130, 140]  # the store itself grows
    curve.mb["driver shared"] = [100, 150, 200, 250, 300]
    summary = summarize({"ray": curve}, tolerance_mb=5)["ray"]
    assert not summary["object store pages"]["held"] and not summary["driver shared"]["held"]


def test_soak_reads_private_and_shared_pages_apart() -> None:
    """Private pages are what a leak grows; shared-memory pages (Ray's object store) are
    counted in every process that maps them, so the soak reads them apart."""
    import mmap
    from multiprocessing import shared_memory

    from pipelines.soak import memory_mb

    before = memory_mb()
    # Fresh anonymous pages (a malloc could hand back heap pages this process already holds).
    private = mmap.mmap(-1, 64 * 2**20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    shm = shared_memory.SharedMemory(create=True, size=48 * 2**20)
    try:
        np.frombuffer(private, dtype=np.uint8)[:] = 1  # written: resident
        np.frombuffer(shm.buf, dtype=np.uint8)[:] = 1
        after = memory_mb()
        assert 60 < after["private"] - before["private"] < 90, (before, after)
        assert 44 < after["shared"] - before["shared"] < 56, (before, after)
    finally:
        private.close()
        shm.close()
        shm.unlink()
    assert memory_mb(2**22 + 7) == {"private": 0.0, "shared": 0.0}  # no such process


def test_soak_finds_processes_by_their_title() -> None:
    """The train pass finds Ray's processes by name (a Ray worker's title,
    ``ray::SplitCoordinator...``); here: this test process, by its own name."""
    from pipelines._bench_monitor import process_name
    from pipelines.soak import ray_processes

    word = process_name(os.getpid())
    found = ray_processes([word, "no-such-title-f3c1"])
    assert found[os.getpid()] == f"{word} {os.getpid()}"
    assert "no-such-title-f3c1" not in " ".join(found.values())


def test_soak_writes_its_curve_and_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A few samples in-process (the real soak decodes thousands; see docs/benchmarks.md)."""
    import json

    from pipelines import soak

    long = dataclasses.replace(SPEC, num_videos=2, num_frames=72)  # default VCOP spans 64 frames
    monkeypatch.setattr(soak, "corpus", lambda spec: [probe(str(p)) for p in generate(tmp_path / "v", long)])
    soak.main(["--samples", "16", "--every", "4", "--size", "32", "--passes", "in-process",
               "--out", str(tmp_path / "soak")])
    result = json.loads((tmp_path / "soak" / "soak.json").read_text())
    assert result["curves"]["in-process"]["samples"] == [0, 4, 8, 12, 16]
    assert set(result["summary"]["in-process"]["in-process private"]) >= {"slope_mb_per_1000", "flat"}
    assert (tmp_path / "soak" / "soak.png").read_bytes()[:4] == b"\x89PNG"

