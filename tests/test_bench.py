"""``clipstream bench --quick``: the machinery runs end to end and writes sane results.

No timing assertions: the numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipelines._bench_baseline import decode_span
from pipelines._bench_corpus import PLANS, CorpusSpec, corpus, plan_samples
from pipelines._bench_monitor import Series, TreeSampler
from pipelines.cli import main
from workers.decode import open_video


def test_cpu_series_interpolates_and_keeps_exited_processes() -> None:
    s = Series(t=[1.0, 2.0, 3.0], cpu=[0.5, 1.0, 2.0])
    assert s.at(0.5) == 0.0  # not yet born
    assert s.at(1.5) == pytest.approx(0.75)
    assert s.at(9.0) == 2.0  # exited: keeps its last CPU


def test_peak_memory_of_a_window_between_two_samples_uses_its_neighbours() -> None:
    s = TreeSampler(root=0)
    s.memory = [(0.0, 10, 20), (1.0, 30, 40), (2.0, 50, 60)]
    assert s.peak_memory(0.5, 1.5) == (30, 40)
    assert s.peak_memory(1.2, 1.4) == (50, 60)  # nothing inside: the samples either side
    assert s.peak_memory(3.0, 4.0) == (50, 60)
    assert TreeSampler(root=0).peak_memory() == (0, 0)


def test_steady_rate_is_not_biased_by_batches_arriving_in_pairs() -> None:
    from pipelines._bench_summary import steady_rate

    # 12 batches of 8, two each second: the 10% mark is the second batch of a pair, the 90%
    # mark the first of one, so the count between them over their distance says 72/5 s.
    pairs = [(float(1 + i // 2), 8 * (i + 1)) for i in range(12)]
    raw = {"arrivals": pairs, "items": 96, "t_start": 0.0, "t_end": 6.0}
    assert abs(steady_rate(raw) - 16.0) < 1.0


def test_plans_have_the_promised_shapes(tmp_path: Path) -> None:
    metas = corpus(CorpusSpec(num_videos=2, seconds=3.0, gop=24), cache=tmp_path, with_real=False)
    assert [(m.width, m.height, m.num_frames) for m in metas] == [(340, 256, 90)] * 2
    assert metas[0].keyframes == (0, 24, 48, 72)
    for plan, frames in (("dense", [16]), ("vcop", [16, 16, 16]), ("sparse", [8])):
        visits, _ = plan_samples(metas, plan, 5)
        assert len(visits) == 5
        assert [len(r.frames) for r in visits[0].plans[0].clips] == frames
    (dense,), _ = plan_samples(metas, "dense", 1)
    f = dense.plans[0].clips[0].frames
    assert list(f) == list(range(f[0], f[0] + 16))


def test_baseline_decodes_the_same_frames_as_clipstream(tmp_path: Path) -> None:
    """The DataLoader baseline's time-based span holds exactly the planned frames."""
    metas = corpus(CorpusSpec(num_videos=1, seconds=3.0, gop=24), cache=tmp_path, with_real=False)
    for plan in PLANS:
        (visit,), _ = plan_samples(metas, plan, 1, seed=3)
        read = visit.plans[0].clips[0]
        first, last = min(read.frames), max(read.frames)
        span, decoded = decode_span(read.uri, first, last)
        assert decoded >= len(span) == last - first + 1
        with open_video(read.uri, meta=metas[0]) as r:
            expected = r.frames(list(read.frames))
        np.testing.assert_array_equal(np.stack([span[f - first] for f in read.frames]), expected)


@pytest.mark.slow
@pytest.mark.ray
def test_quick_bench_writes_sane_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPSTREAM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "bench"
    assert main(["bench", "--quick", "--out", str(out)]) == 0
    result = json.loads((out / "bench.json").read_text())
    for key in ("ratio_vs_baseline", "ratio_vs_ceiling", "pipeline_efficiency"):
        assert set(result[key]) == set(PLANS), key
        assert all(v > 0 for v in result[key].values()), key
    for plan, block in result["plans"].items():
        for system in ("clipstream", "dataloader", "inprocess"):
            m = block["systems"][system]["median"]
            assert m["clips_per_s"] > 0 and m["frames_per_s"] > 0, (plan, system)
            assert m["decoded_per_delivered"] >= 1.0, (plan, system)
            assert m["cpu_s_per_clip"] > 0 and m["peak_pss_mb"] > 0, (plan, system)
    assert result["ceiling"]["median"]["frames_per_s"] > 0
    assert result["scaling"]["actors"] == [1] and result["scaling"]["efficiency"] == [1.0]
    assert {"date_utc", "cpu_model", "cores", "command"} <= set(result["meta"])
    for name in ("bench.png", "scaling.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    assert "| plan |" in (out / "bench.md").read_text()
