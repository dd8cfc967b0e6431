"""The ``clipstream`` command line: one subcommand per module in ``pipelines/commands``.

Each command module exposes ``add_arguments(parser)`` and ``main(args) -> int``; modules are
imported only when their command runs, so ``clipstream --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "index": ("pipelines.commands.index", "probe videos into a Parquet manifest"),
    "pretrain": ("pipelines.commands.pretrain", "stream pretext-task batches into DDP trainers"),
    "preview": ("pipelines.commands.preview", "contact sheet of what a task feeds the model"),
    "bench": ("pipelines.commands.bench", "clipstream beside a DataLoader and the FFmpeg ceiling"),
    "submit": ("pipelines.commands.jobs", "submit a command as a Ray job (Job Submission API)"),
    "jobs": ("pipelines.commands.jobs", "list Ray jobs"),
    "logs": ("pipelines.commands.jobs", "print a Ray job's logs"),
    "stop": ("pipelines.commands.jobs", "stop a Ray job"),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipstream",
        description="Data loading for self-supervised video and audio pretraining on Ray.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == wanted:  # only the chosen command's module is imported
            mod = importlib.import_module(module)
            mod.add_arguments(p, name) if _takes_name(mod) else mod.add_arguments(p)
            p.set_defaults(_main=mod.main)
    return parser


def _takes_name(mod: object) -> bool:
    return getattr(mod, "MULTI_COMMAND", False)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    return int(args._main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
