"""Running clipstream commands on a Ray cluster through Ray's Job Submission API.

    client = connect("http://127.0.0.1:8265")
    job_id = submit(client, entrypoint(["pretrain", "--steps", "4"]), runtime_env(project_root()))
    status = follow(client, job_id, sys.stdout, timeout_s=600)

The repo ships as the job's ``working_dir`` (so the cluster runs the code you have, not
the code its image was built with), and the entrypoint is ``python -m pipelines.cli ...``:
``python`` is whatever the cluster's nodes put first on ``PATH`` (the locked ``.venv`` in
``deploy/Dockerfile``; the ``.venv`` of a local cluster started from this repo).

Token authentication: clusters started with ``RAY_AUTH_MODE=token`` answer 401 to requests
without ``Authorization: Bearer <token>``. The token comes from
:func:`pipelines.runtime.auth_token` (``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token``) and is
sent explicitly on every request, including the log websocket.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ray.exceptions import AuthenticationError
from ray.job_submission import JobDetails, JobStatus, JobSubmissionClient

from pipelines.runtime import auth_token, use_token_auth

DEFAULT_ADDRESS = "http://127.0.0.1:8265"

# Never shipped: environments, run outputs, VCS data and caches. Patterns are gitignore-style,
# relative to the working_dir, as Ray's runtime_env "excludes" expects.
EXCLUDES: tuple[str, ...] = (
    ".venv", ".git", "runs", "__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache",
    ".ruff_cache", ".cache", ".whl", ".gl", "*.egg-info", ".hypothesis",
)

# Statuses a job never leaves; anything but SUCCEEDED counts as a failure.
TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED})

# What a user can cause and fix (bad arguments, no cluster at the address or a dropped
# connection, a missing or wrong token, an unknown job id): reported as one line, not a
# traceback. The Job API client raises RuntimeError for HTTP errors, AuthenticationError
# for 401/403 (with a message that says where the token is looked for) and requests'
# exceptions, which are OSErrors, for network failures.
USER_ERRORS: tuple[type[Exception], ...] = (
    ValueError, TypeError, OSError, RuntimeError, AuthenticationError,
)


class JobTimeoutError(TimeoutError):
    """A job did not reach a terminal status within the time allowed."""


def resolve_address(address: str | None = None) -> str:
    """The Job API address: ``address``, else ``RAY_ADDRESS``, else the local dashboard.

    A bare ``host:port`` becomes ``http://host:port``; ``ray://`` and ``auto`` are passed
    through for Ray to resolve.

    >>> resolve_address("10.0.0.5:8265")
    'http://10.0.0.5:8265'
    """
    address = (address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS).rstrip("/")
    if "://" not in address and address != "auto":
        address = "http://" + address
    return address


def auth_headers() -> dict[str, str]:
    """``Authorization: Bearer <token>`` when a Ray token is available, else nothing.

    Sending the header ourselves (rather than relying on Ray to find the token) keeps one
    source of truth, :func:`pipelines.runtime.auth_token`, for every clipstream client; Ray's
    own header injection steps aside when an Authorization header is already present.
    """
    token = auth_token()
    if token is None:
        return {}
    use_token_auth()
    return {"Authorization": f"Bearer {token}"}


def connect(address: str | None = None) -> JobSubmissionClient:
    """A Job Submission client for ``address`` (see :func:`resolve_address`), with auth."""
    return JobSubmissionClient(resolve_address(address), headers=auth_headers())


def project_root() -> Path:
    """The checkout that holds the ``pipelines`` package (the folder with pyproject.toml)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise FileNotFoundError(
            f"{root} has no pyproject.toml: clipstream is not running from a checkout; "
            "pass --working-dir with the repository to ship"
        )
    return root


def entrypoint(command: Sequence[str], *, python: str = "python", raw: bool = False) -> str:
    """The shell command the cluster runs for ``command``.

    A clipstream command (``["pretrain", "--steps", "4"]``) becomes
    ``python -m pipelines.cli pretrain --steps 4``, quoted for the shell. With ``raw=True``
    the words are the command itself (``["python", "-c", "print(1)"]``).

    Raises:
        ValueError: nothing to run, or an unknown clipstream command without ``raw``.
    """
    from pipelines.cli import COMMANDS

    if not command:
        raise ValueError("no command to submit: put it after '--', e.g. submit -- pretrain --steps 4")
    if raw:
        return shlex.join(command)
    if command[0] not in COMMANDS:
        raise ValueError(
            f"{command[0]!r} is not a clipstream command ({', '.join(COMMANDS)}); "
            "pass --raw to submit an arbitrary shell command"
        )
    return shlex.join([python, "-m", "pipelines.cli", *command])


def runtime_env(working_dir: Path, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The job's runtime_env: ``working_dir`` minus :data:`EXCLUDES`, merged with ``extra``.

    ``extra`` keys win, except ``excludes`` (appended) and ``env_vars`` (merged), so a user's
    ``--runtime-env-json '{"env_vars": {"A": "1"}}'`` never re-ships ``.venv``.
    """
    env: dict[str, Any] = {"working_dir": str(working_dir), "excludes": list(EXCLUDES)}
    for key, value in (extra or {}).items():
        if key == "excludes":
            env["excludes"] = env["excludes"] + [x for x in value if x not in env["excludes"]]
        elif key == "env_vars":
            env["env_vars"] = {**env.get("env_vars", {}), **value}
        else:
            env[key] = value
    return env


def parse_runtime_env_json(text: str | None) -> dict[str, Any]:
    """``--runtime-env-json`` as a dict.

    Raises:
        ValueError: not JSON. TypeError: JSON, but not an object.
    """
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--runtime-env-json is not valid JSON ({err.msg}): {text!r}") from err
    if not isinstance(value, dict):
        raise TypeError(f"--runtime-env-json must be a JSON object, got {type(value).__name__}")
    return value


def submit(
    client: JobSubmissionClient,
    command: str,
    env: Mapping[str, Any],
    *,
    submission_id: str | None = None,
    agent_wait_s: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Submit ``command`` with runtime_env ``env``; returns the job (submission) id.

    A head that has just started (or restarted) answers "No available agent to submit
    job" until its node's dashboard agent registers, typically for a few seconds; that
    answer is retried for up to ``agent_wait_s``. Every other error is raised at once.
    """
    deadline = clock() + agent_wait_s
    while True:
        try:
            return client.submit_job(entrypoint=command, runtime_env=dict(env),
                                     submission_id=submission_id)
        except RuntimeError as err:
            if "No available agent" not in str(err) or clock() >= deadline:
                raise
        sleep(2.0)


def wait(
    client: JobSubmissionClient,
    job_id: str,
    *,
    timeout_s: float | None = None,
    poll_s: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> JobStatus:
    """Poll until the job is terminal; :class:`JobTimeoutError` past ``timeout_s``."""
    deadline = None if timeout_s is None else clock() + timeout_s
    while True:
        status = client.get_job_status(job_id)
        if status in TERMINAL:
            return status
        if deadline is not None and clock() >= deadline:
            raise JobTimeoutError(f"job {job_id} still {status} after {timeout_s:g} s")
        sleep(poll_s)


class _CountingWriter:
    """Writes through to ``out`` and remembers how many characters went out."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.written = 0

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()
        self.written += len(text)


async def _stream(client: JobSubmissionClient, job_id: str, out: _CountingWriter) -> None:
    async for chunk in client.tail_job_logs(job_id):
        out.write(chunk)


def follow(
    client: JobSubmissionClient,
    job_id: str,
    out: TextIO,
    *,
    timeout_s: float | None = None,
) -> JobStatus:
    """Stream the job's logs to ``out`` until it ends; returns its final status.

    The log websocket closes when the job ends. If it drops early (a proxy in between, a
    restarted dashboard), the job is polled instead and, once it ends, the part of its logs
    not yet written is printed: nothing lost, nothing printed twice.

    Raises:
        JobTimeoutError: the job was still running after ``timeout_s`` (it keeps running).
    """
    start = time.monotonic()
    writer = _CountingWriter(out)
    try:
        asyncio.run(asyncio.wait_for(_stream(client, job_id, writer), timeout_s))
    except TimeoutError:
        raise JobTimeoutError(f"job {job_id} did not finish within {timeout_s:g} s") from None
    except (RuntimeError, OSError):
        pass  # the websocket dropped: poll below
    left = None if timeout_s is None else max(0.0, timeout_s - (time.monotonic() - start))
    status = wait(client, job_id, timeout_s=left)
    rest = client.get_job_logs(job_id)[writer.written:]
    if rest:
        writer.write(rest)
    return status


def outcome(client: JobSubmissionClient, job_id: str, status: JobStatus) -> str:
    """One line on how a job ended; for a failure, Ray's reason (a runtime_env that could not
    be set up, a driver that exited non-zero, a stop request), which the logs may not say."""
    line = f"job {job_id} {status}"
    if status == JobStatus.SUCCEEDED:
        return line
    message = (client.get_job_info(job_id).message or "").strip()
    # Ray appends the last 20,000 characters of the logs, which were streamed already.
    reason = message.splitlines()[0].split(", last available logs")[0] if message else ""
    return f"{line}: {reason}" if reason else line


def exit_code(status: JobStatus) -> int:
    """0 for SUCCEEDED, 1 for any other terminal status (FAILED, STOPPED)."""
    return 0 if status == JobStatus.SUCCEEDED else 1


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_jobs(jobs: Sequence[JobDetails]) -> str:
    """A table of jobs, newest first: id, status, start (UTC), entrypoint."""
    rows = [("JOB", "STATUS", "STARTED (UTC)", "ENTRYPOINT")]
    for job in sorted(jobs, key=lambda j: j.start_time or 0, reverse=True):
        rows.append((job.submission_id or job.job_id or "-", str(job.status),
                     _when(job.start_time), job.entrypoint))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r[:3], widths)) + "  " + r[3] for r in rows
    )
