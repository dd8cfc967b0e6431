"""``clipstream bench``: clipstream beside a DataLoader baseline and the FFmpeg ceiling.

    result = run_bench(BenchConfig(out=Path("runs/bench")))   # writes bench.json, *.png, bench.md

One process tree, the same files and the same plans for every system (see
:mod:`pipelines._bench_corpus`). The systems, each in its own runner child
(:mod:`pipelines._bench_runner`, :mod:`pipelines._bench_systems`):

- ``clipstream``: ``build_dataset`` -> ``iter_batches`` into a consumer that only counts
  (local Ray, ``ray_cpus`` logical CPUs, ``actors`` video actors);
- ``dataloader``: a PyTorch DataLoader, one worker per core, decoding the PyTorchVideo way;
- ``inprocess``: clipstream's ``VideoStage`` without Ray, one process per video actor;
- ``ceiling``: FFmpeg (PyAV) decoding every frame of every file, one process per core.

Honesty rules the code keeps: a warm-up pass of every system is run first and discarded;
then ``rounds`` rounds, each measuring every system once, in an order that rotates from round
to round (so background load on a shared machine falls on all of them alike); rates are
steady rates (between the 10% and 90% marks of the samples' arrivals); the reported figure
is the median over rounds, ratios are medians of per-round ratios. Besides samples per wall
second, every system is also measured in samples per CPU second of its whole process tree:
on a machine shared with other work, wall rates say how much of the CPU a system won, CPU
rates say how much work it needs.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipelines import _bench_summary as summary
from pipelines._bench_corpus import PLANS, CorpusSpec, corpus, plan_samples
from pipelines._bench_monitor import TreeSampler
from pipelines._bench_runner import Runner
from pipelines._bench_systems import AS_SHIPPED
from pipelines.config import DataConfig, StageConfig

CORES = os.cpu_count() or 1
SYSTEMS = ("clipstream", "dataloader", "inprocess")


def _default_cache() -> Path:
    from pipelines.synthetic import cache_dir

    return cache_dir() / "bench"


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """What to measure. Defaults: 16 synthetic videos (+ the real clips), 96 samples per
    system, plan and round, 3 rounds, as many video actors and DataLoader workers as cores."""

    out: Path = Path("runs/bench")
    videos: int = 16
    seconds: float = 10.0
    gop: int = 48
    with_real: bool = True
    clips: int = 96
    warmup_clips: int = 16
    rounds: int = 3
    plans: tuple[str, ...] = PLANS
    actors: int = CORES
    workers: int = CORES
    scaling: tuple[int, ...] = tuple(range(1, CORES + 1))
    scaling_plan: str = "dense"
    batch_size: int = 8
    stage_batch_size: int = 4
    ray_cpus: int = max(4, CORES)
    profile: bool = True
    warm_up: bool = True
    quick_mode: bool = False  # tiny inputs: the numbers say nothing, only that everything runs
    seed: int = 0
    cache: Path = field(default_factory=_default_cache)

    def __post_init__(self) -> None:
        for name in ("videos", "clips", "warmup_clips", "rounds", "actors", "workers", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} ({getattr(self, name)}) must be >= 1")
        bad = [p for p in (*self.plans, self.scaling_plan) if p not in PLANS]
        if bad:
            raise ValueError(f"plans {bad} unknown; known: {', '.join(PLANS)}")
        if not self.scaling or min(self.scaling) < 1:
            raise ValueError(f"scaling ({self.scaling}) must list actor counts >= 1")

    @classmethod
    def quick(cls, **overrides: Any) -> BenchConfig:
        """A run of a minute or two on tiny inputs: checks the machinery, not the numbers."""
        base: dict[str, Any] = {
            "videos": 2, "seconds": 3.0, "gop": 24, "with_real": False, "clips": 8,
            "warmup_clips": 4, "rounds": 1, "scaling": (1,), "profile": False, "warm_up": False,
            "batch_size": 4, "stage_batch_size": 2, "quick_mode": True}
        return cls(**{**base, **overrides})

    def data_config(self, actors: int) -> DataConfig:
        """The clipstream data config with ``actors`` video actors (a fixed-size pool)."""
        return DataConfig(size=(112, 112), video=StageConfig(
            concurrency=(actors, actors), batch_size=self.stage_batch_size))


def measure(runner: Runner, fn: str, **kwargs: Any) -> dict[str, Any]:
    """Run ``fn`` in ``runner`` while sampling its process tree; the raw result plus
    ``cpu_s`` (the tree's CPU over the steady window) and peak ``pss``/``rss`` (over the
    whole call)."""
    with TreeSampler(runner.pid) as sampler:
        raw = runner.call(fn, **kwargs)
    t0, t1, _ = summary.steady_window(raw)
    # Pool processes time their own steady part; for pipelines the tree's CPU in the window.
    raw["cpu_s"] = raw.get("own_cpu_s", sampler.cpu_between(t0, t1))
    raw["cpu_by_process"] = sampler.cpu_by_name(t0, t1)
    raw["peak_pss"], raw["peak_rss"] = sampler.peak_memory(raw["t_start"], raw["t_end"])
    raw["loadavg_1m"] = os.getloadavg()[0]  # background load on a shared machine, for the record
    raw["tree_processes"] = len(sampler.series)
    return raw


class Bench:
    """The runners and the planned samples of one benchmark run."""

    def __init__(self, cfg: BenchConfig, log: Callable[[str], None] = print) -> None:
        self.cfg, self.log = cfg, log
        spec = CorpusSpec(num_videos=cfg.videos, seconds=cfg.seconds, gop=cfg.gop, seed=cfg.seed)
        self.metas = corpus(spec, cache=cfg.cache, with_real=cfg.with_real)
        plans = set(cfg.plans) | {cfg.scaling_plan}
        self.visits = {p: plan_samples(self.metas, p, cfg.clips, seed=cfg.seed) for p in plans}
        self.warmup = {p: plan_samples(self.metas, p, cfg.warmup_clips, seed=cfg.seed + 1) for p in plans}
        self.uris = [m.uri for m in self.metas]
        self.runners = {name: Runner(name) for name in ("ray", "loader", "pool")}
        self.runners["ray"].call("start_ray", ray_cpus=cfg.ray_cpus)

    def ray_idle(self, seconds: float = 15.0) -> dict[str, float]:
        """CPU and memory of the local Ray (GCS, raylet, agents, dashboard) doing nothing:
        a cost every clipstream run pays, per second rather than per clip."""
        with TreeSampler(self.runners["ray"].pid) as sampler:
            t0 = time.monotonic()
            time.sleep(seconds)
            t1 = time.monotonic()
        pss, rss = sampler.peak_memory()
        return {"cpu_s_per_s": sampler.cpu_between(t0, t1) / (t1 - t0), "pss_mb": pss / 2**20,
                "rss_mb": rss / 2**20, "processes": len(sampler.series), "seconds": t1 - t0}

    def close(self) -> None:
        for runner in self.runners.values():
            runner.close()

    def run(self, system: str, plan: str, *, actors: int | None = None, warmup: bool = False) -> dict:
        """One measurement of ``system`` on ``plan`` (``actors``: video actors / processes)."""
        cfg = self.cfg
        visits, tasks = (self.warmup if warmup else self.visits)[plan]
        k = actors or cfg.actors
        if system == "clipstream":
            return measure(self.runners["ray"], "clipstream", visits=visits, tasks=tasks,
                           data=cfg.data_config(k), batch_size=cfg.batch_size, ray_cpus=cfg.ray_cpus)
        if system == "dataloader":
            return measure(self.runners["loader"], "dataloader", visits=visits, size=(112, 112),
                           workers=cfg.workers, batch_size=cfg.batch_size)
        if system == "inprocess":
            return measure(self.runners["pool"], "inprocess", visits=visits, data=cfg.data_config(k), procs=k)
        if system == "ceiling":
            return measure(self.runners["pool"], "ceiling", uris=self.uris, procs=CORES)
        raise ValueError(f"system ({system!r}) must be one of {', '.join((*SYSTEMS, 'ceiling'))}")

    def keep(self, row: dict) -> dict:
        """Append a raw measurement to ``raw.jsonl`` as soon as it is taken, so a run that is
        stopped part-way (a shared machine, a killed job) still leaves what it measured."""
        with open(Path(self.cfg.out) / "raw.jsonl", "a") as f:
            f.write(json.dumps({k: v for k, v in row.items() if k != "stats"}, default=str) + "\n")
        return row

    def warm_up(self) -> None:
        """One discarded pass of every system and plan: imports, Ray's workers, file cache."""
        self.log("warm-up (discarded)")
        self.run("ceiling", self.cfg.plans[0], warmup=True)
        for plan in self.cfg.plans:
            for system in SYSTEMS:
                self.run(system, plan, warmup=True)

    def comparison(self) -> list[dict]:
        """``rounds`` rounds of every system on every plan (rotating order); raw results."""
        out = []
        for r in range(self.cfg.rounds):
            ceiling = self.run("ceiling", self.cfg.plans[0])
            out.append(self.keep({"round": r, "system": "ceiling", "plan": None, **ceiling}))
            self.log(f"round {r + 1}/{self.cfg.rounds}: ceiling {summary.line(ceiling, 'ceiling')}")
            for plan in self.cfg.plans:
                order = SYSTEMS[r % len(SYSTEMS):] + SYSTEMS[:r % len(SYSTEMS)]
                for system in order:
                    res = self.run(system, plan)
                    out.append(self.keep({"round": r, "system": system, "plan": plan, **res}))
                    self.log(f"round {r + 1}/{self.cfg.rounds}: {plan:6s} {system:10s} "
                             f"{summary.line(res, system)}")
        return out

    def scaling(self) -> list[dict]:
        """clipstream and its in-process workers at each actor count, ``rounds`` times."""
        out = []
        ks = list(self.cfg.scaling)
        for r in range(self.cfg.rounds):
            for k in ks[r % len(ks):] + ks[:r % len(ks)]:
                for system in ("clipstream", "inprocess"):
                    res = self.run(system, self.cfg.scaling_plan, actors=k)
                    out.append(self.keep({"round": r, "system": system, "actors": k, **res}))
                    self.log(f"scaling round {r + 1}: {k} actor(s) {system:10s} {summary.line(res, system)}")
        return out

    def breakdown(self) -> dict[str, dict[str, float]]:
        """CPU per sample of each step of the decode worker, and of the baseline, per plan."""
        out = {}
        for plan in self.cfg.plans:
            visits, _ = self.visits[plan]
            part = visits[: max(8, len(visits) // 3)]  # every step runs over all of them
            out[plan] = self.runners["pool"].call("reader_breakdown", visits=part, size=(112, 112))
            self.log(f"breakdown {plan}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in out[plan].items()))
        return out

    def profile(self) -> dict:
        """cProfile of the decode worker per plan: as shipped, and with FFmpeg's own choice
        of decoder threads (frame threads on every core)."""
        out: dict[str, Any] = {}
        for plan in self.cfg.plans:
            visits, _ = self.visits[plan]
            part = visits[: max(8, len(visits) // 2)]
            for threads in (AS_SHIPPED, None):
                key = f"{plan}/threads={'auto' if threads is None else threads}"
                out[key] = self.runners["pool"].call("profile_stage", visits=part,
                                                     data=self.cfg.data_config(1), threads=threads)
                self.log(f"profile {key}: {out[key]['rows'] / out[key]['seconds']:.1f} clips/s in-process")
        return out


def run_bench(cfg: BenchConfig, *, command: str = "clipstream bench",
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure everything, write ``bench.json``, ``bench.png``, ``scaling.png`` and
    ``bench.md`` into ``cfg.out``, and return the result (what bench.json holds)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "raw.jsonl").unlink(missing_ok=True)
    t0, load0 = time.monotonic(), os.getloadavg()[0]
    bench = Bench(cfg, log)
    try:
        if cfg.warm_up:
            bench.warm_up()
        ray_idle = bench.ray_idle(15.0 if cfg.warm_up else 2.0)
        rows = bench.comparison()
        scaling_rows = bench.scaling()
        profile = bench.profile() if cfg.profile else {}
        breakdown = bench.breakdown() if cfg.profile else {}
    finally:
        bench.close()
    result = summary.summarize(rows, scaling_rows, cfg=cfg, metas=bench.metas, visits=bench.visits)
    result["ray_idle"] = ray_idle
    result["profile"] = profile
    result["breakdown"] = breakdown
    result["meta"] = {**summary.machine(), "command": command, "wall_s": time.monotonic() - t0,
                      "loadavg_1m": {"start": load0, "end": os.getloadavg()[0]},
                      "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}}
    (out / "bench.json").write_text(json.dumps(result, indent=1, default=str))
    from pipelines._bench_plots import write_charts

    write_charts(result, out)
    (out / "bench.md").write_text(summary.markdown(result))
    return result

