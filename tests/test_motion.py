"""Motion vectors: exact against mv-extractor's references, dense fields checked on generated
pans with a known motion, keyframes, refused codecs, and the motion stage without Ray."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path
from typing import cast

import av
import numpy as np
import pytest
from av.video.stream import VideoStream

from pipelines.config import DataConfig, StageConfig
from pipelines.tasks.base import Decoded, MotionRead, SamplePlan
from tests.conftest import media
from workers.errors import CorruptMediaError, UnsupportedCodecError
from workers.motion import (
    MV_DTYPE,
    MotionFrame,
    accumulate,
    flow_to_color,
    keyframes,
    mean_motion,
    motion_grid,
    motion_grid_with_mask,
    motion_grids,
    motion_vectors,
    rotate_field,
)
from workers.motion_stage import MotionStage, field_shape, merge_windows
from workers.stage import encode_row

REFERENCE_COLUMNS = ("source", "w", "h", "src_x", "src_y", "dst_x", "dst_y", "motion_x", "motion_y", "motion_scale")
PAN = (3, -2)  # px per frame, (x, y): content moves 3 px right and 2 px up each frame


def load_reference(codec: str) -> tuple[dict[int, np.ndarray], list[str]]:
    """mv-extractor's mvs-<i>.npy arrays (read from the tar in place) and frame types."""
    folder = media(f"mv-extractor/tests/reference/{codec}")
    arrays: dict[int, np.ndarray] = {}
    with tarfile.open(folder / "motion_vectors.tar.gz") as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if member.isfile() and name.startswith("mvs-"):
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                arrays[int(name[4:-4])] = np.load(io.BytesIO(data))
    return arrays, (folder / "frame_types.txt").read_text().split()


def as_reference(vectors: np.ndarray) -> np.ndarray:
    return np.stack([vectors[c].astype(np.int32) for c in REFERENCE_COLUMNS], axis=1).reshape(-1, 10)


@pytest.mark.parametrize("codec", ["h264", "mpeg4_part2"])
def test_vectors_equal_mv_extractor_references(codec: str) -> None:
    arrays, types = load_reference(codec)
    frames = motion_vectors(str(media(f"mv-extractor/vid_{codec}.mp4")))
    assert len(frames) == len(arrays) == len(types) == 337
    assert [f.index for f in frames] == list(range(337))
    assert [f.pict_type for f in frames] == types
    for f in frames:
        assert f.vectors.dtype == MV_DTYPE
        np.testing.assert_array_equal(as_reference(f.vectors), arrays[f.index], err_msg=f"frame {f.index}")


def test_raw_h264_stream_has_b_pyramid_distances() -> None:
    frames = motion_vectors(str(media("mv-extractor/vid_h264.264")))
    assert len(frames) == 337
    # I0 B1 b2 B3 P4: b2 is the pyramid's reference B, two frames from I0 and from P4.
    assert "".join(f.pict_type for f in frames[:5]) == "IBBBP"
    assert [(f.past, f.future) for f in frames[1:5]] == [(1, 1), (2, 2), (1, 1), (4, 1)]
    assert all(len(f.vectors) and (f.vectors["source"] > 0).any() for f in frames if f.pict_type == "B")


@pytest.mark.parametrize(("rel", "window"), [("mv-extractor/vid_h264.mp4", (212, 222)),
                                             ("mmaction2/tests/data/test.mp4", (240, 252)),
                                             ("mmaction2/tests/data/test.avi", (50, 60))])
def test_window_equals_slice_of_full_decode(rel: str, window: tuple[int, int]) -> None:
    uri = str(media(rel))
    full = motion_vectors(uri, 0, window[1])  # counted from frame 0
    part = motion_vectors(uri, *window)  # MP4: seeks to the keyframe before the window
    assert [f.index for f in part] == list(range(*window))
    for f in part:
        g = full[f.index]
        assert (f.pict_type, f.past, f.future) == (g.pict_type, g.past, g.future)
        np.testing.assert_array_equal(f.vectors, g.vectors)


# --- generated pans: known motion -------------------------------------------------------


def write_pan(path: Path, codec: str, options: dict[str, str], b_frames: int | None = None,
              frames: int = 24, size: tuple[int, int] = (192, 256), fmt: str | None = None) -> Path:
    """A smooth random texture moving by PAN px per frame, encoded with ``codec``."""
    h, w = size
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (h // 8 + 24, w // 8 + 24, 3)).astype(np.float32)
    texture = np.kron(coarse, np.ones((8, 8, 1), np.float32))
    texture = (texture + np.roll(texture, 4, 0) + np.roll(texture, 4, 1) + np.roll(texture, 4, (0, 1))) / 4
    texture = texture.astype(np.uint8)
    with av.open(str(path), "w", format=fmt) as out:
        stream = cast(VideoStream, out.add_stream(codec, rate=25))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = dict(options)
        if b_frames is not None:
            stream.codec_context.max_b_frames = b_frames
        for i in range(frames):
            x0, y0 = 96 - PAN[0] * i, 96 - PAN[1] * i  # the window moves against the content
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[y0:y0 + h, x0:x0 + w]), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


PANS = {
    # x264 with one reference: FFmpeg does not export which reference a block uses.
    "h264_ippp": ("pan.mp4", "libx264", {"x264-params": "bframes=0:ref=1:keyint=12"}, None),
    "h264_pyramid": ("pan.mp4", "libx264", {"x264-params": "bframes=3:b-pyramid=normal:ref=1:keyint=12"}, None),
    "mpeg2_ibbp": ("pan.mpg", "mpeg2video", {"qscale": "3"}, 2),
    "mpeg4_ibbp": ("pan.avi", "mpeg4", {"qscale": "3"}, 2),  # B-frames: placeholder vectors
}


@pytest.fixture(scope="module")
def pans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pans")
    out = {}
    for name, (file, codec, options, b_frames) in PANS.items():
        (root / name).mkdir()
        out[name] = write_pan(root / name / file, codec, options, b_frames)
    return out


def interior_median(field: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median vector of the covered cells away from the borders, where content enters."""
    inner = mask[2:-2, 2:-2]
    return np.median(field[2:-2, 2:-2][inner], axis=0)


@pytest.mark.parametrize("name", list(PANS))
def test_field_of_a_pan_is_the_pan(pans: dict[str, Path], name: str) -> None:
    frames = motion_vectors(str(pans[name]))
    assert len(frames) == 24
    assert {"I", "P"} <= {f.pict_type for f in frames}
    for f in frames:
        field, mask = motion_grid_with_mask(f)
        assert field.shape == (12, 16, 2) and mask.shape == (12, 16)
        if f.pict_type == "I":
            assert not mask.any() and not field.any()
            continue
        np.testing.assert_allclose(interior_median(field, mask), PAN, atol=0.25, err_msg=f"{name} frame {f.index} {f.pict_type}")


def test_mpeg4_b_frames_take_the_next_p_frame(pans: dict[str, Path]) -> None:
    frames = motion_vectors(str(pans["mpeg4_ibbp"]))
    b = [f for f in frames if f.pict_type == "B"]
    assert b and all(not f.exported and f.stand_in is not None for f in b)
    assert not any(f.vectors["motion_x"].any() for f in b)  # what FFmpeg exports: zeros
    stand_ins = {f.index: f.stand_in.index for f in b}  # type: ignore[union-attr]
    types = "".join(f.pict_type for f in frames)
    assert types == "IBBPBBPBBPBBIBBPBBPBBPBI"
    # The next P-frame spans B1 B2 (P3 refers to I0); before I12 the previous P-frame counts.
    assert stand_ins == {1: 3, 2: 3, 4: 6, 5: 6, 7: 9, 8: 9, 10: 9, 11: 9, 13: 15, 14: 15,
                         16: 18, 17: 18, 19: 21, 20: 21, 22: 21}


def test_mean_motion_of_a_pan(pans: dict[str, Path]) -> None:
    frames = motion_vectors(str(pans["h264_pyramid"]))
    motion = mean_motion(str(pans["h264_pyramid"]))
    assert motion.dtype == np.float32 and motion.shape == (24,)
    is_intra = np.array([f.pict_type == "I" for f in frames])
    assert (motion[is_intra] == 0).all()
    np.testing.assert_allclose(motion[~is_intra], np.hypot(*PAN), rtol=0.1)


def test_window_after_a_seek_keeps_distances(pans: dict[str, Path]) -> None:
    uri = str(pans["h264_pyramid"])  # keyint 12: frame 14 seeks to the keyframe at 12
    full = motion_vectors(uri)
    part = motion_vectors(uri, 14, 22)
    assert [(f.index, f.pict_type, f.past, f.future) for f in part] == [
        (f.index, f.pict_type, f.past, f.future) for f in full[14:22]
    ]


def test_stage_fields_follow_the_clip_size(pans: dict[str, Path]) -> None:
    uri = str(pans["h264_pyramid"])
    stage = MotionStage(DataConfig(size=(96, 64)), StageConfig())
    read = MotionRead(uri, 7, 4, 12)
    plan = SamplePlan(sample_id=0, task="motion_context", video_id=7, label=-1, motion=(read,))
    decoded = [Decoded()]
    stage.fill((plan,), decoded)
    (fields,) = decoded[0].motion
    assert fields.shape == field_shape(read, (96, 64)) == (8, 6, 4, 2)
    # 256x192 -> 64x96: x scaled by 1/4, y by 1/2.
    expected = (PAN[0] * 64 / 256, PAN[1] * 96 / 192)
    np.testing.assert_allclose(np.median(fields[:, 1:-1, 1:-1].reshape(-1, 2), axis=0), expected, atol=0.1)


# --- fields from hand-made vectors --------------------------------------------------------


def vectors(*blocks: tuple[int, int, int, int, int, int, int]) -> np.ndarray:
    """Blocks (source, w, h, dst_x, dst_y, motion_x, motion_y), quarter-pel (scale 4)."""
    out = np.zeros(len(blocks), MV_DTYPE)
    for i, (source, w, h, x, y, mx, my) in enumerate(blocks):
        out[i] = (source, w, h, x + mx // 4, y + my // 4, x, y, 0, mx, my, 4)
    return out


def test_small_blocks_are_area_weighted() -> None:
    # One 16x16 cell: a 16x8 block moving 3 px right on top, two 8x8 blocks still below.
    mvs = vectors((-1, 16, 8, 8, 4, -12, 0), (-1, 8, 8, 4, 12, 0, 0), (-1, 8, 8, 12, 12, 0, 0))
    field, mask = motion_grid_with_mask(mvs, frame_size=(16, 32))
    assert field.shape == (1, 2, 2)
    np.testing.assert_allclose(field[0, 0], (1.5, 0))
    assert mask.tolist() == [[True, False]] and not field[0, 1].any()


def test_direction_scale_and_distance() -> None:
    # motion_x / motion_scale = -8 px toward a reference 2 frames back: 4 px/frame forward.
    past = MotionFrame(0, "P", vectors((-1, 16, 16, 8, 8, -32, 0)), (16, 16), past=2)
    # +6 px toward a reference 3 frames ahead: 2 px/frame forward, and y likewise.
    future = MotionFrame(0, "B", vectors((1, 16, 16, 8, 8, 0, 24)), (16, 16), future=3)
    np.testing.assert_allclose(motion_grid(past)[0, 0], (4, 0))
    np.testing.assert_allclose(motion_grid(future)[0, 0], (0, 2))


def test_out_size_scales_vectors_and_grid() -> None:
    blocks = [(-1, 16, 16, x, y, -8, -4) for x in range(8, 64, 16) for y in range(8, 32, 16)]
    field = motion_grid(vectors(*blocks), frame_size=(32, 64), out_size=(16, 32))
    assert field.shape == (1, 2, 2)
    np.testing.assert_allclose(field, np.broadcast_to((1.0, 0.5), (1, 2, 2)))


def test_rotation_turns_grid_and_vectors() -> None:
    frame = MotionFrame(0, "P", vectors((-1, 16, 16, 8, 8, -4, 0)), (16, 32), rotation=90)
    field, mask = motion_grid_with_mask(frame)
    assert field.shape == (2, 1, 2)  # displayed 32x16
    # Turned a quarter counter-clockwise: the left cell goes to the bottom, right becomes up.
    assert mask[:, 0].tolist() == [False, True]
    np.testing.assert_allclose(field[1, 0], (0, -1))
    np.testing.assert_allclose(rotate_field(rotate_field(field, 90), -90), field)


def test_grids_of_many_frames_equal_one_by_one(pans: dict[str, Path]) -> None:
    frames = motion_vectors(str(pans["h264_pyramid"]))[:8]
    batch = motion_grids(frames, out_size=(50, 70), grid=8)[0]
    one = np.stack([motion_grid(f, out_size=(50, 70), grid=8) for f in frames])
    np.testing.assert_allclose(batch, one, rtol=1e-6)


def test_grids_of_frames_of_two_sizes_share_the_output_grid() -> None:
    small = MotionFrame(0, "P", vectors((-1, 16, 16, 8, 8, -4, 0)), (16, 16))
    large = MotionFrame(1, "P", vectors((-1, 16, 16, 8, 8, -4, 0)), (32, 32))
    fields, masks = motion_grids([small, large], out_size=(32, 32))
    assert fields.shape == (2, 2, 2, 2)
    np.testing.assert_allclose(fields[:, 0, 0], [(2, 0), (1, 0)])  # 1 px in 16 -> 2 px in 32
    assert masks.sum(axis=(1, 2)).tolist() == [4, 1]  # the small frame's block fills the grid
    with pytest.raises(ValueError, match="out_size"):
        motion_grids([small, large])


def test_bad_field_arguments() -> None:
    with pytest.raises(ValueError, match="frame_size"):
        motion_grid(vectors((-1, 16, 16, 8, 8, 0, 0)))
    with pytest.raises(ValueError, match=r"\(T, h, w, 2\)"):
        accumulate(np.zeros((4, 4, 2)))
    with pytest.raises(ValueError, match="multiple of 90"):
        rotate_field(np.zeros((2, 2, 2)), 45)


def test_accumulate_sums_a_window() -> None:
    fields = np.zeros((3, 2, 2, 2), np.float32)
    fields[..., 0] = 1
    np.testing.assert_array_equal(accumulate(fields)[..., 0], 3)


def test_flow_to_color_hue_is_direction_value_is_magnitude() -> None:
    field = np.array([[[2, 0], [-2, 0], [0, 0], [1, 0]]], np.float32)
    rgb = flow_to_color(field)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 4, 3)
    assert rgb[0, 0].tolist() == [255, 0, 0]  # right: red, full brightness
    assert rgb[0, 1].tolist() == [0, 255, 255]  # left: cyan
    assert rgb[0, 2].tolist() == [0, 0, 0]  # still: black
    assert rgb[0, 3].tolist() == [128, 0, 0]  # half the largest magnitude: half bright


# --- keyframes ----------------------------------------------------------------------------


def test_keyframes_are_the_i_frames() -> None:
    uri = str(media("mv-extractor/vid_mpeg4_part2.mp4"))
    _, types = load_reference("mpeg4_part2")
    indices, rgb = keyframes(uri)
    assert indices.tolist() == [i for i, t in enumerate(types) if t == "I"]
    assert rgb.shape == (30, 720, 1280, 3) and rgb.dtype == np.uint8
    with av.open(uri) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == indices[2]:
                np.testing.assert_array_equal(rgb[2], frame.to_ndarray(format="rgb24"))
                break


@pytest.mark.parametrize("rel", ["mv-extractor/vid_h264.264", "mmaction2/tests/data/test.avi"])
def test_keyframes_without_usable_timestamps_are_counted(rel: str) -> None:
    uri = str(media(rel))
    intra = [f.index for f in motion_vectors(uri) if f.pict_type == "I"]
    indices, rgb = keyframes(uri, size=(64, 96))
    assert indices.tolist() == intra[: len(indices)] and len(indices) >= 1
    assert rgb.shape == (len(indices), 64, 96, 3)


def test_keyframes_are_upright() -> None:
    _, rgb = keyframes(str(media("decord/tests/test_data/video_90.mov")))
    assert rgb.shape[1:] == (568, 320, 3)


# --- refused codecs and bad files ------------------------------------------------------------


@pytest.mark.parametrize(("rel", "codec"), [
    ("moviepy/media/big_buck_bunny_432_433.webm", "vp8"),
    ("moviepy/media/transparent.webm", "vp9"),
    ("torchcodec/test/resources/h265_video.mp4", "hevc"),
    ("torchcodec/test/resources/av1_video.mkv", "(libdav1d|av1|libaom-av1)"),  # the build's AV1 decoder
])
def test_codecs_without_vectors_are_refused_before_decoding(
    rel: str, codec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.motion._vectors as vectors_module

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded before refusing the codec")

    monkeypatch.setattr(vectors_module._Decoder, "frames", no_decoding)
    uri = str(media(rel))
    with pytest.raises(UnsupportedCodecError, match=rf"{Path(rel).name}: codec '{codec}' has no motion-vector export"):
        motion_vectors(uri)
    with pytest.raises(UnsupportedCodecError, match=codec):
        mean_motion(uri)


def test_truncated_file_serves_what_decodes_then_errors() -> None:
    uri = str(media("decord/tests/test_data/corrupted.mp4"))  # invalid data near the end
    assert len(motion_vectors(uri, 10, 20)) == 10
    with pytest.raises(CorruptMediaError, match="corrupted.mp4: decode failed after"):
        motion_vectors(uri)


def test_missing_file_is_a_media_error(tmp_path: Path) -> None:
    with pytest.raises(CorruptMediaError, match="file not found"):
        motion_vectors(str(tmp_path / "nope.mp4"))
    with pytest.raises(ValueError, match="start <= stop"):
        motion_vectors(str(tmp_path / "nope.mp4"), 5, 2)


# --- the stage ------------------------------------------------------------------------------


def motion_plan(uri: str, start: int, stop: int, sample_id: int = 0) -> SamplePlan:
    read = MotionRead(uri, sample_id, start, stop)
    return SamplePlan(sample_id=sample_id, task="motion_context", video_id=sample_id, label=-1, motion=(read,))


def test_stage_batch_on_real_media_with_failed_rows() -> None:
    plans = [
        motion_plan(str(media("mmaction2/tests/data/test.mp4")), 100, 116, 0),
        motion_plan(str(media("moviepy/media/transparent.webm")), 0, 16, 1),
        motion_plan(str(media("mmaction2/tests/data/test.mp4")), 290, 306, 2),  # 300 frames
    ]
    rows = [encode_row((p,), {}) for p in plans]
    batch = {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]}
    stage = MotionStage(DataConfig(size=(112, 112)), StageConfig())
    out = stage(batch)
    fields = [pickle.loads(d)[0].motion[0] for d in out["decoded"]]
    assert [f.shape for f in fields] == [(16, 7, 7, 2)] * 3
    assert list(out["error_kind"]) == ["", "unsupported_codec", "corrupt"]
    assert "codec 'vp9'" in out["error"][1] and "ends after frame 299" in out["error"][2]
    assert np.isfinite(fields[0]).all() and np.abs(fields[0]).mean() > 0.1
    assert not fields[1].any() and not fields[2].any()


def test_merge_windows_shares_close_reads() -> None:
    reads = [MotionRead("a", 1, 20, 36), MotionRead("a", 1, 10, 26), MotionRead("a", 1, 200, 216),
             MotionRead("b", 2, 30, 40)]
    got = [(w.uri, w.start, w.stop) for w in merge_windows(reads)]
    assert got == [("a", 10, 36), ("a", 200, 216), ("b", 30, 40)]
