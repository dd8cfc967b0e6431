"""The manifest: probing real and broken media, safe paths, labels, Parquet, the index command."""

from __future__ import annotations

import json
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from av.video.frame import PictureType

from pipelines.manifest import (
    QUARANTINED,
    SCHEMA,
    ProbeOptions,
    expand,
    index_paths,
    labels_from_csv,
    labels_from_dirs,
    probe_row,
    read_manifest,
    read_table,
    safe_uri,
    write_manifest,
)
from tests._synth import write_8k
from tests.conftest import media
from workers.errors import CorruptMediaError, TooManyPixelsError, UnsafePathError
from workers.meta import VideoMeta, video_id_of
from workers.probe import audio_info, frame_table, is_vfr, probe

TC = "torchcodec/test/resources/"
MV = "mv-extractor/"

# ------------------------------------------------------------ facts of ../shared/media

# Every fact of the media README's table that a manifest column carries.
Facts = dict[str, object]
H264: Facts = {"video_codec": "h264"}
HEVC: Facts = {"video_codec": "hevc"}
MP3: Facts = {"audio_codec": "mp3"}
NO_AUDIO: Facts = {"has_audio": False}
TEN_BIT: Facts = {"num_frames": 30, "pix_fmt": "yuv420p10le"}
HD60: Facts = {**H264, "width": 1280, "height": 720, "avg_fps": 60.0, "num_frames": 180}
# fmt: off
FACTS: dict[str, Facts] = {
    "mmaction2/tests/data/test.mp4": {**H264, **NO_AUDIO, "width": 340, "height": 256,
                                      "avg_fps": 30.0, "num_frames": 300},
    "mmaction2/demo/demo.mp4": {**H264, "width": 340, "height": 256, "avg_fps": 28.0,
                                "num_frames": 280},
    "mmaction2/tests/data/test.avi": {"container": "avi", "video_codec": "mpeg4",
                                      "num_frames": 164, **MP3, "audio_sample_rate": 44100,
                                      "audio_channels": 2},
    "decord/examples/flipping_a_pancake.mkv": {**H264, "width": 426, "height": 240,
                                               "num_frames": 310, "audio_codec": "opus",
                                               "audio_channels": 1, "audio_sample_rate": 48000},
    "decord/tests/test_data/video_0.mov": {"num_frames": 3, "height": 320, "width": 568,
                                           "rotation": 0},
    "decord/tests/test_data/video_90.mov": {"num_frames": 3, "height": 568, "width": 320,
                                            "rotation": 90},
    "decord/tests/test_data/video_180.mov": {"num_frames": 3, "height": 320, "width": 568,
                                             "rotation": 180},
    "decord/tests/test_data/video_270.mov": {"num_frames": 3, "height": 568, "width": 320,
                                             "rotation": 270},
    "decord/tests/test_data/unordered.mov": {"width": 50, "height": 50, "num_frames": 4},
    MV + "vid_h264.mp4": {**H264, "width": 1280, "height": 720, "avg_fps": 25.0,
                          "num_frames": 337, "audio_codec": "aac", "audio_sample_rate": 48000,
                          "audio_channels": 6},
    MV + "vid_h264.264": {"container": "h264", **H264, "width": 640, "height": 360,
                          "num_frames": 337, **NO_AUDIO},
    "moviepy/media/big_buck_bunny_432_433.webm": {"video_codec": "vp8", "width": 1280,
                                                  "height": 720, "num_frames": 24,
                                                  "audio_codec": "vorbis",
                                                  "audio_sample_rate": 44100,
                                                  "audio_channels": 2},
    "moviepy/media/transparent.webm": {"video_codec": "vp9", "width": 200, "height": 200,
                                       "num_frames": 150, "audio_codec": "vorbis"},
    "moviepy/media/chaplin.mp4": {**H264, **MP3},
    "moviepy/media/video_with_failing_audio.mp4": {**H264, **MP3},
    TC + "h264_10bits.mp4": {**H264, **TEN_BIT},
    TC + "h265_10bits.mp4": {**HEVC, **TEN_BIT},
    "DALI_extra/db/video/containers/mov/cfr.mov": {"container": "mov", **HD60},
    "DALI_extra/db/video/containers/mpeg/cfr.mpeg": {"container": "mpeg", **HD60},
    TC + "var_fps_video.mp4": {**H264, "is_vfr": True, "pix_fmt": "yuv444p"},
    TC + "nasa_13013.mp4": {"width": 480, "height": 270, "audio_codec": "aac",
                            "audio_sample_rate": 16000},
    TC + "h265_video.mp4": HEVC,
    TC + "av1_video.mkv": {"video_codec": "av1"},
}
# fmt: on


@pytest.mark.parametrize("rel", sorted(FACTS))
def test_probe_gives_the_facts_of_every_real_file(rel: str) -> None:
    uri = str(media(rel))
    meta = probe(uri, verify=True)  # verify: every frame of these files decodes
    want = {"status": "ok", "is_vfr": rel.endswith("var_fps_video.mp4"), **FACTS[rel]}
    assert {k: getattr(meta, k) for k in want} == want
    assert meta.video_id == video_id_of(uri) and meta.uri == uri
    assert meta.size_bytes == Path(uri).stat().st_size
    assert meta.keyframes[0] == 0 and list(meta.keyframes) == sorted(set(meta.keyframes))
    assert meta.duration_s > 0 and meta.avg_fps > 0


@pytest.mark.parametrize(
    "rel", ["mmaction2/tests/data/test.avi", "decord/tests/test_data/unordered.mov"]
)
def test_files_with_b_frames_have_pts_out_of_decode_order(rel: str) -> None:
    with av.open(str(media(rel))) as c:
        pts = [int(p.pts or 0) for p in c.demux(c.streams.video[0]) if p.size]
    assert pts != sorted(pts)
    assert len(frame_table(str(media(rel))).pts) == len(pts)


def test_raw_h264_has_b_frames_no_timestamps_and_keyframes_from_the_decoder() -> None:
    uri = str(media(MV + "vid_h264.264"))
    with av.open(uri) as c:
        types = [PictureType(f.pict_type).name for f in c.decode(video=0)]
    table = frame_table(uri)
    assert "B" in types and table.pts == () and table.num_frames == len(types) == 337
    assert list(table.keyframes) == [i for i, t in enumerate(types) if t == "I"]


@pytest.mark.parametrize("name", ["h264", "mpeg4_part2"])
def test_keyframes_are_the_i_frames_of_the_mv_extractor_reference(name: str) -> None:
    types = media(f"{MV}tests/reference/{name}/frame_types.txt").read_text().split()
    meta = probe(str(media(f"{MV}vid_{name}.mp4")))
    assert meta.num_frames == len(types) == 337
    assert list(meta.keyframes) == [i for i, t in enumerate(types) if t == "I"]
    if name == "h264":  # 3 I, 334 P
        assert (types.count("I"), types.count("P")) == (3, 334)


@pytest.mark.parametrize(
    "video,stream",
    [("var_fps_video.mp4", 0), ("nasa_13013.mp4", 3)],
)
def test_presentation_times_match_ffprobe_for_every_frame(video: str, stream: int) -> None:
    info = json.loads(media(f"{TC}{video}.stream{stream}.all_frames_info.json").read_text())
    times = frame_table(str(media(TC + video))).times_s()
    assert len(times) == len(info)
    np.testing.assert_allclose(times, [float(f["pts_time"]) for f in info], atol=1e-6)


def test_pancake_and_unordered_first_presentation_times() -> None:
    pancake = frame_table(str(media("decord/examples/flipping_a_pancake.mkv"))).times_s()
    np.testing.assert_allclose(pancake[:5], [0, 0.033, 0.067, 0.1, 0.133], atol=1e-9)
    unordered = frame_table(str(media("decord/tests/test_data/unordered.mov")))
    assert list(unordered.times_s()) == [0, 0.03125, 0.0625, 0.09375]
    assert unordered.time_base == Fraction(1, 16384)


def test_nasa_best_streams_are_the_default_ones() -> None:
    with av.open(str(media(TC + "nasa_13013.mp4"))) as c:
        video, audio = c.streams.best("video"), c.streams.best("audio")
        assert video is not None and audio is not None and len(c.streams.video) > 1
        assert (video.index, audio.index) == (3, 4)


def test_mpeg_ps_declares_no_frame_count_but_counts_the_same_as_mov() -> None:
    mov, mpeg = (
        probe(str(media(f"DALI_extra/db/video/containers/{p}")))
        for p in ("mov/cfr.mov", "mpeg/cfr.mpeg")
    )
    with av.open(mpeg.uri) as c:
        assert c.streams.video[0].frames == 0
    assert mov.num_frames == mpeg.num_frames == 180 and mov.keyframes == mpeg.keyframes


def test_transparent_webm_is_vp9_with_alpha() -> None:
    with av.open(str(media("moviepy/media/transparent.webm"))) as c:
        assert c.streams.video[0].metadata.get("alpha_mode") == "1"


def test_wav_is_audio_only_and_its_audio_fields_are_right() -> None:
    uri = str(media("mmaction2/tests/data/test.wav"))
    with pytest.raises(CorruptMediaError, match="no video stream"):
        probe(uri)
    audio = audio_info(uri)
    assert (audio["audio_codec"], audio["audio_sample_rate"], audio["audio_channels"]) == (
        "pcm_s16le",
        16000,
        2,
    )
    assert round(audio["audio_duration_s"] * 16000) == 104908


def test_corrupted_mp4_counts_50_and_is_quarantined_only_with_verify() -> None:
    uri = str(media("decord/tests/test_data/corrupted.mp4"))
    assert probe(uri).num_frames == 50
    with pytest.raises(CorruptMediaError, match="only 49 of 50 frames decode: Invalid data"):
        probe(uri, verify=True)
    row = probe_row(uri, ProbeOptions(verify=True), "x", 3)
    assert (row.status, row.label, row.label_id) == (QUARANTINED, "x", 3)
    assert row.error.startswith("only 49 of 50 frames decode")


def test_is_vfr_tolerates_millisecond_rounding() -> None:
    assert not is_vfr([0, 33, 67, 100, 133, 167])
    assert is_vfr([0, 512, 1024, 2048, 2560])
    assert not is_vfr([0, 512])


# ----------------------------------------------------------------- generated broken media


def write_video(path: Path, *, frames: int = 6, size: tuple[int, int] = (32, 48)) -> Path:
    """A small H.264 MP4 (moov at the end, as FFmpeg writes it) with a moving bar."""
    h, w = size
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            img = np.zeros((h, w, 3), np.uint8)
            img[:, (4 * i) % w] = 255
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode(None))
    return path


def write_audio_only(path: Path) -> Path:
    """An MP4 holding only an AAC track: a 'video' file with no video stream."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000, layout="mono")
        for i in range(8):
            tone = np.sin(np.arange(1024) * 0.05 + i).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


@pytest.fixture
def broken(tmp_path: Path) -> dict[str, Path]:
    good = write_video(tmp_path / "good.mp4")
    data = good.read_bytes()
    assert data.find(b"moov") > len(data) // 2  # the cut below removes it
    files = {
        "empty": tmp_path / "empty.mp4",
        "garbage": tmp_path / "garbage.mkv",
        "truncated": tmp_path / "truncated.mp4",
    }
    files["empty"].write_bytes(b"")
    files["garbage"].write_bytes(np.random.default_rng(0).bytes(4096))
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["audio_only"] = write_audio_only(tmp_path / "audio_only.mp4")
    files["missing"] = tmp_path / "missing.mp4"
    return {"good": good, **files}


@pytest.mark.parametrize(
    "name,reason",
    [
        ("empty", ": empty file$"),
        ("garbage", ": Invalid data found"),
        ("truncated", r": Invalid data .*\(moov atom not found\)$"),
        ("audio_only", ": no video stream$"),
        ("missing", ": file not found$"),
    ],
)
def test_broken_files_become_quarantined_rows_with_the_reason(
    broken: dict[str, Path], name: str, reason: str
) -> None:
    uri = str(broken[name])
    with pytest.raises(CorruptMediaError, match=reason) as err:
        probe(uri)
    assert err.value.uri == uri
    row = probe_row(uri, ProbeOptions())
    assert row.status == QUARANTINED and row.error == err.value.reason
    assert row.video_id == video_id_of(uri) and row.num_frames == 0


def test_generated_video_probes_exactly(broken: dict[str, Path]) -> None:
    meta = probe(str(broken["good"]), verify=True)
    assert (meta.width, meta.height, meta.num_frames, meta.avg_fps) == (48, 32, 6, 10.0)
    assert meta.duration_s == pytest.approx(0.6) and meta.keyframes == (0,)


def test_too_many_pixels_refused_from_the_declared_size(broken: dict[str, Path]) -> None:
    with pytest.raises(TooManyPixelsError, match=r"48x32 = 1536 pixels > bound 1000"):
        probe(str(broken["good"]), max_pixels=1000)
    assert probe_row(str(broken["good"]), ProbeOptions(max_pixels=1000)).status == QUARANTINED


def test_a_declared_8k_frame_is_refused_by_the_default_bound(tmp_path: Path) -> None:
    path = write_8k(tmp_path / "8k.mp4")
    row = probe_row(str(path), ProbeOptions())
    assert row.status == QUARANTINED
    assert row.error == "7680x4320 = 33177600 pixels > bound 16777216"


# ------------------------------------------------------------------------- safe paths


@pytest.mark.parametrize(
    "path,root,match",
    [
        ("../secret.mp4", "/data", "escapes the dataset root /data"),
        ("cats/../../x.mp4", "/data", "escapes the dataset root"),
        ("/etc/passwd", "/data", "escapes the dataset root"),
        ("/data/../etc/x.mp4", None, r"'\.\.' in a path is not allowed"),
        ("../x.mp4", None, "escapes the dataset root"),
        ("s3://bucket/a/../../b.mp4", None, r"'\.\.' in a URI"),
        ("s3://other/a.mp4", "s3://bucket/data", "outside the dataset root"),
        ("http://example.com/a.mp4", None, "scheme 'http' is not allowed"),
        ("concat:a.mp4|b.mp4", None, "scheme 'concat' is not allowed"),
    ],
)
def test_unsafe_paths_are_refused_naming_the_path(path: str, root: str | None, match: str) -> None:
    with pytest.raises(UnsafePathError, match=match) as err:
        safe_uri(path, root=root)
    assert path in str(err.value)


def test_safe_paths_are_normalized() -> None:
    assert safe_uri("cats/./a.mp4", root="/data") == "/data/cats/a.mp4"
    assert safe_uri("/data/cats/a.mp4", root="/data/") == "/data/cats/a.mp4"
    assert safe_uri("file:///data/a.mp4") == "file:///data/a.mp4"
    assert safe_uri("s3://bucket/data/a.mp4", root="s3://bucket/data") == "s3://bucket/data/a.mp4"


def test_index_refuses_before_any_io(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_io(*args: object, **kw: object) -> None:
        raise AssertionError("touched the file system")

    monkeypatch.setattr("pipelines.manifest.expand", no_io)
    monkeypatch.setattr("pipelines.manifest.labels_from_csv", no_io)
    with pytest.raises(UnsafePathError, match=r"\.\./outside.mp4"):
        index_paths([str(tmp_path), "../outside.mp4"], root=str(tmp_path), labels="x.csv")


def test_expand_lists_videos_recursively_and_keeps_missing_files(tmp_path: Path) -> None:
    for rel in ["b/2.mp4", "a/1.MKV", "a/notes.txt", "a/deep/3.webm"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    missing = str(tmp_path / "gone.mp4")
    found = expand([str(tmp_path), missing, str(tmp_path / "b/2.mp4")])
    assert found == [str(tmp_path / r) for r in ["a/1.MKV", "a/deep/3.webm", "b/2.mp4"]] + [missing]
    uri = f"file://{tmp_path}"
    assert expand([uri])[0] == f"{uri}/a/1.MKV"


# ------------------------------------------------------------------------------ labels


def _paths(*stems: str) -> list[str]:
    return [f"/d/{s}.mp4" for s in stems]


def test_labels_from_path_csv_match_by_path_suffix(tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\ncats/a.mp4,cat\ndogs/a.mp4,dog\nb.mp4,bird\nzz.mp4,zebra\n")
    labels = labels_from_csv(str(csv))
    assert labels.names == ("bird", "cat", "dog", "zebra")
    found = [labels.lookup(p) for p in _paths("cats/a", "dogs/a", "x/b", "x/ab")]
    # "x/ab.mp4" is not "b.mp4": suffixes match on folder boundaries only
    assert found == [("cat", 1), ("dog", 2), ("bird", 0), ("", -1)]


def test_labels_from_kinetics_csv_match_both_file_namings(tmp_path: Path) -> None:
    csv = tmp_path / "kinetics.csv"
    csv.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "abseiling,0347ZoDXyP0,14,24,train\n"
        "zumba,--07WQ2iBlw,1,11,train\n"
        "air drumming,unmatched01,0,10,train\n"
    )
    labels = labels_from_csv(str(csv))
    assert labels.names == ("abseiling", "air drumming", "zumba")
    assert labels.lookup("/k/train/0347ZoDXyP0_000014_000024.mp4") == (
        "abseiling",
        0,
    )
    assert labels.lookup("/k/--07WQ2iBlw.mkv") == ("zumba", 2)
    assert labels.lookup("/k/other_000001_000011.mp4") == ("", -1)


def test_labels_csv_entries_may_not_escape_and_header_must_be_known(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\n../../etc/passwd,x\n")
    with pytest.raises(UnsafePathError, match=r"\.\./\.\./etc/passwd .*escapes"):
        labels_from_csv(str(bad))
    odd = tmp_path / "odd.csv"
    odd.write_text("file,class\na.mp4,x\n")
    with pytest.raises(ValueError, match="neither"):
        labels_from_csv(str(odd))


def test_labels_from_parent_folder(tmp_path: Path) -> None:
    for rel in ["walk/1.mp4", "run/2.mp4", "run/3.mp4"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    files = expand([str(tmp_path)])
    labels = labels_from_dirs(files)
    assert [labels.lookup(u) for u in files] == [("run", 0), ("run", 0), ("walk", 1)]


# ------------------------------------------------------------------------------ Parquet


def test_schema_round_trip_keeps_every_field(tmp_path: Path) -> None:
    ok = probe(str(media("decord/tests/test_data/video_90.mov")))
    ok = replace(ok, label="spin", label_id=4, motion=(0.5, 1.25, 0.0))
    bad = probe_row(str(tmp_path / "gone.mp4"), ProbeOptions(), "spin", 4)
    path = tmp_path / "m.parquet"
    write_manifest([ok, bad], path)
    assert pq.read_schema(path).equals(SCHEMA, check_metadata=True)
    assert read_manifest(path) == [ok]
    assert read_manifest(path, include_quarantined=True) == [ok, bad]
    assert set(SCHEMA.names) == {f for f in VideoMeta.__dataclass_fields__}


def test_older_manifest_without_new_columns_reads_with_defaults(tmp_path: Path) -> None:
    row = VideoMeta(video_id=1, uri="/d/a.mp4", num_frames=5, keyframes=(0,)).to_row()
    for col in ("motion", "pix_fmt"):
        row.pop(col)
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "old.parquet")
    (meta,) = read_manifest(tmp_path / "old.parquet")
    assert (meta.motion, meta.pix_fmt, meta.keyframes) == ((), "", (0,))
    assert read_table(tmp_path / "old.parquet").schema.equals(SCHEMA)


def test_reading_a_manifest_that_points_outside_its_root_is_refused(tmp_path: Path) -> None:
    write_manifest([VideoMeta(video_id=1, uri="/etc/shadow")], tmp_path / "m.parquet")
    with pytest.raises(UnsafePathError, match="/etc/shadow"):
        read_manifest(tmp_path / "m.parquet", root=str(tmp_path))


# ------------------------------------------------------------------------- with Ray


@pytest.fixture(scope="module")
def ray_local():
    import ray

    yield
    ray.shutdown()


@pytest.mark.ray
def test_index_command_on_a_small_folder(
    tmp_path: Path, ray_local: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli import main

    data = tmp_path / "data"
    (data / "jump").mkdir(parents=True)
    (data / "sit").mkdir()
    write_video(data / "jump" / "a.mp4", frames=5)
    write_video(data / "sit" / "b.mp4", frames=7)
    (data / "sit" / "c.mp4").write_bytes(b"")
    out = tmp_path / "m.parquet"
    rc = main(
        ["index", str(data), "-o", str(out), "--root", str(data), "--label-from-dir", "--verify"]
    )
    assert rc == 0
    rows = read_manifest(out, include_quarantined=True)
    assert [(Path(r.uri).name, r.status, r.label, r.label_id, r.num_frames) for r in rows] == [
        ("a.mp4", "ok", "jump", 0, 5),
        ("b.mp4", "ok", "sit", 1, 7),
        ("c.mp4", QUARANTINED, "sit", 1, 0),
    ]
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\njump/a.mp4,leap\nsit/c.mp4,rest\n")
    by_csv = index_paths([str(data)], root=str(data), labels=str(csv), progress=False)
    assert [(r.label, r.label_id) for r in by_csv.rows] == [("leap", 0), ("", -1), ("rest", 1)]
    assert by_csv.unlabeled == 1 and "without a label: 1" in by_csv.summary()
    shown = capsys.readouterr()
    assert "2 ok, 1 quarantined" in shown.out and "quarantined      1  empty file" in shown.out
    assert "probing 3/3 files (1 quarantined" in shown.err
    assert main(["index", "../elsewhere", "-o", str(out), "--root", str(data)]) == 2
    assert "refused: ../elsewhere: escapes the dataset root" in capsys.readouterr().err


def _crash_on(uris: list[str], options: ProbeOptions, labels: list[tuple[str, int]]) -> list:
    """A probe task that dies like a segfaulting FFmpeg on files named crash*."""
    import os

    if any("crash" in u for u in uris):
        os._exit(139)
    return [
        VideoMeta(video_id=video_id_of(u), uri=u, label=lab) for u, (lab, _) in zip(uris, labels)
    ]


@pytest.mark.ray
def test_a_file_that_kills_its_worker_is_quarantined_alone(ray_local: None) -> None:
    import ray

    from pipelines.manifest import _run_chunks
    from pipelines.runtime import init_ray

    init_ray(None)
    task = ray.remote(num_cpus=1, max_retries=0)(_crash_on)
    uris = ["/d/a.mp4", "/d/crash.mp4", "/d/c.mp4"]
    labels = [("x", 0)] * 3
    done = dict(_run_chunks(task, uris, ProbeOptions(), labels, [(0, 2), (2, 3)], window=2))
    rows = [row for start in sorted(done) for row in done[start]]
    assert [(Path(r.uri).name, r.status, r.error, r.label) for r in rows] == [
        ("a.mp4", "ok", "", "x"),
        ("crash.mp4", QUARANTINED, "probe process crashed", "x"),
        ("c.mp4", "ok", "", "x"),
    ]


def test_chunks_cover_every_file_once() -> None:
    from pipelines.manifest import _chunks

    assert _chunks(10, 4) == [(i, i + 1) for i in range(10)]
    big = _chunks(1000, 4)
    assert len(big) == 32 and big[-1] == (992, 1000)
    assert [i for s, e in big for i in range(s, e)] == list(range(1000))


@pytest.mark.ray
def test_index_with_motion(tmp_path: Path, ray_local: None) -> None:
    motion = pytest.importorskip("workers.motion", reason="workers.motion is not written yet")
    if not hasattr(motion, "mean_motion"):
        pytest.skip("workers.motion.mean_motion is not written yet")
    video = write_video(tmp_path / "a.mp4", frames=8, size=(64, 64))
    result = index_paths([str(video)], motion=True, progress=False)
    (row,) = result.rows
    assert row.status == "ok" and len(row.motion) == row.num_frames == 8
