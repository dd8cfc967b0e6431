"""pipelines.jobs without a cluster: addresses, entrypoints, runtime_env, auth, log following."""

from __future__ import annotations

import io
import os
import shlex
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from ray.job_submission import JobStatus

from pipelines import jobs, runtime
from pipelines.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No token anywhere; a private os.environ, since auth_headers() sets RAY_AUTH_MODE."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
    monkeypatch.setattr(os, "environ", env)
    monkeypatch.setattr(runtime, "TOKEN_FILE", tmp_path / "absent")


class FakeClient:
    """The slice of JobSubmissionClient that follow/wait use, scripted."""

    def __init__(self, chunks: list[str], statuses: list[JobStatus], *, drop_after: int | None = None):
        self.chunks = chunks
        self.statuses = list(statuses)
        self.drop_after = drop_after

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        for i, chunk in enumerate(self.chunks):
            if self.drop_after is not None and i == self.drop_after:
                raise RuntimeError("WebSocket connection closed unexpectedly")
            yield chunk

    def get_job_logs(self, job_id: str) -> str:
        return "".join(self.chunks)

    def get_job_status(self, job_id: str) -> JobStatus:
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    def get_job_info(self, job_id: str) -> SimpleNamespace:
        return SimpleNamespace(message=(
            "Job entrypoint command failed with exit code 3, last available logs "
            "(truncated to 20,000 chars):\n" + self.get_job_logs(job_id)))


@pytest.mark.parametrize(("given", "env", "expected"), [
    (None, None, "http://127.0.0.1:8265"),
    (None, "http://head:8265", "http://head:8265"),
    ("10.0.0.5:8265", "http://ignored:1", "http://10.0.0.5:8265"),
    ("https://ray.example.com/", None, "https://ray.example.com"),
])
def test_resolve_address(monkeypatch: pytest.MonkeyPatch, given: str | None, env: str | None,
                         expected: str) -> None:
    if env is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", env)
    assert jobs.resolve_address(given) == expected


def test_entrypoint_wraps_clipstream_commands() -> None:
    cmd = jobs.entrypoint(["pretrain", "--set", "tasks={vcop: 1}", "--steps", "4"])
    assert shlex.split(cmd) == ["python", "-m", "pipelines.cli", "pretrain", "--set",
                                "tasks={vcop: 1}", "--steps", "4"]
    assert jobs.entrypoint(["jobs"], python="/app/.venv/bin/python").startswith("/app/.venv/bin/python ")


def test_entrypoint_raw_and_errors() -> None:
    assert jobs.entrypoint(["python", "-c", "print(1)"], raw=True) == "python -c 'print(1)'"
    with pytest.raises(ValueError, match="not a clipstream command.*--raw"):
        jobs.entrypoint(["pretrian"])
    with pytest.raises(ValueError, match="no command to submit"):
        jobs.entrypoint([])


def test_runtime_env_keeps_excludes_and_merges_env_vars() -> None:
    env = jobs.runtime_env(ROOT, {"excludes": ["data/"], "env_vars": {"A": "1"}, "pip": ["x"]})
    assert env["working_dir"] == str(ROOT)
    assert {".venv", ".git", "runs", "data/"} <= set(env["excludes"])
    assert env["env_vars"] == {"A": "1"} and env["pip"] == ["x"]


def test_parse_runtime_env_json() -> None:
    assert jobs.parse_runtime_env_json(None) == {}
    assert jobs.parse_runtime_env_json('{"env_vars": {"A": "1"}}') == {"env_vars": {"A": "1"}}
    with pytest.raises(ValueError, match="not valid JSON"):
        jobs.parse_runtime_env_json("{env_vars")
    with pytest.raises(TypeError, match="JSON object"):
        jobs.parse_runtime_env_json("[1]")


def test_project_root_is_this_checkout() -> None:
    assert jobs.project_root() == ROOT


def test_auth_headers_from_env(monkeypatch: pytest.MonkeyPatch, no_token: None) -> None:
    assert jobs.auth_headers() == {}
    monkeypatch.setenv("RAY_AUTH_TOKEN", "abc")
    assert jobs.auth_headers() == {"Authorization": "Bearer abc"}
    assert os.environ["RAY_AUTH_MODE"] == "token"


def test_auth_headers_from_token_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_token: None
) -> None:
    token_file = tmp_path / "auth_token"
    token_file.write_text("filetoken\n")
    monkeypatch.setattr(runtime, "TOKEN_FILE", token_file)
    assert jobs.auth_headers() == {"Authorization": "Bearer filetoken"}


def test_follow_streams_once() -> None:
    client = FakeClient(["a\n", "b\n"], [JobStatus.SUCCEEDED])
    out = io.StringIO()
    assert jobs.follow(client, "j", out) == JobStatus.SUCCEEDED  # type: ignore[arg-type]
    assert out.getvalue() == "a\nb\n"


def test_follow_falls_back_to_polling_without_repeating() -> None:
    client = FakeClient(["a\n", "b\n", "c\n"], [JobStatus.RUNNING, JobStatus.FAILED], drop_after=1)
    out = io.StringIO()
    assert jobs.follow(client, "j", out) == JobStatus.FAILED  # type: ignore[arg-type]
    assert out.getvalue() == "a\nb\nc\n"


class BusyHead:
    """A head whose agent registers after ``busy`` refusals."""

    def __init__(self, busy: int, error: str = "No available agent to submit job") -> None:
        self.busy = busy
        self.error = error
        self.calls = 0

    def submit_job(self, **kwargs: object) -> str:
        self.calls += 1
        if self.calls <= self.busy:
            raise RuntimeError(f"Request failed with status code 500: {self.error}")
        return "raysubmit_1"


def test_submit_waits_for_the_agent() -> None:
    head = BusyHead(busy=3)
    job = jobs.submit(head, "python -V", {}, sleep=lambda s: None)  # type: ignore[arg-type]
    assert (job, head.calls) == ("raysubmit_1", 4)


def test_submit_gives_up_and_does_not_retry_other_errors() -> None:
    clock = iter(range(0, 1000, 10))
    with pytest.raises(RuntimeError, match="No available agent"):
        jobs.submit(BusyHead(busy=100), "x", {}, agent_wait_s=30,  # type: ignore[arg-type]
                    clock=lambda: next(clock), sleep=lambda s: None)
    head = BusyHead(busy=1, error="Job with submission_id x already exists")
    with pytest.raises(RuntimeError, match="already exists"):
        jobs.submit(head, "x", {}, sleep=lambda s: None)  # type: ignore[arg-type]
    assert head.calls == 1


def test_wait_times_out() -> None:
    clock = iter(range(100))
    client = FakeClient([], [JobStatus.RUNNING])
    with pytest.raises(jobs.JobTimeoutError, match="still RUNNING after 3 s"):
        jobs.wait(client, "j", timeout_s=3, clock=lambda: next(clock),  # type: ignore[arg-type]
                  sleep=lambda s: None)


def test_outcome_gives_the_reason_without_the_logs_again() -> None:
    client = FakeClient(["a\n"], [JobStatus.FAILED])
    line = jobs.outcome(client, "j", JobStatus.FAILED)  # type: ignore[arg-type]
    assert line == "job j FAILED: Job entrypoint command failed with exit code 3"
    assert jobs.outcome(client, "j", JobStatus.SUCCEEDED) == "job j SUCCEEDED"  # type: ignore[arg-type]


def test_exit_codes() -> None:
    assert jobs.exit_code(JobStatus.SUCCEEDED) == 0
    assert jobs.exit_code(JobStatus.FAILED) == jobs.exit_code(JobStatus.STOPPED) == 1


def test_format_jobs_newest_first() -> None:
    from ray.job_submission import JobDetails, JobType

    old = JobDetails(type=JobType.SUBMISSION, submission_id="raysubmit_old",
                     status=JobStatus.SUCCEEDED, entrypoint="python -m pipelines.cli pretrain",
                     start_time=1_700_000_000_000)
    new = old.model_copy(update={"submission_id": "raysubmit_new", "status": JobStatus.RUNNING,
                           "start_time": 1_700_000_100_000})
    lines = jobs.format_jobs([old, new]).splitlines()
    assert lines[0].split()[:2] == ["JOB", "STATUS"]
    assert lines[1].startswith("raysubmit_new") and "RUNNING" in lines[1]
    assert lines[2].endswith("python -m pipelines.cli pretrain")


@pytest.mark.parametrize("argv", [
    ["submit", "--", "pretrain", "--steps", "4"],
    ["submit", "--address", "http://h:8265", "--no-wait", "--", "pretrain", "--steps", "4"],
])
def test_cli_passes_everything_after_the_separator(argv: list[str]) -> None:
    from pipelines.commands.jobs import command_words

    args = build_parser(argv).parse_args(argv)
    assert command_words(args.argv) == ["pretrain", "--steps", "4"]
    assert args._job_command == "submit"


def test_cli_logs_and_stop_take_a_job_id() -> None:
    for name in ("logs", "stop"):
        args = build_parser([name, "raysubmit_x"]).parse_args([name, "raysubmit_x"])
        assert args.job_id == "raysubmit_x" and args._job_command == name
