"""Shared fixtures: the real media beside the repo, generated media, GPU and Ray gating."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MEDIA = (ROOT / ".." / "shared" / "media").resolve()


def media(rel: str) -> Path:
    """A file of ../shared/media; skips the test (with the reason) when the folder is absent."""
    path = MEDIA / rel
    if not MEDIA.is_dir():
        pytest.skip(f"real media folder {MEDIA} is absent")
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


def _has_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except (ImportError, RuntimeError):
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _quiet_ray() -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray of 6 logical CPUs for one test module: 2 trainer ranks leave Ray Data 4.

    A Ray some earlier test started in this process (Ray Data starts one on first use, sized
    to the machine) is shut down first: the tests here count on these 6 CPUs."""
    import ray

    from pipelines.runtime import init_ray

    if ray.is_initialized():
        ray.shutdown()
    init_ray(num_cpus=6)
    assert ray.cluster_resources().get("CPU") == 6
    yield
    ray.shutdown()
