"""``clipstream submit | jobs | logs | stop``: Ray jobs through the Job Submission API.

    clipstream submit --address http://127.0.0.1:8265 -- pretrain --config pipelines/configs/cluster.yaml
    clipstream jobs
    clipstream logs raysubmit_XXXX --follow
    clipstream stop raysubmit_XXXX

The logic lives in :mod:`pipelines.jobs`; this module only maps arguments onto it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipelines import jobs

MULTI_COMMAND = True


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument(
        "--address", default=None,
        help="Job API address, e.g. http://HOST:8265 (default: $RAY_ADDRESS, else http://127.0.0.1:8265)",
    )
    parser.set_defaults(_job_command=name)
    if name == "submit":
        _submit_arguments(parser)
    elif name in ("logs", "stop"):
        parser.add_argument("job_id", metavar="JOB", help="submission id, as printed by submit")
        if name == "logs":
            parser.add_argument("--follow", "-f", action="store_true",
                                help="keep streaming until the job ends")
        else:
            parser.add_argument("--wait", action="store_true", help="wait until the job has stopped")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="give up waiting after S seconds (the job keeps running)")


def _submit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-wait", action="store_true",
                        help="print the job id and return without streaming logs")
    parser.add_argument("--runtime-env-json", default=None, metavar="JSON",
                        help='extra runtime_env, e.g. \'{"env_vars": {"NCCL_DEBUG": "INFO"}}\'')
    parser.add_argument("--working-dir", type=Path, default=None,
                        help="folder shipped as the job's working_dir (default: this checkout)")
    parser.add_argument("--submission-id", default=None, help="job id to use instead of a generated one")
    parser.add_argument("--python", default="python",
                        help="interpreter on the cluster that runs `-m pipelines.cli` (default: python)")
    parser.add_argument("--raw", action="store_true",
                        help="the words after -- are a shell command, not a clipstream command")
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                        help="the clipstream command to run on the cluster, e.g. -- pretrain --steps 4")


def main(args: argparse.Namespace) -> int:
    handlers = {"submit": _submit, "jobs": _list, "logs": _logs, "stop": _stop}
    name = args._job_command
    _quiet_ray_client_logs()
    try:
        return handlers[name](args)
    except jobs.JobTimeoutError as err:
        print(f"clipstream {name}: {err}", file=sys.stderr)
        return 2
    except jobs.USER_ERRORS as err:
        print(f"clipstream {name}: {err}", file=sys.stderr)
        return 1


def _quiet_ray_client_logs() -> None:
    """Keep the job's own logs readable: Ray's client logs every packaging step at INFO
    (some of its modules pin their loggers to INFO), and warns that it now skips .git and
    .venv, which clipstream excludes on purpose."""
    names = [n for n in logging.root.manager.loggerDict if n == "ray" or n.startswith("ray.")]
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("ray._private.runtime_env.working_dir").setLevel(logging.ERROR)


def command_words(argv: list[str]) -> list[str]:
    """The command after ``--`` (argparse keeps the separator in a REMAINDER argument)."""
    return argv[1:] if argv[:1] == ["--"] else argv


def _submit(args: argparse.Namespace) -> int:
    command = jobs.entrypoint(command_words(args.argv), python=args.python, raw=args.raw)
    env = jobs.runtime_env(args.working_dir or jobs.project_root(),
                           jobs.parse_runtime_env_json(args.runtime_env_json))
    client = jobs.connect(args.address)
    job_id = jobs.submit(client, command, env, submission_id=args.submission_id)
    print(job_id, flush=True)
    print(f"clipstream: submitted {job_id} to {jobs.resolve_address(args.address)}: {command}",
          file=sys.stderr)
    if args.no_wait:
        return 0
    status = jobs.follow(client, job_id, sys.stdout, timeout_s=args.timeout)
    print(f"clipstream: {jobs.outcome(client, job_id, status)}", file=sys.stderr)
    return jobs.exit_code(status)


def _list(args: argparse.Namespace) -> int:
    print(jobs.format_jobs(jobs.connect(args.address).list_jobs()))
    return 0


def _logs(args: argparse.Namespace) -> int:
    client = jobs.connect(args.address)
    if not args.follow:
        sys.stdout.write(client.get_job_logs(args.job_id))
        return 0
    status = jobs.follow(client, args.job_id, sys.stdout, timeout_s=args.timeout)
    print(f"clipstream: {jobs.outcome(client, args.job_id, status)}", file=sys.stderr)
    return jobs.exit_code(status)


def _stop(args: argparse.Namespace) -> int:
    client = jobs.connect(args.address)
    if not client.stop_job(args.job_id):
        print(f"clipstream: job {args.job_id} was not running: {client.get_job_status(args.job_id)}",
              file=sys.stderr)
        return 0
    print(f"clipstream: stop requested for {args.job_id}", file=sys.stderr)
    if args.wait:
        status = jobs.wait(client, args.job_id, timeout_s=args.timeout)
        print(f"clipstream: job {args.job_id} {status}", file=sys.stderr)
    return 0
