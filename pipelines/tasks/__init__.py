"""Pretext tasks: a registry from names (as the CLI and configs use them) to task classes."""

from __future__ import annotations

from typing import Any

from pipelines.tasks.base import (
    AudioRead,
    ClipRead,
    Decoded,
    MotionRead,
    SamplePlan,
    ShortVideoPolicy,
    Task,
    VideoPool,
    make_sample_id,
)

_REGISTRY: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task available to :func:`get_task` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def task_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get_task(name: str, **params: Any) -> Task:
    """The task called ``name``, built with ``params`` (the paper's defaults otherwise)."""
    _load_all()
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**params)


def _load_all() -> None:
    # Importing the task modules runs their @register decorators.
    from pipelines.tasks import _catalog  # noqa: F401


__all__ = [
    "AudioRead", "ClipRead", "Decoded", "MotionRead", "SamplePlan", "ShortVideoPolicy",
    "Task", "VideoPool", "get_task", "make_sample_id", "register", "task_names",
]
