"""A real Ray head on loopback with token authentication, used through `clipstream submit`.

The head is started with `ray start --head --block` in its own session, with decode and
trainer custom resources, private ports and temp dir, and a fresh token passed as
RAY_AUTH_TOKEN (the developer's ~/.ray is never touched). Clients find the token the
other documented way, in $HOME/.ray/auth_token of a temporary HOME. The pretrain test
walks the user's path: index a small corpus with a submitted `clipstream index`, then
submit `clipstream pretrain` and read its metrics.json.

Teardown never uses `ray stop` (it would stop every Ray on the machine): it signals the
head's own process group, and then waits until no process carrying this cluster's token
in its environment is left (job drivers run in sessions of their own).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
HEAD_RESOURCES = '{"decode_cpu": 4, "trainer": 2}'
START_TIMEOUT_S = 120
JOB_TIMEOUT_S = 300
STOP_TIMEOUT_S = 30


@dataclass(frozen=True)
class Head:
    address: str  # Job API, http://127.0.0.1:PORT
    token: str
    client_home: Path  # HOME whose .ray/auth_token holds the token
    scratch: Path


def _free_ports(n: int) -> list[int]:
    """n distinct ports free right now (held open together so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _worker_port_range(width: int = 100) -> tuple[int, int]:
    """A random port range for Ray workers, above Ray's default one (10002-19999, which
    other local Ray instances use) and below the kernel's ephemeral range, from which
    _free_ports draws the others, so the two can never overlap."""
    ephemeral_lo = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    lo = 20000 + secrets.randbelow(max(1, (ephemeral_lo - 20000) // width - 1)) * width
    return lo, lo + width - 1


def _head_command(scratch: Path) -> list[str]:
    gcs, dash, client, node, obj, metrics, agent, agent_grpc, env_agent = _free_ports(9)
    worker_lo, worker_hi = _worker_port_range()
    return [
        str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1", "--port", str(gcs),
        "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
        "--num-cpus", "6", "--resources", HEAD_RESOURCES,
        "--ray-client-server-port", str(client), "--node-manager-port", str(node),
        "--object-manager-port", str(obj), "--metrics-export-port", str(metrics),
        "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
        "--runtime-env-agent-port", str(env_agent),
        "--min-worker-port", str(worker_lo), "--max-worker-port", str(worker_hi),
        "--temp-dir", str(scratch / "ray"), "--disable-usage-stats",
    ]


def _head_env(token: str, scratch: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        # SIGTERM tears the node down at once instead of draining for 30 s.
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
        HOME=str(scratch / "head-home"),
        # Job entrypoints say `python`: make it this environment's, as the image does.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return env


def _client_env(home: Path) -> dict[str, str]:
    """A client that knows the cluster only through $HOME/.ray/auth_token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), RAY_ENABLE_UV_RUN_RUNTIME_ENV="0")
    return env


def _ray_log_tails(scratch: Path, chars: int = 2000) -> str:
    """The end of the head's own logs, for a failure message (the folder is deleted after)."""
    logs = scratch / "ray" / "session_latest" / "logs"
    parts = []
    for name in ("ray_process_exit.log", "dashboard.err", "dashboard.log", "gcs_server.err"):
        path = logs / name
        if path.is_file() and path.stat().st_size:
            parts.append(f"--- {name}\n{path.read_text(errors='replace')[-chars:]}")
    return "\n".join(parts)


def _wait_for_dashboard(
    proc: subprocess.Popen[bytes], address: str, token: str, log: Path
) -> None:
    request = urllib.request.Request(f"{address}/api/version",
                                     headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(request, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"dashboard not up after {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def _wait_until_it_runs_jobs(address: str, token: str) -> None:
    """Readiness is running a job, not answering HTTP: the node's job agent registers and
    the dashboard settles some seconds after the first answer, longer on a busy machine."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    from pipelines import jobs

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            client = JobSubmissionClient(address, headers={"Authorization": f"Bearer {token}"})
            job = jobs.submit(client, "true", {}, agent_wait_s=START_TIMEOUT_S)
            break
        except (OSError, RuntimeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(2)
    status = jobs.wait(client, job, timeout_s=START_TIMEOUT_S)
    if status != JobStatus.SUCCEEDED:
        raise RuntimeError(f"warm-up job {status}: {client.get_job_info(job).message}")


def _pids_with_token(token: str) -> list[int]:
    """Processes whose environment carries this cluster's token: exactly the ones it started."""
    needle = f"RAY_AUTH_TOKEN={token}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _describe(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        pgid = os.getpgid(pid)
    except (OSError, ProcessLookupError):
        return f"{pid} (gone)"
    return f"{pid} (pgid {pgid}): {cmd[:200]}"


def _stop_head(proc: subprocess.Popen[bytes], token: str) -> list[str]:
    """Stop the head and everything it started; returns the processes outside the head's
    process group (job drivers in sessions of their own) that outlived it and were killed.

    The whole group gets SIGTERM and, whatever is left after STOP_TIMEOUT_S, SIGKILL (a
    member of the group still shutting down is slow, not leaked). Job drivers are the
    watcher's to stop: Ray kills each within seconds of its supervisor's death, so one
    still there after STOP_TIMEOUT_S is a leak."""
    group = proc.pid
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _pids_with_token(token) and time.monotonic() < deadline:
        time.sleep(0.5)
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)
    leaked = []
    for pid in _pids_with_token(token):
        described = _describe(pid)
        try:
            if os.getpgid(pid) != group:
                leaked.append(described)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return leaked


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    if sys.platform != "linux":
        pytest.skip("process accounting below reads /proc")
    # Short path: Ray's unix sockets live under --temp-dir and paths are capped at 107 bytes.
    scratch = Path(tempfile.mkdtemp(prefix="cs-ray-", dir="/tmp"))
    token = secrets.token_hex(32)
    client_home = scratch / "client-home"
    (client_home / ".ray").mkdir(parents=True)
    (client_home / ".ray" / "auth_token").write_text(token)
    (scratch / "head-home").mkdir()
    command = _head_command(scratch)
    address = f"http://127.0.0.1:{command[command.index('--dashboard-port') + 1]}"
    log = scratch / "ray-start.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=_head_env(token, scratch), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            _wait_for_dashboard(proc, address, token, log)
            _wait_until_it_runs_jobs(address, token)
        except Exception as err:
            raise RuntimeError(f"test head did not come up:\n{_ray_log_tails(scratch)}") from err
        yield Head(address=address, token=token, client_home=client_home, scratch=scratch)
    finally:
        leaked = _stop_head(proc, token)
        shutil.rmtree(scratch, ignore_errors=True)
        assert not leaked, f"processes left behind by the test cluster (killed): {leaked}"


def clipstream(head: Head, *args: str, home: Path | None = None,
               timeout: float = JOB_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run the clipstream CLI as a user would, against the test head."""
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=ROOT, env=_client_env(home or head.client_home), capture_output=True,
        text=True, timeout=timeout, check=False,
    )


def _job_id(result: subprocess.CompletedProcess[str]) -> str:
    first = result.stdout.splitlines()[0] if result.stdout else ""
    assert first.startswith("raysubmit_"), result.stdout + result.stderr
    return first


def test_submit_ships_the_repo_and_streams_logs(head: Head) -> None:
    result = clipstream(head, "submit", "--address", head.address, "--timeout", "240", "--raw",
                        "--", "python", "-c",
                        "import pipelines; print('shipped:', pipelines.__file__)")
    assert result.returncode == 0, result.stdout + result.stderr
    job = _job_id(result)
    # The code came from the uploaded working_dir, not from this checkout.
    (shipped,) = [ln for ln in result.stdout.splitlines() if ln.startswith("shipped: ")]
    assert str(ROOT) not in shipped and "runtime_resources" in shipped, shipped
    assert f"{job} SUCCEEDED" in result.stderr

    listed = clipstream(head, "jobs", "--address", head.address, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert any(job in line and "SUCCEEDED" in line for line in listed.stdout.splitlines())
    logs = clipstream(head, "logs", job, "--address", head.address, timeout=60)
    assert logs.returncode == 0 and shipped in logs.stdout.splitlines()


def test_failed_job_fails_the_command(head: Head) -> None:
    result = clipstream(head, "submit", "--address", head.address, "--timeout", "240", "--raw",
                        "--", "python", "-c", "raise SystemExit(3)")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{_job_id(result)} FAILED" in result.stderr


def _wait_for_log_line(head: Head, job: str, line: str, timeout_s: float = 120) -> None:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(head.address, headers={"Authorization": f"Bearer {head.token}"})
    deadline = time.monotonic() + timeout_s
    while line not in client.get_job_logs(job):
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job} printed no {line!r} in {timeout_s} s")
        time.sleep(1)


def test_no_wait_then_stop(head: Head) -> None:
    result = clipstream(head, "submit", "--address", head.address, "--no-wait", "--raw", "--",
                        "python", "-c", "print('started', flush=True); import time; time.sleep(600)",
                        timeout=120)
    assert result.returncode == 0, result.stderr
    job = _job_id(result)
    assert result.stdout.strip() == job, "with --no-wait only the job id goes to stdout"
    # Stop a job that runs: Ray marks a job RUNNING before its shell has forked the driver,
    # and a stop in that gap signals the shell alone, orphaning the driver it then forks.
    _wait_for_log_line(head, job, "started")
    stopped = clipstream(head, "stop", job, "--address", head.address, "--wait",
                         "--timeout", "120", timeout=180)
    assert stopped.returncode == 0, stopped.stderr
    assert f"{job} STOPPED" in stopped.stderr


def test_requests_without_the_token_are_refused(head: Head, tmp_path: Path) -> None:
    result = clipstream(head, "jobs", "--address", head.address, home=tmp_path, timeout=60)
    assert result.returncode == 1
    assert "token" in result.stderr.lower() and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def tiny_manifest(head: Head, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic corpus, indexed by a `clipstream index` job on the cluster."""
    from pipelines.synthetic import SyntheticSpec, generate

    root = tmp_path_factory.mktemp("cluster-data")
    generate(root / "videos", SyntheticSpec(num_videos=8, num_frames=48, width=96, height=64,
                                            gop=12, seed=3))
    manifest = root / "manifest.parquet"
    result = clipstream(head, "submit", "--address", head.address, "--timeout", "240", "--",
                        "index", str(root / "videos"), "--root", str(root / "videos"),
                        "--label-from-dir", "-o", str(manifest))
    assert result.returncode == 0 and manifest.is_file(), result.stdout + result.stderr
    return manifest


def test_submitted_pretrain_delivers_every_sample_once(
    head: Head, tiny_manifest: Path, tmp_path: Path
) -> None:
    if not (ROOT / "pipelines" / "commands" / "pretrain.py").exists():
        pytest.skip("clipstream pretrain is not there yet")
    out = tmp_path / "run"
    result = clipstream(
        head, "submit", "--address", head.address, "--timeout", "420", "--",
        "pretrain", "--manifest", str(tiny_manifest), "--out", str(out),
        "--epochs", "1", "--workers", "2", "--batch-size", "4",
        "--set", "size=32x32", "--set", "task_params={vcop: {clip_len: 6, interval: 3}}",
        "--set", "video.concurrency=1:2", "--set", "video.batch_size=2",
        # Decode on the decode resource the head advertises, as on a real cluster.
        "--set", "video.resources={decode_cpu: 1}",
        timeout=480,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    samples = json.loads((out / "metrics.json").read_text())["samples"]
    assert samples["expected"] > 0
    assert samples["delivered"] == samples["unique"] == samples["expected"], samples
    assert samples["duplicated"] == 0 and samples["missing"] == 0, samples
