"""The PyAV reader: seeking with the keyframe index against a plain sequential decode,
resizing against ffmpeg's command line, errors, and the work it saves (decoded-frame counts)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
import pytest

from tests._synth import write_video
from tests.conftest import media
from workers.decode import open_video
from workers.decode._frames import wanted_slots
from workers.decode._pyav import PyAVReader
from workers.errors import CorruptMediaError, TooManyPixelsError

TEST_MP4 = "mmaction2/tests/data/test.mp4"  # H.264 340x256, 300 frames, keyframes 0, 235


@lru_cache(maxsize=8)
def sequential(path: str, stream_index: int | None = None) -> np.ndarray:
    """Every frame of a stream, decoded front to back by plain PyAV: the reference order."""
    return sequential_at(path, None, stream_index)


def sequential_at(path: str, wanted: list[int] | None, stream_index: int | None = None) -> np.ndarray:
    """Frames ``wanted`` (all when None) of a plain front-to-back PyAV decode, in that order."""
    keep = None if wanted is None else set(wanted)
    got: dict[int, np.ndarray] = {}
    with av.open(path) as c:
        stream = c.streams.best("video") if stream_index is None else c.streams[stream_index]
        frames: Iterator[av.VideoFrame] = c.decode(stream)  # type: ignore[assignment]
        for i, frame in enumerate(frames):
            if keep is None or i in keep:
                got[i] = frame.to_ndarray(format="rgb24")
    return np.stack([got[i] for i in (sorted(got) if wanted is None else wanted)])


def ffmpeg_rgb(path: Path | str, *vf: str) -> np.ndarray:
    """``ffmpeg -i X [-vf ...] -fps_mode passthrough -pix_fmt rgb24`` frames (H, W from probing the output)."""
    import imageio_ffmpeg

    args = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path)]
    if vf:
        args += ["-vf", ",".join(vf)]
    args += ["-fps_mode", "passthrough", "-pix_fmt", "rgb24", "-f", "rawvideo", "-"]
    return np.frombuffer(subprocess.run(args, check=True, capture_output=True).stdout, np.uint8)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """120 lossless frames, a keyframe every 12: decoded must equal written."""
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    return path, write_video(path, n=120, gop=12)


@pytest.fixture(scope="module")
def bclip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """120 frames with B-frames (decode order != presentation order), a keyframe every 12;
    the reference is a sequential decode."""
    path = tmp_path_factory.mktemp("media") / "bclip.mp4"
    write_video(path, n=120, gop=12, lossless=False)
    return path, sequential(str(path))


# -- frame selection ------------------------------------------------------------------------


def test_wanted_slots_groups_duplicates() -> None:
    assert wanted_slots([9, 2, 9, 5]) == [(2, [1]), (5, [3]), (9, [0, 2])]


@pytest.mark.parametrize(
    "indices",
    [
        [0, 1, 2, 3],  # dense at the start
        [119, 0, 60, 61, 5],  # unordered, across GOPs
        [30, 30, 29, 30],  # duplicates
        list(range(40, 80)),  # a long dense run crossing keyframes
        [11, 12, 13],  # the frames around a keyframe
    ],
)
@pytest.mark.parametrize("which", ["clip", "bclip"])
def test_frames_are_the_reference_ones(
    request: pytest.FixtureRequest, which: str, indices: list[int]
) -> None:
    path, reference = request.getfixturevalue(which)
    with open_video(str(path)) as r:
        got = r.frames(indices)
    assert got.dtype == np.uint8 and got.shape == (len(indices), 48, 64, 3)
    np.testing.assert_array_equal(got, reference[indices])


def test_mkv_with_millisecond_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "clip.mkv"
    written = write_video(path, n=60, gop=10, audio_rate=16000)
    with open_video(str(path)) as r:
        np.testing.assert_array_equal(r.frames([55, 3, 31]), written[[55, 3, 31]])


@pytest.mark.parametrize("which", ["clip", "bclip"])
def test_sparse_plan_decodes_only_the_gops_it_needs(request: pytest.FixtureRequest, which: str) -> None:
    path, written = request.getfixturevalue(which)
    with PyAVReader(str(path)) as r:
        got = r.frames([100, 5, 50])
        # keyframes every 12: decode 0..5, 48..50, 96..100 = 6 + 3 + 5 frames of 120
        assert r.stats.decoded == 14 and r.stats.seeks == 2
        assert r.stats.decoded_per_delivered() < 5
    np.testing.assert_array_equal(got, written[[100, 5, 50]])


@pytest.mark.parametrize("which", ["clip", "bclip"])
def test_one_late_frame_never_decodes_from_the_start(request: pytest.FixtureRequest, which: str) -> None:
    path, written = request.getfixturevalue(which)
    with PyAVReader(str(path)) as r:
        np.testing.assert_array_equal(r.frames([119]), written[[119]])
        assert r.stats.decoded <= 12  # keyframe 108 .. 119


def test_later_calls_continue_the_open_decoder(clip: tuple[Path, np.ndarray]) -> None:
    path, written = clip
    with PyAVReader(str(path)) as r:
        r.frames([2])
        r.frames([4, 5])
        assert (r.stats.decoded, r.stats.seeks) == (6, 0)  # 0..5 once, no seek
        np.testing.assert_array_equal(r.frames([1]), written[[1]])  # backwards: seek again
        assert r.stats.seeks == 1


def test_dense_clips_decode_about_one_frame_per_frame(clip: tuple[Path, np.ndarray]) -> None:
    path, _ = clip
    with PyAVReader(str(path)) as r:
        for start in (20, 70, 100):
            r.frames(list(range(start, start + 16)))
        # each 16-frame clip pays at most the frames from its keyframe to its start
        assert r.stats.decoded_per_delivered() < 1.5


@pytest.mark.parametrize(
    "rel",
    [
        TEST_MP4,
        "decord/examples/flipping_a_pancake.mkv",  # Matroska, keyframes 0, 150, 300
        "moviepy/media/transparent.webm",  # VP9, keyframes 0, 128
        "torchcodec/test/resources/h265_video.mp4",  # HEVC with B-frames: MP4 seeks by dts
        "torchcodec/test/resources/var_fps_video.mp4",  # variable frame rate
        "decord/tests/test_data/unordered.mov",  # B-frames, 4 frames
        "mmaction2/tests/data/test.avi",  # packed B-frames: pts out of order, output order counts
    ],
)
def test_real_media_seeks_match_sequential_decode(rel: str) -> None:
    path = str(media(rel))
    full = sequential(path)
    n = len(full)
    rng = np.random.default_rng(7)
    plans = [
        sorted(rng.choice(n, size=min(n, 6), replace=False).tolist()),
        rng.choice(n, size=min(n, 6), replace=True).tolist(),  # unordered, with repeats
        [n - 1, 0, n // 2],
    ]
    with PyAVReader(path) as r:
        assert r.meta.num_frames == n
        for plan in plans:
            np.testing.assert_array_equal(r.frames(plan), full[plan])


def test_sparse_plan_on_real_media_beats_decoding_everything() -> None:
    path = str(media(TEST_MP4))
    full = sequential(path)
    plan = [240, 250, 260, 270]  # all after keyframe 235
    with PyAVReader(path, threads=1) as r:
        np.testing.assert_array_equal(r.frames(plan), full[plan])
        assert r.stats.decoded == 270 - 235 + 1 and r.stats.seeks == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "rel", ["mv-extractor/vid_h264.264", "DALI_extra/db/video/containers/mpeg/cfr.mpeg"]
)
def test_streams_without_timestamps_rewind_by_reopening(rel: str) -> None:
    path = str(media(rel))
    with PyAVReader(path) as r:
        last = r.meta.num_frames - 1
        ref = sequential_at(path, [last, 3, 3, 100])
        np.testing.assert_array_equal(r.frames([last]), ref[:1])
        np.testing.assert_array_equal(r.frames([3, 3, 100]), ref[1:])
        # no seek index: forward from 0 to the end, then reopened and forward from 0 again
        assert (r.stats.decoded, r.stats.seeks) == (last + 1 + 101, 1)


# -- resizing and orientation ---------------------------------------------------------------


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "area"])
def test_resize_is_ffmpegs_scale_filter(interpolation: str) -> None:
    path = media(TEST_MP4)
    h, w = 112, 112
    ref = ffmpeg_rgb(path, f"scale={w}:{h}:flags={interpolation}").reshape(-1, h, w, 3)
    plan = [0, 17, 250]
    with open_video(str(path), interpolation=interpolation) as r:
        np.testing.assert_array_equal(r.frames(plan, size=(h, w)), ref[plan])


def test_resize_keeps_displayed_orientation() -> None:
    path = media("decord/tests/test_data/video_90.mov")  # displayed 320 wide, 568 high
    h, w = 96, 64
    ref = ffmpeg_rgb(path, f"scale={w}:{h}:flags=bilinear").reshape(-1, h, w, 3)
    with open_video(str(path)) as r:
        np.testing.assert_array_equal(r.frames([0, 2], size=(h, w)), ref[[0, 2]])


@pytest.mark.parametrize("angle", [0, 90, 180, 270])
def test_rotation_gives_the_displayed_frames(angle: int) -> None:
    path = media(f"decord/tests/test_data/video_{angle}.mov")
    shape = (320, 568) if angle in (0, 180) else (568, 320)
    ref = ffmpeg_rgb(path).reshape(-1, *shape, 3)
    with open_video(str(path)) as r:
        assert r.meta.rotation == angle
        np.testing.assert_array_equal(r.frames([0, 1, 2]), ref)


def test_other_stream_by_index() -> None:
    path = str(media("torchcodec/test/resources/nasa_13013.mp4"))
    with open_video(path, stream_index=0) as r:  # 320x180; the best stream is #3 (480x270)
        got = r.frames([30, 2, 2])
    np.testing.assert_array_equal(got, sequential_at(path, [30, 2, 2], stream_index=0))


# -- errors ---------------------------------------------------------------------------------


def test_indices_out_of_range_are_a_caller_bug(clip: tuple[Path, np.ndarray]) -> None:
    with open_video(str(clip[0])) as r:
        with pytest.raises(ValueError, match=r"frame indices \[120, -1\] out of range \[0, 120\)"):
            r.frames([0, 120, -1])
        with pytest.raises(ValueError, match="1-D sequence of ints"):
            r.frames([0.5])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="size"):
            r.frames([0], size=(0, 10))
        assert r.frames([]).shape == (0, 48, 64, 3)


def test_too_many_pixels_is_refused_before_decoding(clip: tuple[Path, np.ndarray]) -> None:
    with pytest.raises(TooManyPixelsError, match=r"64x48 = 3072 pixels > bound 3000"):
        open_video(str(clip[0]), max_pixels=3000)


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "empty file|Invalid data"), (b"not a video at all" * 50, "Invalid data")],
)
def test_unreadable_files_name_file_and_reason(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(CorruptMediaError, match=rf"broken\.mp4: ({reason})"):
        open_video(str(path))


def test_missing_file_and_missing_stream(tmp_path: Path) -> None:
    with pytest.raises(CorruptMediaError, match="nope.mp4: file not found"):
        open_video(str(tmp_path / "nope.mp4"))
    with pytest.raises(CorruptMediaError, match="no video stream"):
        open_video(str(media("mmaction2/tests/data/test.wav")))
    with pytest.raises(CorruptMediaError, match="no video stream #1"):
        open_video(str(media(TEST_MP4)), stream_index=1)


def test_corrupt_frames_raise_but_earlier_frames_decode() -> None:
    path = str(media("decord/tests/test_data/corrupted.mp4"))  # packet 30 is damaged
    with open_video(path) as r:
        assert r.frames(list(range(10))).shape == (10, 720, 1280, 3)
        with pytest.raises(CorruptMediaError, match=r"corrupted\.mp4: decoding failed .*Invalid data"):
            r.frames([45])


def test_bad_options(clip: tuple[Path, np.ndarray]) -> None:
    with pytest.raises(ValueError, match=r"threads \(0\) must be >= 1"):
        PyAVReader(str(clip[0]), threads=0)


@pytest.mark.parametrize("threads", [1, 2, None])
def test_thread_settings_give_the_same_frames(bclip: tuple[Path, np.ndarray], threads: int | None) -> None:
    path, reference = bclip
    plan = [100, 3, 64, 65, 3]
    with PyAVReader(str(path), threads=threads) as r, PyAVReader(str(path), threads=1) as one:
        np.testing.assert_array_equal(r.frames(plan), reference[plan])
        np.testing.assert_array_equal(r.frames(plan, size=(24, 32)), one.frames(plan, size=(24, 32)))


def test_benchmark_script_runs(clip: tuple[Path, np.ndarray], capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from workers.decode import bench

    assert bench.main(["--video", str(clip[0]), "--clips", "2"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = {(r["scenario"], r["threads"]): r for r in record["rows"]}
    assert rows[("sequential", "1")]["delivered"] == 120
    assert rows[("uniform8", "1")]["decoded_per_delivered"] < rows[("uniform8", "1")]["naive_per_delivered"]
