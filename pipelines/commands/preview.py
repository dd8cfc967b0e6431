"""``clipstream preview``: a contact sheet of what a pretext task feeds the model.

    clipstream preview --task opn -o opn.png
    clipstream preview --task pace --manifest data/manifest.parquet --n 12 --param paces=[1,2,4]
"""

from __future__ import annotations

import argparse
import sys

import yaml


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipelines.tasks import task_names

    parser.add_argument("--task", required=True, choices=task_names(), help="the pretext task")
    parser.add_argument("--manifest", default=None,
                        help="manifest Parquet (default: the embedded synthetic dataset)")
    parser.add_argument("-o", "--out", default="preview.png", help="PNG to write")
    parser.add_argument("--n", type=int, default=8, help="samples to show (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    parser.add_argument("--epoch", type=int, default=0,
                        help="the epoch to plan (curricula such as AVTS depend on it)")
    parser.add_argument("--size", type=int, nargs=2, default=(112, 112), metavar=("H", "W"),
                        help="decoded frame size (default 112 112)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a task parameter, value in YAML (repeatable): --param paces=[1,2]")


def parse_params(items: list[str]) -> dict[str, object]:
    """``["paces=[1,2]", "short_video=pad"]`` -> ``{"paces": [1, 2], "short_video": "pad"}``."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--param ({item!r}) must be KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


def main(args: argparse.Namespace) -> int:
    from pipelines.preview import render_sheet, sample_items
    from pipelines.tasks import get_task

    try:
        task = get_task(args.task, **parse_params(args.param))
        items = sample_items(task, manifest=args.manifest, n=args.n, seed=args.seed,
                             epoch=args.epoch, size=tuple(args.size))
    except ValueError as e:  # bad parameters, or no video the task can plan
        print(f"clipstream preview: {e}", file=sys.stderr)
        return 2
    path = render_sheet(task, items, args.out)
    failed = sum(bool(it.error) for it in items)
    print(f"wrote {path}: {len(items)} {args.task} samples"
          + (f", {failed} not decoded" if failed else ""))
    return 0
