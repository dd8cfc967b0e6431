"""The run report: one self-contained ``report.html`` per pretraining run folder.

    from pipelines.report import write_report
    write_report(Path("runs/demo"), json.loads(Path("runs/demo/metrics.json").read_text()))

Everything the page shows comes from ``metrics.json`` (see :mod:`pipelines.train`): throughput
and stall over time (``step_wait_s``/``step_compute_s``), loss curves (``loss``, and per task
under ``task_loss`` when recorded), label histograms (``label_histogram``), actors per stage
over time (``stages``: ``{name: [{"t": s, "actors": n, "actors_seen": m, "rows_per_s": r,
"queued_after": q}, ...]}``, optional; ``actors``: reporting in the last seconds,
``actors_seen``: every actor that has reported so far) with the autoscaler's decisions (``scaling``), the failed samples
(``failed``), decoder crashes (``decode_crashes``) and the sample accounting (``samples``). Plots are PNGs embedded
as base64 and the style sheet is inline, so the file can be mailed or attached to a ticket
and still show everything: it references no other file and nothing on the network.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines import _report_plots as plots
from pipelines._plots import data_uri

REPORT_NAME = "report.html"
MAX_FAILED_ROWS = 200  # the page lists this many failed samples; the counts cover all

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; } .muted { color: #777; } .bad { color: #b00; font-weight: bold; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.8em; }
"""

# Accounting rows shown in this order, with what each means.
ACCOUNTING_ROWS = (
    ("expected", "planned sample ids"),
    ("delivered", "rows the ranks consumed (failed decodes included)"),
    ("unique", "planned ids delivered at least once"),
    ("duplicated", "deliveries beyond the first of an id"),
    ("missing", "planned ids never delivered"),
    ("unexpected", "delivered ids that were not planned"),
    ("failed", "ids delivered as failed decodes (masked, quarantined)"),
)


def write_report(run_dir: Path, metrics: dict) -> Path:
    """Write ``run_dir/report.html`` from a run's metrics and return its path.

    Args:
        run_dir: the run folder (created if absent).
        metrics: the run's metrics, as in ``metrics.json``; missing keys make their section
            say "not recorded" rather than fail.
    Returns:
        the path of the report.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / REPORT_NAME
    path.write_text(render_report(metrics, title=f"clipstream run: {run_dir.name}"), encoding="utf-8")
    return path


def render_report(metrics: Mapping[str, Any], *, title: str = "clipstream run") -> str:
    """The report page as a string (what :func:`write_report` writes)."""
    sections = [
        _section("Summary", summary_table(metrics)),
        _section("Throughput and stall over time", _image(plots.throughput_stall_png(metrics),
                                                           "throughput and stall")),
        _section("Loss", _image(plots.loss_png(metrics), "loss curves")),
        _section("Labels", label_sections(metrics.get("label_histogram") or {},
                                          metrics.get("label_checks") or [])),
        _section("Actors per stage", _image(plots.actors_png(metrics.get("stages") or {}),
                                            "actors per stage")
                 + scaling_html(metrics.get("scaling"))),
        _section("Errors and quarantines", failures_html(metrics.get("failed") or [])
                 + crashes_html(metrics.get("decode_crashes"))),
        _section("Sample accounting", accounting_table(metrics.get("samples") or {},
                                                       metrics.get("repeats_dropped"))),
        _section("Configuration", _config_html(metrics.get("config"))),
    ]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>{''.join(sections)}</body></html>\n"
    )


def summary_table(m: Mapping[str, Any]) -> str:
    """Headline numbers: what ran, how fast, how often the trainers waited."""
    loss = m.get("loss") or []
    rows = [
        ("task(s)", m.get("task") or ", ".join(m.get("tasks") or {})),
        ("steps", m.get("steps")),
        ("epochs", m.get("epochs")),
        ("wall time (s)", _num(m.get("wall_s"))),
        ("clips/s", _num(m.get("clips_per_s"))),
        ("frames/s", _num(m.get("frames_per_s"), 0)),
        ("stall fraction", _pct(m.get("stall_fraction"))),
        ("stall per rank", ", ".join(_pct(s) for s in m.get("stall_per_rank") or []) or None),
        ("loss first → last", f"{loss[0]:.4f} → {loss[-1]:.4f}" if loss else None),
        ("resumed from", m.get("resumed_from")),
        ("manifest", m.get("manifest")),
    ]
    return _table(("", "value"), [(k, v) for k, v in rows if v not in (None, "")])


def label_sections(histograms: Mapping[str, Mapping[str, int]],
                   checks: Sequence[Mapping[str, Any]] = ()) -> str:
    """One bar chart and one count table per task, under its check against the design
    (flagged in red when the labels drift beyond what the task's design allows)."""
    if not histograms:
        return _not_recorded("label_histogram")
    verdicts = {c["task"]: c for c in checks}
    parts = []
    for task, counts in histograms.items():
        total = sum(counts.values())
        parts.append(f"<h3>{_e(task)}</h3>")
        if task in verdicts:
            css = "bad" if verdicts[task]["flagged"] else "muted"
            parts.append(f'<p class="{css}">{_e(verdicts[task]["line"])}</p>')
        parts.append(_image(plots.label_histogram_png(task, counts), f"{task} labels"))
        parts.append(_table(("label", "samples", "share"),
                            [(k, v, _pct(v / total if total else 0.0)) for k, v in counts.items()]))
    return "".join(parts)


def scaling_html(decisions: Any) -> str:
    """The autoscaler's decisions (upscales, downscales, vetoes), if the run made any."""
    if not isinstance(decisions, list) or not decisions:
        return "<p class=\"muted\">No scaling decisions were recorded.</p>"
    return "<h3>Scaling decisions</h3>" + _table(
        ("t (s)", "stage", "change", "reason", "stall"),
        [(d.get("t"), d.get("stage"), d.get("delta"), d.get("reason"),
          _pct(d["stall"]) if d.get("stall") is not None else "") for d in decisions])


def crashes_html(crashes: Any) -> str:
    """Samples retried or quarantined after they killed a decoder process."""
    if not isinstance(crashes, Mapping) or not crashes:
        return ""
    rows = [(k.replace("_", " "),
             ", ".join(f"{a}: {n}" for a, n in v.items()) if isinstance(v, Mapping) else v)
            for k, v in crashes.items()]
    return "<h3>Decoder crashes</h3>" + _table(("", "value"), rows)


def failures_html(failed: Sequence[Mapping[str, Any]]) -> str:
    """Counts of failed samples by kind, then the failures themselves (the first few hundred)."""
    if not failed:
        return "<p>No sample failed to decode; nothing was quarantined.</p>"
    kinds = Counter(str(f.get("kind") or "error") for f in failed)
    videos = {f.get("video_id") for f in failed}
    out = [(f"<p class=\"bad\">{len(failed)} failed sample(s) from {len(videos)} video(s), "
            "masked out of the loss and quarantined.</p>"),
           _table(("kind", "samples"), sorted(kinds.items(), key=lambda kv: -kv[1]))]
    shown = list(failed)[:MAX_FAILED_ROWS]
    out.append(_table(("sample_id", "video_id", "kind", "error"),
                      [(f.get("sample_id"), f.get("video_id"), f.get("kind"), f.get("error"))
                       for f in shown]))
    if len(failed) > len(shown):
        out.append(f"<p class=\"muted\">… and {len(failed) - len(shown)} more in metrics.json.</p>")
    return "".join(out)


def accounting_table(samples: Mapping[str, Any], repeats_dropped: int | None = None) -> str:
    """Expected / delivered / unique / duplicated / missing, with the example ids."""
    if not samples:
        return _not_recorded("samples")
    rows: list[tuple[Any, ...]] = [(k, samples[k], why) for k, why in ACCOUNTING_ROWS if k in samples]
    if repeats_dropped is not None:
        rows.append(("repeats dropped", repeats_dropped, "re-delivered ids the trainers skipped"))
    if samples.get("per_rank"):
        rows.append(("per rank", ", ".join(map(str, samples["per_rank"])), "rows consumed by each rank"))
    for key in ("missing_ids", "duplicated_ids"):
        if samples.get(key):
            rows.append((key, ", ".join(map(str, samples[key])), "first few"))
    ok = samples.get("missing", 0) == 0 and samples.get("duplicated", 0) == 0
    verdict = ("<p>Every planned sample was delivered exactly once.</p>" if ok else
               "<p class=\"bad\">The delivered samples differ from the plan (see missing / "
               "duplicated).</p>")
    return verdict + _table(("", "count", "meaning"), rows)


def _config_html(config: Any) -> str:
    if not config:
        return _not_recorded("config")
    return f"<details><summary>run configuration</summary><pre>{_e(json.dumps(config, indent=1, default=str))}</pre></details>"


def _section(title: str, body: str) -> str:
    return f"<section><h2>{_e(title)}</h2>{body}</section>"


def _image(png: bytes | None, alt: str) -> str:
    if png is None:
        return _not_recorded(alt)
    return f"<img alt=\"{_e(alt)}\" src=\"{data_uri(png)}\">"


def _not_recorded(what: str) -> str:
    return f"<p class=\"muted\">Not recorded in this run's metrics ({_e(what)}).</p>"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    cls = " class=\"num\"" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
    return f"<td{cls}>{_e('' if value is None else value)}</td>"


def _num(value: Any, digits: int = 2) -> str | None:
    return None if value is None else f"{float(value):,.{digits}f}"


def _pct(value: Any) -> str:
    return "" if value is None else f"{100 * float(value):.1f}%"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)
