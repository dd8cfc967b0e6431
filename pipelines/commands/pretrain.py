"""``clipstream pretrain``: stream pretext-task batches into DDP trainers on Ray."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a RunConfig YAML (pipelines/configs/*.yaml)")
    p.add_argument("--manifest", help="manifest.parquet; default: the embedded synthetic dataset")
    p.add_argument("--task", action="append",
                   help="task name, or NAME=WEIGHT; repeat for several tasks (default vcop)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--steps", type=int, help="stop after this many steps (overrides --epochs)")
    p.add_argument("--workers", type=int, help="DDP ranks")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--decode-workers", metavar="MIN:MAX", help="video stage actor pool size")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="run folder (metrics.json, checkpoints, report)")
    p.add_argument("--address", help="Ray address; default: local Ray, or RAY_ADDRESS")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its latest checkpoint: no sample repeated "
                        "or lost, also on another number of ranks (results go to RUN_DIR unless --out)")
    p.add_argument("--max-errors", type=int, metavar="N",
                   help="abort once more than N samples failed to decode (data.max_errors)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. video.concurrency=2:4 or train.lr=3e-4")


def overrides(args: argparse.Namespace) -> list[str]:
    """The flags as config overrides (flags win over --set, which wins over --config)."""
    out = list(args.set)
    if args.task:
        weights = {}
        for item in args.task:
            name, _, w = item.partition("=")
            weights[name] = float(w or 1.0)
        out.append("tasks=" + "{" + ", ".join(f"{k}: {v}" for k, v in weights.items()) + "}")
    flags = {"manifest": "data.manifest", "epochs": "train.epochs", "steps": "train.steps",
             "workers": "train.workers", "batch_size": "train.batch_size",
             "decode_workers": "video.concurrency", "seed": "data.seed", "out": "train.out",
             "address": "address", "max_errors": "data.max_errors"}
    for attr, key in flags.items():
        value = getattr(args, attr)
        if value is not None:
            out.append(f"{key}={value}")
    if args.resume and args.out is None:
        out.append(f"train.out={args.resume}")
    return out


def main(args: argparse.Namespace) -> int:
    from pipelines.config import load_config
    from pipelines.pretrain import pretrain, summary_line
    from pipelines.quarantine import ErrorBudgetExceeded

    run = load_config(args.config, overrides(args))
    try:
        metrics = pretrain(run, resume=args.resume)
    except ErrorBudgetExceeded as e:
        print(f"aborted: {e}")
        print(f"results: {run.train.out}/metrics.json; resume with --resume {run.train.out} "
              f"and a larger --max-errors")
        return 2
    print(summary_line(metrics))
    print(f"results: {run.train.out}/metrics.json")
    s = metrics.get("samples", {})
    return 0 if s.get("missing", 1) == 0 and s.get("duplicated", 1) == 0 else 1
