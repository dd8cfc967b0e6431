"""One conformance suite for every decoder backend over every real media file.

Each (backend, file) pair the backend supports checks the frame count, the displayed frame
shape and orientation, frames against ffmpeg's command line and against torchcodec's
reference frames (PyAV bit-exact; other backends within their stated PSNR bound), and audio
against torchcodec's reference samples. A codec a backend does not decode is a skip that
says so. The suite also runs on clips it writes itself (lossless, with a tone).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests._synth import TONE_HZ, write_video
from tests.conftest import MEDIA, media
from workers.decode import VideoReader, open_video, psnr_bound, supports
from workers.decode._pyav_audio import AudioDecoder
from workers.errors import CorruptMediaError, UnsupportedCodecError

BACKENDS = [
    pytest.param(("pyav", "cpu"), id="pyav"),
    pytest.param(("dali", "cpu"), id="dali-cpu"),
    pytest.param(("dali", "gpu"), marks=pytest.mark.gpu, id="dali-gpu"),
]
RESOURCES = "torchcodec/test/resources"


@dataclass(frozen=True)
class Fact:
    """What a file must give: its codec, frame count and displayed (height, width)."""

    rel: str
    codec: str
    frames: int
    shape: tuple[int, int]
    rotation: int = 0
    # the ffmpeg CLI bundled for tests is FFmpeg 9, PyAV links FFmpeg 8.1: their swscale
    # converts 10-bit YUV to RGB differently, so 10-bit files are checked against PyAV's
    # own rgb24 conversion of a sequential decode (torchcodec's reference convention).
    cli_rgb: bool = True


FACTS = [
    Fact("mmaction2/tests/data/test.mp4", "h264", 300, (256, 340)),
    Fact("mmaction2/demo/demo.mp4", "h264", 280, (256, 340)),
    Fact("mmaction2/tests/data/test.avi", "mpeg4", 164, (240, 320)),
    Fact("decord/examples/flipping_a_pancake.mkv", "h264", 310, (240, 426)),
    Fact("decord/tests/test_data/video_0.mov", "h264", 3, (320, 568)),
    Fact("decord/tests/test_data/video_90.mov", "h264", 3, (568, 320), 90),
    Fact("decord/tests/test_data/video_180.mov", "h264", 3, (320, 568), 180),
    Fact("decord/tests/test_data/video_270.mov", "h264", 3, (568, 320), 270),
    Fact("decord/tests/test_data/unordered.mov", "h264", 4, (50, 50)),
    Fact("mv-extractor/vid_h264.mp4", "h264", 337, (720, 1280)),
    Fact("mv-extractor/vid_h264.264", "h264", 337, (360, 640)),
    Fact("mv-extractor/vid_mpeg4_part2.mp4", "mpeg4", 337, (720, 1280)),
    Fact("moviepy/media/big_buck_bunny_432_433.webm", "vp8", 24, (720, 1280)),
    Fact("moviepy/media/transparent.webm", "vp9", 150, (200, 200)),
    Fact("moviepy/media/chaplin.mp4", "h264", 241, (360, 640)),
    Fact("moviepy/media/video_with_failing_audio.mp4", "h264", 280, (360, 640)),
    Fact(f"{RESOURCES}/nasa_13013.mp4", "h264", 390, (270, 480)),
    Fact(f"{RESOURCES}/h265_video.mp4", "hevc", 10, (128, 128)),
    Fact(f"{RESOURCES}/av1_video.mkv", "av1", 125, (360, 640)),
    Fact(f"{RESOURCES}/var_fps_video.mp4", "h264", 300, (128, 128)),
    Fact(f"{RESOURCES}/h264_10bits.mp4", "h264", 30, (200, 200), cli_rgb=False),
    Fact(f"{RESOURCES}/h265_10bits.mp4", "hevc", 30, (200, 200), cli_rgb=False),
    Fact("DALI_extra/db/video/containers/mov/cfr.mov", "h264", 180, (720, 1280)),
    Fact("DALI_extra/db/video/containers/mpeg/cfr.mpeg", "h264", 180, (720, 1280)),
]
CORRUPT = "decord/tests/test_data/corrupted.mp4"  # 50 packets, packet 30 does not decode
AUDIO_ONLY = ("mmaction2/tests/data/test.wav", f"{RESOURCES}/nasa_13013.mp4.audio.mp3")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".264", ".mpeg")


def _fact_id(fact: Fact) -> str:
    return fact.rel.rsplit("/", 1)[-1]


FACT_PARAMS = [pytest.param(f, id=_fact_id(f)) for f in FACTS]


# -- helpers --------------------------------------------------------------------------------


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def assert_frames_close(got: np.ndarray, ref: np.ndarray, backend: tuple[str, str]) -> None:
    """PyAV: identical pixels. Other backends: every frame within the backend's PSNR bound."""
    assert got.shape == ref.shape
    bound = psnr_bound(*backend)
    if bound is None:
        np.testing.assert_array_equal(got, ref)
        return
    worst = min(psnr(g, r) for g, r in zip(got, ref))
    assert worst >= bound, f"{backend[0]}-{backend[1]}: worst frame {worst:.1f} dB < {bound} dB"


def open_for(backend: tuple[str, str], path: Path | str, codec: str, **options: Any) -> VideoReader:
    """The backend's reader, or a skip naming the codec it does not decode."""
    name, device = backend
    if not supports(name, device, codec):
        pytest.skip(f"{name}-{device} does not decode {codec}")
    if name == "dali":
        # no silent PyAV fallback: the frames checked must be DALI's own
        options = {"codec_policy": "error", **options}
    return open_video(str(path), backend=name, device=device, **options)  # type: ignore[arg-type]


def frames_or_skip(reader: VideoReader, indices: list[int], size: tuple[int, int] | None = None) -> np.ndarray:
    try:
        return reader.frames(indices, size=size)
    except UnsupportedCodecError as e:  # e.g. 10-bit or 4:4:4, which NVDEC lacks
        pytest.skip(f"unsupported by this backend: {e.reason}")


def sample_indices(n: int, seed: int = 0) -> list[int]:
    """First, second, middle, last two and three seeded others, shuffled (order matters)."""
    rng = np.random.default_rng(seed)
    picks = {0, min(1, n - 1), n // 2, max(n - 2, 0), n - 1, *rng.integers(0, n, size=3).tolist()}
    return rng.permutation(sorted(picks)).tolist()


@lru_cache(maxsize=4)
def _best_stream_index(path: str) -> int:
    import av

    with av.open(path) as c:
        best = c.streams.best("video")
        return -1 if best is None else int(best.index)


def ffmpeg_frames(fact: Fact, indices: list[int]) -> np.ndarray:
    """Frames ``indices`` of ``ffmpeg -i X -fps_mode passthrough -pix_fmt rgb24`` (display
    rotation applied), the select filter's ``n`` being the decoder's output count."""
    import imageio_ffmpeg

    path = str(media(fact.rel))
    wanted = sorted(set(indices))
    select = "select='" + "+".join(f"eq(n,{i})" for i in wanted) + "'"
    args = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", path,
        "-map", f"0:{_best_stream_index(path)}", "-vf", select, "-fps_mode", "passthrough",
        "-pix_fmt", "rgb24", "-f", "rawvideo", "-",
    ]  # fmt: skip
    raw = subprocess.run(args, check=True, capture_output=True).stdout
    got = np.frombuffer(raw, np.uint8).reshape(len(wanted), *fact.shape, 3)
    return got[[wanted.index(i) for i in indices]]


def pyav_sequential(fact: Fact, indices: list[int]) -> np.ndarray:
    """Frames ``indices`` of a plain front-to-back PyAV decode (``to_ndarray("rgb24")``)."""
    import av

    keep, got = set(indices), {}
    with av.open(str(media(fact.rel))) as c:
        for i, frame in enumerate(c.decode(c.streams.best("video"))):
            if i in keep:
                got[i] = frame.to_ndarray(format="rgb24")  # type: ignore[union-attr,call-arg]
    return np.stack([got[i] for i in indices])


def torchcodec_refs(video: str, stream: int) -> tuple[list[int], np.ndarray]:
    """torchcodec's reference frames ``<video>.stream<S>.frame<N>.pt`` (FFmpeg CLI, RGB)."""
    import torch

    folder = media(f"{RESOURCES}/{video}").parent
    files = sorted(folder.glob(f"{video}.stream{stream}.frame*.pt"))
    if not files:
        pytest.skip(f"no reference frames for {video} stream {stream}")
    indices = [int(f.name.rsplit("frame", 1)[1].split(".")[0]) for f in files]
    return indices, np.stack([torch.load(f).numpy() for f in files])


# -- the media folder is covered ------------------------------------------------------------


def test_every_media_file_has_facts() -> None:
    """A file added to ../shared/media must be added here, or it would go untested."""
    if not MEDIA.is_dir():
        pytest.skip(f"real media folder {MEDIA} is absent")
    found = {str(p.relative_to(MEDIA)) for p in MEDIA.rglob("*") if p.suffix in VIDEO_SUFFIXES}
    known = {f.rel for f in FACTS} | {CORRUPT}
    assert found - known == set()


# -- frames ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fact", FACT_PARAMS)
def test_frame_count_shape_and_orientation(backend: tuple[str, str], fact: Fact) -> None:
    path = media(fact.rel)
    with open_for(backend, path, fact.codec) as r:
        assert r.meta.num_frames == fact.frames
        assert (r.meta.height, r.meta.width) == fact.shape
        assert r.meta.rotation == fact.rotation
        got = frames_or_skip(r, [0, fact.frames - 1])
    assert got.shape == (2, *fact.shape, 3) and got.dtype == np.uint8


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fact", FACT_PARAMS)
def test_frames_match_ffmpeg(backend: tuple[str, str], fact: Fact) -> None:
    indices = sample_indices(fact.frames)
    with open_for(backend, media(fact.rel), fact.codec) as r:
        got = frames_or_skip(r, indices)
    ref = ffmpeg_frames(fact, indices) if fact.cli_rgb else pyav_sequential(fact, indices)
    assert_frames_close(got, ref, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "video, stream, codec",
    [
        ("nasa_13013.mp4", 3, "h264"),  # the best stream
        ("nasa_13013.mp4", 0, "h264"),  # another stream, by index
        ("h265_video.mp4", 0, "hevc"),
        ("av1_video.mkv", 0, "av1"),
        ("var_fps_video.mp4", 0, "h264"),
    ],
)
def test_frames_match_torchcodec_references(
    backend: tuple[str, str], video: str, stream: int, codec: str
) -> None:
    indices, ref = torchcodec_refs(video, stream)
    path = media(f"{RESOURCES}/{video}")
    options: dict[str, Any] = {}
    if stream != _best_stream_index(str(path)):
        if backend[0] != "pyav":
            pytest.skip(f"{backend[0]} decodes the best video stream only")
        options["stream_index"] = stream
    with open_for(backend, path, codec, **options) as r:
        got = frames_or_skip(r, indices[::-1])  # newest first: the reader must seek back
    assert_frames_close(got[::-1], ref, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_corrupt_file_raises_naming_it(backend: tuple[str, str]) -> None:
    with open_for(backend, media(CORRUPT), "h264") as r:
        assert r.frames([0, 1]).shape == (2, 720, 1280, 3)
        with pytest.raises(CorruptMediaError, match=r"corrupted\.mp4"):
            r.frames(list(range(28, 50)))


# -- generated media ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lossless(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """60 lossless H.264 frames (keyframe every 10) with a stereo 16 kHz tone, in Matroska."""
    path = tmp_path_factory.mktemp("media") / "lossless.mkv"
    return path, write_video(path, n=60, gop=10, audio_rate=16000)


@pytest.mark.parametrize("backend", BACKENDS)
def test_generated_lossless_clip(backend: tuple[str, str], lossless: tuple[Path, np.ndarray]) -> None:
    path, written = lossless
    indices = [59, 0, 33, 33, 10, 9]
    with open_for(backend, path, "h264") as r:
        assert r.meta.num_frames == 60 and (r.meta.height, r.meta.width) == (48, 64)
        assert_frames_close(frames_or_skip(r, indices), written[indices], backend)
        tone = r.audio(0.5, 1.5, sample_rate=16000)
    t = np.arange(8000, 24000) / 16000
    expected = 0.5 * np.sin(2 * np.pi * TONE_HZ * t)
    # PCM s16 in the file: the written tone within one quantisation step
    np.testing.assert_allclose(tone[0], expected, atol=1 / 32768 + 1e-6)
    np.testing.assert_allclose(tone[1], expected / 2, atol=1 / 32768 + 1e-6)


# -- audio ----------------------------------------------------------------------------------


def reference_audio(name: str) -> tuple[np.ndarray, int, float]:
    """torchcodec's decoded frames of ``name`` laid end to end: (samples (C, S), rate,
    seconds of the first frame after the file's start)."""
    import torch

    path = media(f"{RESOURCES}/{name}.all_frames.pt")
    info = json.loads(media(f"{RESOURCES}/{name}.all_frames_info.json").read_text())
    frames = torch.load(path)
    samples = torch.cat(frames, dim=1).numpy()
    duration = float(info[0]["duration_time"])
    rate = round(frames[0].shape[1] / duration)
    return samples, rate, float(info[0]["pts_time"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_audio_matches_torchcodec_aac(backend: tuple[str, str]) -> None:
    ref, rate, first_s = reference_audio("nasa_13013.mp4.stream4")  # 16 kHz AAC, starts at 0
    assert (rate, first_s) == (16000, 0.0)
    with open_for(backend, media(f"{RESOURCES}/nasa_13013.mp4"), "h264") as r:
        whole = r.audio(0.0, ref.shape[1] / rate)
        window = r.audio(7.25, 8.5)  # after a seek: the same samples
    np.testing.assert_allclose(whole, ref, atol=1e-4, rtol=0)
    np.testing.assert_allclose(window, ref[:, 116000:136000], atol=1e-4, rtol=0)


def test_audio_matches_torchcodec_mp3() -> None:
    ref, rate, _ = reference_audio("nasa_13013.mp4.audio.mp3.stream0")  # 8 kHz MP3
    decoder = AudioDecoder(str(media(f"{RESOURCES}/nasa_13013.mp4.audio.mp3")))
    try:
        # the file's first sample is time 0 (ffmpeg's command line counts from start_time)
        whole = decoder.window(0.0, ref.shape[1] / rate)
        window = decoder.window(5.0, 6.0)
    finally:
        decoder.close()
    np.testing.assert_allclose(whole, ref, atol=1e-4, rtol=0)
    np.testing.assert_allclose(window, ref[:, 40000:48000], atol=1e-4, rtol=0)


@pytest.mark.parametrize("rel", AUDIO_ONLY)
def test_audio_only_files_decode_at_any_rate(rel: str) -> None:
    decoder = AudioDecoder(str(media(rel)))
    try:
        native = decoder.window(1.0, 2.0)
        mono16k = decoder.window(1.0, 2.0, sample_rate=16000, mono=True)
    finally:
        decoder.close()
    assert native.shape[0] == 2 and native.dtype == np.float32
    assert mono16k.shape == (1, 16000) and np.abs(mono16k).max() > 0
