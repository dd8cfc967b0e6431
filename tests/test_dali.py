"""DALI backend: CPU decode of VP8/VP9/MJPEG against PyAV, the batch decoder, the codec
policy, rotation, the video stage in both placements; NVDEC paths are ``gpu``-marked."""

from __future__ import annotations

import pickle
import subprocess
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from pipelines.config import DataConfig, StageConfig
from pipelines.tasks.base import ClipRead, Decoded, SamplePlan
from tests.conftest import media
from workers.decode import open_video
from workers.decode._dali import (
    DALI_GPU_PSNR_DB,
    DALI_PSNR_DB,
    DALI_RESIZED_PSNR_DB,
    ClipRequest,
    DALIBatchDecoder,
    DALIReader,
    supports,
)
from workers.errors import CorruptMediaError, UnsupportedCodecError
from workers.meta import VideoMeta
from workers.probe import probe
from workers.stage import encode_row

VP8 = "moviepy/media/big_buck_bunny_432_433.webm"  # 1280x720, 24 frames
VP9 = "moviepy/media/transparent.webm"  # 200x200, 150 frames, keyframes 0 and 128
H264 = "mmaction2/tests/data/test.mp4"  # 340x256, 300 frames
HEVC = "torchcodec/test/resources/h265_video.mp4"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (99 for identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def pyav_frames(path: Path | str) -> np.ndarray:
    """Every frame of the best video stream, FFmpeg's rgb24, as an independent reference."""
    with av.open(str(path)) as c:
        frames: Any = c.decode(c.streams.best("video"))
        return np.stack([f.to_ndarray(format="rgb24") for f in frames])


def ffmpeg_frames(path: Path, h: int, w: int) -> np.ndarray:
    """``ffmpeg -i X -pix_fmt rgb24 -f rawvideo -``: the displayed (auto-rotated) frames."""
    import imageio_ffmpeg

    raw = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-fps_mode",
         "passthrough", "-pix_fmt", "rgb24", "-f", "rawvideo", "-"],
        check=True, capture_output=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def write_video(
    path: Path, codec: str, pix_fmt: str, n: int = 12, w: int = 64, h: int = 48
) -> Path:
    """A small clip of smooth moving gradients, so every frame differs.

    Smooth, like camera footage: DALI upsamples chroma bilinearly where FFmpeg's rgb24 path
    repeats samples, so saturated colour edges (a wrapped ramp, say) differ by design
    (29 dB on a sawtooth pattern) while natural content stays above 44 dB.
    """
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    with av.open(str(path), "w") as c:
        s: Any = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        for t in range(n):
            img = np.stack([40 + xx * 2 + t * 4, 60 + yy * 2 + t * 2, 200 - (xx + yy) - t * 3], -1)
            frame = av.VideoFrame.from_ndarray(img.clip(0, 255).astype(np.uint8), format="rgb24")
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def assert_close(got: np.ndarray, ref: np.ndarray, bound: float) -> float:
    assert got.shape == ref.shape and got.dtype == np.uint8
    worst = min(psnr(a, b) for a, b in zip(got, ref))
    assert worst >= bound, f"PSNR {worst:.1f} dB < {bound} dB"
    return worst


# --- CPU: VP8 / VP9 / MJPEG against PyAV -------------------------------------------------


@pytest.mark.parametrize("rel", [VP8, VP9])
def test_cpu_decodes_real_vp8_vp9_like_pyav(rel: str) -> None:
    path = media(rel)
    ref = pyav_frames(path)
    with DALIReader(str(path), device="cpu") as r:
        assert r.meta.num_frames == len(ref)
        got = r.frames(range(r.meta.num_frames))
        assert r.fallbacks == 0
    assert_close(got, ref, DALI_PSNR_DB)


@pytest.mark.parametrize("codec, pix_fmt, suffix", [("libvpx-vp9", "yuv420p", "webm"),
                                                    ("mjpeg", "yuvj420p", "mkv")])
def test_cpu_decodes_generated_media(tmp_path: Path, codec: str, pix_fmt: str, suffix: str) -> None:
    path = write_video(tmp_path / f"clip.{suffix}", codec, pix_fmt)
    with DALIReader(str(path)) as r:
        got = r.frames(range(12))
        assert r.fallbacks == 0
    assert_close(got, pyav_frames(path), DALI_PSNR_DB)


def test_random_access_equals_sequential_decode() -> None:
    """Seeking (keyframe 128) and repeats give exactly the frames of a full decode."""
    path = str(media(VP9))
    with DALIReader(path) as r:
        full = r.frames(range(150))
        got = r.frames([140, 3, 130, 3, 127])
    np.testing.assert_array_equal(got, full[[140, 3, 130, 3, 127]])


@pytest.mark.parametrize("rel, size", [(VP8, (112, 112)), (VP8, (90, 160)), (VP9, (64, 64))])
def test_resize_matches_pyav_resize(rel: str, size: tuple[int, int]) -> None:
    path = str(media(rel))
    with DALIReader(path) as r, open_video(path, backend="pyav") as ref:
        got = r.frames([0, 12, 23], size=size)
        tensor = r.frames_torch([0, 12, 23], size=size)
        expected = ref.frames([0, 12, 23], size=size)
    np.testing.assert_array_equal(tensor.numpy(), got)
    assert_close(got, expected, DALI_RESIZED_PSNR_DB)


def test_no_frames_give_an_empty_clip_of_the_asked_size() -> None:
    with DALIReader(str(media(VP8))) as r:
        assert r.frames([], size=(90, 160)).shape == (0, 90, 160, 3)
        assert r.frames([]).shape == (0, 720, 1280, 3)


def test_out_of_range_index_is_an_argument_error() -> None:
    with DALIReader(str(media(VP8))) as r, pytest.raises(ValueError, match=r"outside \[0, 24\)"):
        r.frames([3, 24])


# --- rotation ------------------------------------------------------------------------------


@pytest.mark.parametrize("ccw", [90, 180, 270])
def test_display_rotation_matches_ffmpeg(tmp_path: Path, ccw: int) -> None:
    import imageio_ffmpeg

    src = write_video(tmp_path / "src.webm", "libvpx-vp9", "yuv420p")
    rotated = tmp_path / "rot.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-display_rotation",
                    str(ccw), "-i", str(src), "-c", "copy", str(rotated)], check=True)
    with DALIReader(str(rotated)) as r:
        h, w = r.meta.height, r.meta.width
        assert (h, w) == ((64, 48) if ccw in (90, 270) else (48, 64))
        got = r.frames(range(12))
        small = r.frames([0], size=(h // 2, w // 2))
    assert_close(got, ffmpeg_frames(rotated, h, w), DALI_PSNR_DB)
    assert small.shape == (1, h // 2, w // 2, 3)


# --- batch decoder -------------------------------------------------------------------------


def test_batch_decoder_decodes_many_plans_in_one_run() -> None:
    vp8, vp9 = probe(str(media(VP8))), probe(str(media(VP9)))
    requests = [
        ClipRequest(vp8, (0, 1, 2), (64, 64)),
        ClipRequest(vp9, (10, 20, 140), (64, 64)),
        ClipRequest(vp8, (2, 3), (64, 64)),  # overlaps the first: one decode of [0..3]
        ClipRequest(vp9, (5,), None),
    ]
    dec = DALIBatchDecoder("cpu", batch_size=4)
    out = dec.decode(requests)
    shapes = [(3, 64, 64, 3), (3, 64, 64, 3), (2, 64, 64, 3), (1, 200, 200, 3)]
    assert [o.shape for o in out] == shapes
    assert dec.runs == 2  # one resizing run for 3 requests on 2 videos, one native-size run
    np.testing.assert_array_equal(out[0][2], out[2][0])
    with DALIReader(vp9.uri, meta=vp9) as r:
        np.testing.assert_array_equal(out[1], r.frames([10, 20, 140], size=(64, 64)))


def test_batch_isolates_a_broken_file(tmp_path: Path) -> None:
    """DALI fails a whole run for one bad sample; the others still get their frames."""
    good = probe(str(media(VP9)))
    junk = tmp_path / "junk.webm"
    junk.write_bytes(b"\x1a\x45\xdf\xa3" + b"\x00" * 4000)
    bad = VideoMeta(video_id=1, uri=str(junk), container="matroska", video_codec="vp9",
                    width=200, height=200, num_frames=10)
    for policy in ("fallback", "error"):
        dec = DALIBatchDecoder("cpu", batch_size=4, codec_policy=policy)  # type: ignore[arg-type]
        out = dec.decode([ClipRequest(good, (0, 1), None), ClipRequest(bad, (0,), None),
                          ClipRequest(good, (149,), None)])
        assert out[0].shape == (2, 200, 200, 3) and out[2].shape == (1, 200, 200, 3)
        assert isinstance(out[1], CorruptMediaError) and str(junk) in str(out[1])


def test_frames_of_another_size_than_the_manifest_go_to_the_policy() -> None:
    """DALI's frames must be the manifest's stream; a size mismatch is not silently used."""
    from dataclasses import replace

    meta = replace(probe(str(media(VP9))), width=100, height=100)
    with DALIReader(meta.uri, meta=meta) as r:
        assert r.frames([0]).shape == (1, 200, 200, 3)  # PyAV's frames of the real stream
        assert r.fallbacks == 1
    strict = DALIReader(meta.uri, meta=meta, codec_policy="error")
    with strict, pytest.raises(CorruptMediaError, match="200x200 stream; the manifest's .* 100x"):
        strict.frames([0])


# --- codec policy --------------------------------------------------------------------------


def test_h264_on_cpu_falls_back_to_pyav_and_counts() -> None:
    path = str(media(H264))
    assert not supports("cpu", "h264") and supports("gpu", "h264")
    with DALIReader(path, device="cpu") as r:
        got = r.frames([0, 150, 299])
        assert r.fallbacks == 1
    with open_video(path, backend="pyav") as ref:
        np.testing.assert_array_equal(got, ref.frames([0, 150, 299]))


def test_h264_on_cpu_with_error_policy_names_file_and_codec() -> None:
    path = str(media(H264))
    with DALIReader(path, device="cpu", codec_policy="error") as r:
        with pytest.raises(UnsupportedCodecError, match=r"test\.mp4: .*codec h264"):
            r.frames([0])
        assert r.fallbacks == 0


def test_audio_comes_from_pyav() -> None:
    path = str(media(VP8))
    with DALIReader(path) as r, open_video(path, backend="pyav") as ref:
        np.testing.assert_array_equal(r.audio(0.1, 0.6, sample_rate=16000, mono=True),
                                      ref.audio(0.1, 0.6, sample_rate=16000, mono=True))


# --- stage, disaggregated and colocated ------------------------------------------------------


def _rows(uris: list[str], metas: dict[int, VideoMeta]) -> dict[str, np.ndarray]:
    """A Ray Data numpy batch of one vcop-like visit per uri (3 clips of 4 frames)."""
    rows = []
    for i, uri in enumerate(uris):
        meta = next(m for m in metas.values() if m.uri == uri)
        clips = tuple(ClipRead(uri, meta.video_id, tuple(range(s, s + 4))) for s in (8, 0, 4))
        plan = SamplePlan(sample_id=i, task="vcop", video_id=meta.video_id, label=3, clips=clips)
        rows.append(encode_row((plan,), {meta.video_id: meta}))
    return {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]}


def _stage_inputs(tmp_path: Path) -> tuple[DataConfig, list[str], dict[int, VideoMeta]]:
    vp8, vp9 = probe(str(media(VP8))), probe(str(media(VP9)))
    gone = VideoMeta(video_id=7, uri=str(tmp_path / "gone.webm"), container="matroska",
                     video_codec="vp9", width=200, height=200, num_frames=30)
    data = DataConfig(size=(32, 48), video=StageConfig(backend="dali", batch_size=3))
    metas = {m.video_id: m for m in (vp8, vp9, gone)}
    return data, [vp8.uri, gone.uri, vp9.uri], metas


def test_dali_stage_fills_a_batch_in_one_run(tmp_path: Path) -> None:
    from workers.dali_stage import DALIVideoStage

    data, uris, metas = _stage_inputs(tmp_path)
    stage = DALIVideoStage(data, data.video)
    out = stage(_rows(uris, metas))
    decoded = [pickle.loads(b) for b in out["decoded"]]
    assert stage.decoder.runs == 1 and stage.fallbacks == 0
    assert [len(d[0].clips) for d in decoded] == [3, 3, 3]
    assert all(c.shape == (4, 32, 48, 3) for d in decoded for c in d[0].clips)
    assert list(out["error_kind"]) == ["", "corrupt", ""] and "file not found" in out["error"][1]
    assert not decoded[1][0].clips[0].any()
    with DALIReader(uris[2], meta=metas[next(k for k in metas if metas[k].uri == uris[2])]) as r:
        np.testing.assert_array_equal(decoded[2][0].clips[0], r.frames(range(8, 12), size=(32, 48)))


def test_colocated_path_matches_disaggregated_on_cpu(tmp_path: Path) -> None:
    from workers.dali_stage import (
        COLOCATED_COLUMNS,
        ColocatedDecoder,
        DALIVideoStage,
        EncodedBytesStage,
    )

    data, uris, metas = _stage_inputs(tmp_path)
    rows = _rows(uris, metas)
    shipped = EncodedBytesStage(data, data.video)(dict(rows))
    assert set(COLOCATED_COLUMNS) <= set(shipped)
    assert list(shipped["error_kind"]) == ["", "corrupt", ""]
    placeholders: list[Decoded] = pickle.loads(shipped["decoded"][0])
    assert placeholders[0].clips[0].shape == (0, 32, 48, 3)
    dec = ColocatedDecoder(data).decode_batch(shipped)
    assert dec.tasks == ["vcop"] and list(dec.ok()) == [True, False, True]
    video = dec.video("vcop")
    assert tuple(video.shape) == (3, 3, 4, 32, 48, 3)
    host = [pickle.loads(b) for b in DALIVideoStage(data, data.video)(rows)["decoded"]]
    for i in (0, 2):
        np.testing.assert_array_equal(video[i].numpy(), np.stack(host[i][0].clips))
    assert not video[1].any()


def test_bench_table_says_when_the_gpu_half_was_skipped() -> None:
    from workers.decode.bench_gpu import table

    result = {
        "machine": {"cores": 2}, "size_hw": [256, 340], "gpu_skipped": "no CUDA GPU",
        "pyav": {"test.mp4": [{"processes": 1, "fps": 350.0}, {"processes": 2, "fps": 600.0}]},
        "dali": {}, "psnr": {},
    }
    lines = table(result).splitlines()
    assert lines[0] == "decode at 340x256, frames/s (no GPU, 2 cores)"
    assert "1 proc 350, 2 proc 600" in lines[1]
    assert lines[-1] == "GPU half skipped: no CUDA GPU"



# --- GPU: NVDEC ----------------------------------------------------------------------------

# Codecs NVDEC takes, generated at 320x240 (the real HEVC file is 128x128, under NVDEC's
# 144x144 minimum) beside the real H.264 and VP9 files.
GENERATED_NVDEC = [("libx265", "mp4"), ("libsvtav1", "mkv"), ("mpeg4", "mp4"), ("libx264", "mp4")]


@pytest.mark.gpu
@pytest.mark.parametrize("rel", [H264, "mmaction2/demo/demo.mp4", VP9])
def test_nvdec_matches_pyav_on_real_media(rel: str) -> None:
    path = media(rel)
    ref = pyav_frames(path)
    with DALIReader(str(path), device="gpu") as r:
        assert r.meta.num_frames == len(ref)
        got = r.frames(range(len(ref)))
        assert r.fallbacks == 0
    worst = assert_close(got, ref, DALI_GPU_PSNR_DB)
    print(f"NVDEC {rel}: min PSNR {worst:.2f} dB")


@pytest.mark.gpu
@pytest.mark.parametrize("codec, suffix", GENERATED_NVDEC)
def test_nvdec_matches_pyav_on_generated_media(tmp_path: Path, codec: str, suffix: str) -> None:
    path = write_video(tmp_path / f"clip.{suffix}", codec, "yuv420p", n=30, w=320, h=240)
    with DALIReader(str(path), device="gpu") as r:
        got = r.frames(range(r.meta.num_frames))
        assert r.fallbacks == 0
    worst = assert_close(got, pyav_frames(path), DALI_GPU_PSNR_DB)
    print(f"NVDEC {codec}: min PSNR {worst:.2f} dB")


@pytest.mark.gpu
@pytest.mark.parametrize("ccw", [90, 270])
def test_nvdec_display_rotation_matches_ffmpeg(tmp_path: Path, ccw: int) -> None:
    import imageio_ffmpeg

    src = write_video(tmp_path / "src.mp4", "libx264", "yuv420p", w=320, h=240)
    rotated = tmp_path / "rot.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-display_rotation",
                    str(ccw), "-i", str(src), "-c", "copy", str(rotated)], check=True)
    with DALIReader(str(rotated), device="gpu") as r:
        got = r.frames(range(12))
        assert got.shape[1:3] == (320, 240) and r.fallbacks == 0
    assert_close(got, ffmpeg_frames(rotated, 320, 240), DALI_GPU_PSNR_DB)


@pytest.mark.gpu
def test_nvdec_colocated_tensors_stay_on_the_gpu() -> None:
    import torch

    meta = probe(str(media(H264)))
    dec = DALIBatchDecoder("gpu", batch_size=4)
    requests = [ClipRequest(meta, tuple(range(s, s + 16)), (112, 112)) for s in (0, 100, 200)]
    out = dec.decode_torch(requests)
    assert all(t.is_cuda and tuple(t.shape) == (16, 112, 112, 3) for t in out)
    assert dec.fallbacks == 0 and dec.runs == 1
    host = dec.decode(requests)
    for t, a in zip(out, host):
        np.testing.assert_array_equal(t.cpu().numpy(), a)
    assert torch.cuda.current_device() == out[0].device.index


@pytest.mark.gpu
def test_nvdec_colocated_decoder_on_a_batch(tmp_path: Path) -> None:
    from workers.dali_stage import ColocatedDecoder, EncodedBytesStage

    h264, vp9 = probe(str(media(H264))), probe(str(media(VP9)))
    metas = {m.video_id: m for m in (h264, vp9)}
    data = DataConfig(size=(112, 112), video=StageConfig(backend="dali", device="gpu",
                                                         num_gpus=1, batch_size=2))
    shipped = EncodedBytesStage(data, data.video)(_rows([h264.uri, vp9.uri], metas))
    decoder = ColocatedDecoder(data)
    video = decoder.decode_batch(shipped).video("vcop")
    assert video.is_cuda and tuple(video.shape) == (2, 3, 4, 112, 112, 3)
    assert decoder.decoder.fallbacks == 0


@pytest.mark.gpu
@pytest.mark.parametrize("rel", ["torchcodec/test/resources/var_fps_video.mp4",  # 4:4:4
                                 "torchcodec/test/resources/h264_10bits.mp4",
                                 HEVC])  # 128x128, under NVDEC's minimum
def test_nvdec_limits_fall_back_to_pyav(rel: str) -> None:
    path = str(media(rel))
    with DALIReader(path, device="gpu") as r, open_video(path, backend="pyav") as ref:
        np.testing.assert_array_equal(r.frames([0, 5]), ref.frames([0, 5]))
        assert r.fallbacks == 1

