"""Starting or joining Ray, the same way for every command.

``address=None`` and no ``RAY_ADDRESS``: a local Ray instance (the embedded default) with at
least 4 logical CPUs, because Ray Train's controller, its workers and the data actors each
hold a CPU slot and on a 2-core machine they would otherwise wait on each other forever.
Any other address joins a cluster. Clusters started by ``ray start --head`` (Ray 2.60)
require token authentication: when a token is available (``RAY_AUTH_TOKEN``, or
``~/.ray/auth_token``) it is used, with ``RAY_AUTH_MODE=token``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

MIN_LOCAL_CPUS = 4
TOKEN_FILE = Path.home() / ".ray" / "auth_token"


def auth_token() -> str | None:
    """The Ray auth token from the environment or ``~/.ray/auth_token``, if any."""
    token = os.environ.get("RAY_AUTH_TOKEN")
    if token:
        return token.strip()
    if TOKEN_FILE.is_file():
        return TOKEN_FILE.read_text().strip() or None
    return None


def use_token_auth() -> bool:
    """Turn on token auth for this process's Ray clients when a token is available."""
    if auth_token() is None:
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    return True


def init_ray(address: str | None = None, *, num_cpus: int | None = None, quiet: bool = True,
             runtime_env: dict | None = None) -> None:
    """Start a local Ray or join ``address`` (idempotent: a running Ray is kept as it is)."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    if address in (None, "local"):
        cpus = num_cpus or max(MIN_LOCAL_CPUS, os.cpu_count() or 1)
        # The dashboard serves Ray's state API, which Ray Train polls; loopback only. On a
        # machine too loaded for it to start in time, run without it (Ray Train then logs
        # that its state API is unavailable, and trains all the same).
        kwargs: dict[str, Any] = {
            "num_cpus": cpus, "log_to_driver": not quiet, "configure_logging": True,
            "logging_level": logging.ERROR if quiet else logging.WARNING, "runtime_env": runtime_env}
        try:
            ray.init(include_dashboard=True, dashboard_host="127.0.0.1", **kwargs)
        except Exception as e:
            if "dashboard" not in str(e).lower() and "api server" not in str(e).lower():
                raise
            ray.shutdown()
            print(f"Ray's dashboard did not start ({str(e).strip()[:120]}); "
                  "starting without it", file=sys.stderr, flush=True)
            ray.init(include_dashboard=False, **kwargs)
        return
    use_token_auth()
    ray.init(address=address, log_to_driver=not quiet, runtime_env=runtime_env)
