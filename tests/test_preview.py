"""``clipstream preview``: the real stages decode generated media; the sheet is a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.commands.preview import parse_params
from pipelines.preview import (
    PreviewItem,
    mosaic,
    motion_tiles,
    render_sheet,
    row_names,
    sample_items,
    video_grid,
)
from pipelines.tasks import ClipRead, SamplePlan, get_task
from workers.meta import VideoMeta


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 2-second videos (a square sliding right over a gradient, a tone), indexed."""
    from pipelines.manifest import ProbeOptions, probe_row, write_manifest
    from pipelines.synthetic import write_video

    root = tmp_path_factory.mktemp("media")
    rows = []
    for i in range(3):
        frames = np.zeros((50, 64, 80, 3), np.uint8)
        frames[..., 0] = np.linspace(0, 255, 80, dtype=np.uint8)
        for t in range(50):
            frames[t, 20:36, t + i * 5 : t + i * 5 + 16] = 255
        tone = 0.3 * np.sin(2 * np.pi * (300 + 200 * i) * np.arange(32000) / 16000)
        path = root / f"v{i}.mp4"
        write_video(path, frames, tone.astype(np.float32), fps=25, gop=10)
        rows.append(probe_row(str(path), ProbeOptions(motion=True)))
    out = root / "manifest.parquet"
    write_manifest(rows, out)
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "params", "keys"),
    [
        ("arrow_of_time", {}, {"video", "label"}),
        ("opn", {}, {"video", "label"}),
        ("avc", {}, {"video", "audio", "label"}),
        ("motion_context", {"clip_len": 8, "motion_len": 8},
         {"video", "keyframe", "motion", "label"}),
    ],
)
def test_preview_decodes_with_the_stages_and_draws_a_png(
    manifest: Path, tmp_path: Path, name: str, params: dict[str, object], keys: set[str]
) -> None:
    task = get_task(name, **params)
    items = sample_items(task, manifest=manifest, n=4, size=(48, 64))
    assert len(items) == 4 and not any(it.error for it in items)
    for it in items:
        assert set(it.arrays) == keys
        frame = (42, 56, 3) if name == "opn" else (48, 64, 3)  # OPN crops 7/8 of each side
        assert it.arrays["video"].dtype == np.uint8 and it.arrays["video"].shape[-3:] == frame
    if name == "motion_context":  # the square slides right: forward x motion dominates
        motion = np.stack([it.arrays["motion"] for it in items])
        assert motion[..., 0].sum() > 5 * np.abs(motion[..., 1]).sum()
    out = render_sheet(task, items, tmp_path / f"{name}.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_arrow_of_time_frames_arrive_in_fed_order(manifest: Path) -> None:
    """Label 1 reverses the clip: the square's x position must fall along the row."""
    items = sample_items("arrow_of_time", manifest=manifest, n=6, size=(64, 80))
    for it in items:
        clip = it.arrays["video"][0].astype(int)
        xs = [np.argmax(f[28, :, 1] > 200) for f in clip]  # left edge of the white square
        slope = np.polyfit(np.arange(len(xs)), xs, 1)[0]
        assert (slope > 0) == (it.plan.label == 0)


def test_cli_writes_the_sheet(manifest: Path, tmp_path: Path) -> None:
    from pipelines.cli import main

    out = tmp_path / "sheet.png"
    argv = ["preview", "--task", "pace", "--manifest", str(manifest), "-o", str(out),
            "--n", "2", "--param", "paces=[1,2]", "--size", "32", "40"]
    assert main(argv) == 0 and out.exists()
    assert main(["preview", "--task", "pace", "--manifest", str(manifest), "-o", str(out)]) == 2


def test_parse_params() -> None:
    assert parse_params(["paces=[1, 2]", "short_video=pad", "mix=[0.2,0.4]"]) == {
        "paces": [1, 2], "short_video": "pad", "mix": [0.2, 0.4]}
    with pytest.raises(ValueError, match=r"--param \('paces'\) must be KEY=VALUE"):
        parse_params(["paces"])


def test_layout_helpers() -> None:
    tiles = np.zeros((2, 3, 4, 5, 3), np.uint8)
    assert mosaic(tiles).shape == (2 * 4 + 2, 3 * 5 + 2 * 2, 3)
    assert video_grid(np.zeros((3, 1, 4, 5, 3))).shape == (1, 3, 4, 5, 3)
    assert video_grid(np.zeros((2, 8, 4, 5, 3))).shape == (2, 8, 4, 5, 3)
    field = np.zeros((1, 2, 3, 3, 2), np.float32)
    field[0, 1, 0, 0] = (4.0, 0.0)  # one cell moving right: red at full brightness
    colour = motion_tiles(field, scale=2)
    assert colour.shape == (1, 2, 6, 6, 3) and tuple(colour[0, 1, 0, 0]) == (255, 0, 0)
    meta = VideoMeta(video_id=1, uri="/v.mp4", num_frames=100)
    reads = (ClipRead("/v.mp4", 1, (3, 4, 5)), ClipRead("/v.mp4", 1, (9,)))
    plan = SamplePlan(1, "vcop", 1, 0, clips=reads)
    item = PreviewItem(plan, meta, {1: meta}, {})
    assert row_names(get_task("vcop"), item, 2) == ["frames 3..5 step 1", "frame 9"]
    assert row_names(get_task("dsm"), item, 3) == ["anchor", "positive", "negative"]
