"""The run report: self-contained HTML with the plots embedded and the accounting numbers."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np

from pipelines.accounting import account
from pipelines.report import REPORT_NAME, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_metrics(steps: int = 60, *, stages: bool = True) -> dict:
    """Metrics shaped like pipelines.train.summarize + pretrain's additions, 2 ranks x 4."""
    rng = np.random.default_rng(0)
    wait = list(np.r_[np.full(5, 0.8), rng.uniform(0.0, 0.05, steps - 5)])  # warm-up stalls
    compute = list(rng.uniform(0.2, 0.3, steps))
    expected = list(range(steps * 8 + 3))  # 3 planned ids never delivered
    delivered = [expected[0:steps * 8:2], expected[1:steps * 8:2] + [4, 6]]  # 2 duplicates
    failed = [{"sample_id": 17, "video_id": 9001, "kind": "corrupt",
               "error": "/data/k400/broken.mp4: moov atom not found <b>"},
              {"sample_id": 41, "video_id": 9002, "kind": "timeout", "error": "decode took > 60 s"}]
    metrics = {
        "task": "vcop,opn", "tasks": {"vcop": 1.0, "opn": 0.5}, "steps": steps, "epochs": 1,
        "loss": list(np.linspace(2.5, 1.1, steps) + rng.normal(0, 0.05, steps)),
        "task_loss": {"vcop": list(np.linspace(1.8, 0.9, steps)), "opn": list(np.linspace(2.4, 1.5, steps))},
        "wall_s": float(sum(wait) + sum(compute)), "clips_per_s": 27.5, "frames_per_s": 1320.0,
        "stall_fraction": 0.071, "stall_per_rank": [0.07, 0.072],
        "step_wait_s": wait, "step_compute_s": compute,
        "label_histogram": {"vcop": {str(i): 80 + i for i in range(6)},
                            "opn": {str(i): 40 for i in range(12)}},
        "samples": account(expected, delivered, failed=[17, 41]),
        "repeats_dropped": 2, "failed": failed,
        "config": {"train": {"batch_size": 4, "workers": 2}, "data": {"size": [112, 112]}},
    }
    if stages:  # as pipelines.telemetry.Monitor.per_stage writes them
        metrics["stages"] = {
            "video": [{"t": float(t), "actors": 1 + (t > 5) + (t > 10), "rows": 20 * t,
                       "rows_per_s": 20.0, "errors": 0, "queued_after": 3.0} for t in range(20)],
            "assemble": [{"t": float(t), "actors": 1, "rows": 19 * t, "rows_per_s": 19.0,
                          "errors": 0, "queued_after": 1.0} for t in range(20)],
        }
        metrics["scaling"] = [{"t": 6.1, "stage": "video", "delta": 1, "reason": "stall 31% > 5%",
                               "stall": 0.31}]
        metrics["decode_crashes"] = {"retried_after_death": 1, "quarantined_after_deaths": 0,
                                     "actors_seen": {"video": 3}}
        metrics["timeline"] = [{"t": float(t), "stall_10s": 0.5 if t < 6 else 0.03} for t in range(20)]
    return metrics


def _html(tmp_path: Path, metrics: dict) -> str:
    path = write_report(tmp_path, metrics)
    assert path == tmp_path / REPORT_NAME
    return path.read_text(encoding="utf-8")


def test_report_is_self_contained(tmp_path: Path) -> None:
    html = _html(tmp_path, fake_metrics())
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html, flags=re.IGNORECASE)
    assert refs, "the report should embed its plots"
    assert all(r.startswith("data:image/png;base64,") for r in refs), refs
    assert "<link" not in html.lower() and "<script" not in html.lower()
    assert "url(" not in html  # no external resources from the style sheet either


def test_report_embeds_decodable_pngs(tmp_path: Path) -> None:
    html = _html(tmp_path, fake_metrics())
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    # throughput+stall, loss, 2 label histograms, actors
    assert len(images) == 5
    assert all(base64.b64decode(b).startswith(PNG_MAGIC) for b in images)


def test_report_holds_accounting_and_errors(tmp_path: Path) -> None:
    m = fake_metrics()
    html = _html(tmp_path, m)
    s = m["samples"]
    assert (s["expected"], s["duplicated"], s["missing"]) == (483, 2, 3)
    for key in ("expected", "delivered", "unique", "duplicated", "missing"):
        assert re.search(rf"<td>{key}</td><td class=\"num\">{s[key]}</td>", html), key
    assert "moov atom not found &lt;b&gt;" in html  # error text is escaped, not markup
    assert "2 failed sample(s) from 2 video(s)" in html
    assert "differ from the plan" in html
    assert "<td>retried after death</td><td class=\"num\">1</td>" in html
    assert "stall 31% &gt; 5%" in html  # the autoscaler's decision, escaped


def test_report_without_optional_keys(tmp_path: Path) -> None:
    m = fake_metrics(stages=False)
    del m["task_loss"], m["failed"]
    html = _html(tmp_path, m)
    assert "Not recorded in this run's metrics (actors per stage)" in html
    assert "No sample failed to decode" in html
    assert "No scaling decisions were recorded" in html
    assert len(re.findall(r"data:image/png;base64,", html)) == 4


def test_report_of_empty_metrics(tmp_path: Path) -> None:
    html = _html(tmp_path, {})
    assert html.count("Not recorded") >= 5
    assert "data:image" not in html
