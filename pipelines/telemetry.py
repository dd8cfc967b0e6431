"""Run telemetry: what each stage and each trainer is doing, over time.

Three consumers, one source. Stages and ranks count what they do (rows, errors, busy time;
waits and steps) and

- export it through ``ray.util.metrics`` (Prometheus, Ray's dashboard), tagged by stage/rank;
- send their cumulative counts, at most once a second, to one small named actor per run,
  the :class:`TelemetrySink`, which the driver's :class:`Monitor` samples into a timeline
  (``metrics.json`` -> ``timeline``, plotted in ``report.html``);
- the stall-aware autoscaler (``pipelines.scaling``) reads the trainers' recent stall
  fraction from the same sink.

Queue depth between stages is derived, not guessed: rows that left stage k but have not yet
left stage k+1. Example: video has emitted 40 rows, audio 32 -> 8 rows queued before audio.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Self

NAMESPACE = "clipstream"
ENV_SINK = "CLIPSTREAM_TELEMETRY"
SEND_EVERY_S = 1.0
ALIVE_WITHIN_S = 3.0


class TelemetrySink:
    """Cumulative counts per stage actor and per trainer rank (a Ray actor, 0 CPUs)."""

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, dict[str, float]]] = {}
        self.ranks: dict[int, dict[str, float]] = {}
        self.history: deque[tuple[float, float, float]] = deque(maxlen=4096)  # (t, wait, busy)
        self.seen: dict[tuple[str, str], float] = {}
        self.decisions: list[dict[str, Any]] = []

    def stage(self, stage: str, actor: str, counts: dict[str, float]) -> None:
        self.stages.setdefault(stage, {})[actor] = counts
        self.seen[(stage, actor)] = time.time()

    def alive(self, stage: str, within_s: float = ALIVE_WITHIN_S) -> int:
        """Actors of ``stage`` that have reported (every second, busy or idle) recently."""
        now = time.time()
        return sum(1 for (s, _), t in self.seen.items() if s == stage and now - t <= within_s)

    def trainer(self, rank: int, counts: dict[str, float]) -> None:
        self.ranks[rank] = counts
        wait = sum(r["wait_s"] for r in self.ranks.values())
        busy = sum(r["wait_s"] + r["compute_s"] for r in self.ranks.values())
        self.history.append((time.time(), wait, busy))

    def decision(self, stage: str, delta: int, reason: str, stall: float | None) -> None:
        """A scaling decision of the stall-aware autoscaler (an upscale, a downscale, or a
        change Ray Data proposed that the trainers' stall vetoed)."""
        self.decisions.append({"t": time.time(), "stage": stage, "delta": delta,
                               "reason": reason, "stall": stall})

    def scaling_decisions(self) -> list[dict[str, Any]]:
        return list(self.decisions)

    def stall(self, window_s: float = 10.0) -> float | None:
        """The ranks' stall fraction over the last ``window_s`` seconds (None: no data yet)."""
        if len(self.history) < 2:
            return None
        t_now, wait_now, busy_now = self.history[-1]
        old = next((h for h in self.history if h[0] >= t_now - window_s), self.history[0])
        d_busy = busy_now - old[2]
        return None if d_busy <= 0 else (wait_now - old[1]) / d_busy

    def snapshot(self) -> dict[str, Any]:
        totals = {
            name: {k: sum(a.get(k, 0.0) for a in actors.values()) for k in ("rows", "errors", "busy_s")}
            | {"actors": self.alive(name), "actors_seen": len(actors)}
            for name, actors in self.stages.items()
        }
        trainer = {k: sum(r.get(k, 0.0) for r in self.ranks.values())
                   for k in ("rows", "wait_s", "compute_s", "steps")}
        return {"stages": totals, "trainer": trainer, "stall_10s": self.stall(10.0)}


def start_sink(run_id: str):
    """Create the run's sink actor (driver side); returns its handle. Its name goes to every
    worker through the ``CLIPSTREAM_TELEMETRY`` environment variable."""
    import ray

    actor = ray.remote(num_cpus=0)(TelemetrySink)
    return actor.options(name=sink_name(run_id), namespace=NAMESPACE, get_if_exists=True).remote()


def sink_name(run_id: str) -> str:
    return f"telemetry-{run_id}"


class Reporter:
    """Counts of one stage actor or one rank: Prometheus metrics and the run's sink."""

    def __init__(self, kind: str, name: str, *, sink: str = "") -> None:
        self.kind, self.name = kind, name
        self.counts: dict[str, float] = {}
        self._last_sent = 0.0
        self._sink: Any = None
        self._sink_name = sink or os.environ.get(ENV_SINK, "")
        self._metrics = _prometheus(kind)
        if kind == "stage" and self._sink_name:
            # Idle actors report too, so the sink can count the live actors of each stage.
            threading.Thread(target=self._heartbeat, name="clipstream-heartbeat", daemon=True).start()

    def _heartbeat(self) -> None:
        # Report at once, then every second: an actor counts as a stage's from its start,
        # even one that the run ends before it gets any work.
        while self._sink_name:
            self._maybe_send()
            time.sleep(SEND_EVERY_S)

    def add(self, **deltas: float) -> None:
        for key, value in deltas.items():
            self.counts[key] = self.counts.get(key, 0.0) + value
            metric = self._metrics.get(key)
            if metric is not None and value:
                metric.inc(value, tags={self.kind: self.name})
        self._maybe_send()

    def gauge(self, key: str, value: float) -> None:
        metric = self._metrics.get(key)
        if metric is not None:
            metric.set(value, tags={self.kind: self.name})

    def _maybe_send(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self._sink_name or (not force and now - self._last_sent < SEND_EVERY_S):
            return
        self._last_sent = now
        import ray

        try:
            if self._sink is None:
                self._sink = ray.get_actor(self._sink_name, namespace=NAMESPACE)
            if self.kind == "stage":
                self._sink.stage.remote(self.name, f"{os.getpid()}", dict(self.counts))
            else:
                self._sink.trainer.remote(int(self.name), dict(self.counts))
        except ValueError:  # no sink in this run (a bench, a test without a monitor)
            self._sink_name = ""

    def flush(self) -> None:
        self._maybe_send(force=True)


_PROMETHEUS: dict[str, dict[str, Any]] = {}


def _prometheus(kind: str) -> dict[str, Any]:
    """The run's Prometheus metrics (one set per process), exported by Ray's metrics agent."""
    if kind in _PROMETHEUS:
        return _PROMETHEUS[kind]
    try:
        import ray
        from ray.util.metrics import Counter, Gauge

        if not ray.is_initialized():
            raise RuntimeError
    except (ImportError, RuntimeError):
        _PROMETHEUS[kind] = {}
        return {}
    metrics: dict[str, Any]
    if kind == "stage":
        tags = ("stage",)
        metrics = {
            "rows": Counter("clipstream_stage_rows", "rows a decode stage has emitted", tags),
            "errors": Counter("clipstream_stage_errors", "rows whose file failed in a stage", tags),
            "busy_s": Counter("clipstream_stage_busy_seconds", "seconds a stage spent working", tags),
        }
    else:
        tags = ("rank",)
        metrics = {
            "rows": Counter("clipstream_trainer_rows", "samples a trainer rank consumed", tags),
            "wait_s": Counter("clipstream_trainer_wait_seconds", "seconds a rank waited for data", tags),
            "compute_s": Counter("clipstream_trainer_compute_seconds", "seconds a rank computed", tags),
            "stall_fraction": Gauge("clipstream_trainer_stall_fraction", "wait / (wait + compute)", tags),
            "clips_per_s": Gauge("clipstream_trainer_clips_per_second", "samples per second", tags),
        }
    _PROMETHEUS[kind] = metrics
    return metrics


class Monitor:
    """Samples the sink and the stage actor counts once a second into a timeline (driver)."""

    def __init__(self, sink: Any, stages: Sequence[str], every_s: float = 1.0) -> None:
        self.sink, self.stages, self.every_s = sink, list(stages), every_s
        self.timeline: list[dict[str, Any]] = []
        self.decisions: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clipstream-monitor", daemon=True)
        self.started = time.time()  # unix time of the timeline's t = 0

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        self._stop.set()
        self._thread.join(timeout=10)
        self.sample()
        self.decisions = [d | {"t": round(d["t"] - self.started, 2)}
                          for d in ray.get(self.sink.scaling_decisions.remote(), timeout=10)]

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.sample()
            except Exception:  # noqa: BLE001, S112 - a missed sample is a gap in a plot, never a failed run
                continue

    def sample(self) -> None:
        import ray

        snap = ray.get(self.sink.snapshot.remote(), timeout=10)
        point = {"t": round(time.time() - self.started, 2), "stall_10s": snap["stall_10s"],
                 "trainer": snap["trainer"], "stages": {}}
        names = self.stages
        for i, name in enumerate(names):
            s = snap["stages"].get(name, {"rows": 0.0, "errors": 0.0, "busy_s": 0.0, "actors": 0,
                                          "actors_seen": 0})
            downstream = (snap["stages"].get(names[i + 1], {}).get("rows", 0.0)
                          if i + 1 < len(names) else snap["trainer"].get("rows", 0.0))
            point["stages"][name] = {"actors": s["actors"], "actors_seen": s["actors_seen"],
                                     "rows": s["rows"],
                                     "errors": s["errors"], "busy_s": s["busy_s"],
                                     "queued_after": max(0.0, s["rows"] - downstream)}
        self.timeline.append(point)

    def per_stage(self) -> dict[str, list[dict[str, float]]]:
        """The timeline as ``{stage: [{t, actors, rows, rows_per_s, errors, queued_after}]}``."""
        out: dict[str, list[dict[str, float]]] = {n: [] for n in self.stages}
        prev: dict[str, tuple[float, float]] = {}
        for p in self.timeline:
            for name, s in p["stages"].items():
                t0, r0 = prev.get(name, (0.0, 0.0))
                rate = (s["rows"] - r0) / (p["t"] - t0) if p["t"] > t0 else 0.0
                out[name].append({"t": p["t"], "actors": s["actors"],
                                  "actors_seen": s.get("actors_seen", 0), "rows": s["rows"],
                                  "rows_per_s": rate, "errors": s["errors"],
                                  "queued_after": s["queued_after"]})
                prev[name] = (p["t"], s["rows"])
        return out
