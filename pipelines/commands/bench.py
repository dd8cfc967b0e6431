"""``clipstream bench``: clipstream beside a DataLoader baseline and the FFmpeg ceiling.

    clipstream bench --out runs/bench                # the full run (about 10-20 minutes)
    clipstream bench --out /tmp/b --quick            # tiny inputs, one round: checks the machinery
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("runs/bench"),
                   help="folder for bench.json, bench.png, scaling.png, bench.md (default runs/bench)")
    p.add_argument("--videos", type=int, help="synthetic 340x256 videos to generate (default 16)")
    p.add_argument("--clips", type=int, help="samples per system, plan and round (default 96)")
    p.add_argument("--rounds", type=int, help="measured rounds after the warm-up (default 3)")
    p.add_argument("--plans", help="comma-separated plans among dense,vcop,sparse (default all)")
    p.add_argument("--actors", type=int, help="video actors of clipstream (default: cores)")
    p.add_argument("--workers", type=int, help="DataLoader worker processes (default: cores)")
    p.add_argument("--scaling", help="actor counts of the scaling curve, e.g. 1,2 (default 1..cores)")
    p.add_argument("--gop", type=int, help="keyframe interval of the synthetic videos (default 48)")
    p.add_argument("--no-real", action="store_true", help="leave the real Kinetics clips out")
    p.add_argument("--no-profile", action="store_true", help="skip the cProfile of the decode worker")
    p.add_argument("--quick", action="store_true", help="tiny inputs and one round (a smoke test)")


def config_from_args(args: argparse.Namespace):
    """The BenchConfig the flags describe (unset flags keep the defaults or --quick's)."""
    from pipelines.bench import BenchConfig

    overrides: dict = {"out": args.out}
    for name in ("videos", "clips", "rounds", "actors", "workers", "gop"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.plans:
        overrides["plans"] = tuple(p.strip() for p in args.plans.split(",") if p.strip())
    if args.scaling:
        overrides["scaling"] = tuple(int(k) for k in args.scaling.split(","))
    if args.no_real:
        overrides["with_real"] = False
    if args.no_profile:
        overrides["profile"] = False
    return BenchConfig.quick(**overrides) if args.quick else BenchConfig(**overrides)


def main(args: argparse.Namespace) -> int:
    from pipelines.bench import run_bench

    try:
        cfg = config_from_args(args)
    except ValueError as err:
        print(f"clipstream bench: {err}", file=sys.stderr)
        return 2
    command = "clipstream " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = run_bench(cfg, command=command)
    print(result_text(result, cfg.out))
    return 0


def result_text(result: dict, out: Path) -> str:
    from pipelines._bench_summary import markdown

    return f"{markdown(result)}\nwrote {out / 'bench.json'}, {out / 'bench.png'}, {out / 'scaling.png'}"
