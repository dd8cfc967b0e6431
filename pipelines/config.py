"""Run configuration: frozen dataclasses, one per component, loaded from YAML.

    cfg = load_config("pipelines/configs/default.yaml", overrides=["video.concurrency=2:4"])

Every config pickles cleanly into Ray actors and validates itself in ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

Placement = Literal["disaggregated", "colocated"]
SkipPolicy = Literal["skip", "pad"]
ErrorPolicy = Literal["quarantine", "raise"]
CodecPolicy = Literal["fallback", "error"]


def _check_choice(name: str, value: object, allowed: Sequence[object]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} ({value!r}) must be one of {', '.join(map(repr, allowed))}")


@dataclass(frozen=True, kw_only=True)
class StageConfig:
    """One Ray Data operator: its backend, per-actor resources and actor-pool size.

    ``concurrency=(min, max)`` is handed to Ray Data's autoscaling actor pool; ``resources``
    are custom Ray resources (e.g. ``{"decode": 1}``) that pin the stage to labelled nodes.
    """

    backend: str = "pyav"
    device: Literal["cpu", "gpu"] = "cpu"
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    batch_size: int = 4
    concurrency: tuple[int, int] = (1, 2)
    resources: dict[str, float] = field(default_factory=dict)
    codec_policy: CodecPolicy = "fallback"

    def __post_init__(self) -> None:
        _check_choice("backend", self.backend, ("pyav", "dali", "torchaudio"))
        _check_choice("device", self.device, ("cpu", "gpu"))
        lo, hi = self.concurrency
        if not 1 <= lo <= hi:
            raise ValueError(f"concurrency ({lo}, {hi}) must satisfy 1 <= min <= max")
        if self.batch_size < 1:
            raise ValueError(f"batch_size ({self.batch_size}) must be >= 1")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError(f"num_cpus ({self.num_cpus}) and num_gpus ({self.num_gpus}) must be >= 0")
        if self.device == "gpu" and self.num_gpus == 0:
            raise ValueError("device 'gpu' needs num_gpus > 0")
        _check_choice("codec_policy", self.codec_policy, get_args(CodecPolicy))

    def ray_args(self) -> dict[str, Any]:
        """Keyword arguments for ``Dataset.map_batches`` with a callable class: an autoscaling
        actor pool of ``concurrency`` actors."""
        from ray.data import ActorPoolStrategy

        lo, hi = self.concurrency
        args: dict[str, Any] = {
            "compute": ActorPoolStrategy(min_size=lo, max_size=hi),
            "num_cpus": self.num_cpus,
            "batch_size": self.batch_size,
        }
        if self.num_gpus:
            args["num_gpus"] = self.num_gpus
        if self.resources:
            args["resources"] = dict(self.resources)
        return args


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """What to load and how: manifest, tasks, clip size, and the stages."""

    manifest: str = ""
    tasks: dict[str, float] = field(default_factory=lambda: {"vcop": 1.0})
    task_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = 0
    size: tuple[int, int] = (112, 112)
    audio_sample_rate: int = 16000
    placement: Placement = "disaggregated"
    short_video: SkipPolicy = "skip"
    error_policy: ErrorPolicy = "quarantine"
    max_errors: int = 100
    sample_timeout_s: float = 60.0
    max_pixels: int = 4096 * 2304
    telemetry: str = ""  # the run's telemetry actor (set by the driver; empty: none)
    video: StageConfig = field(default_factory=StageConfig)
    audio: StageConfig = field(default_factory=lambda: StageConfig(concurrency=(1, 1)))
    motion: StageConfig = field(default_factory=lambda: StageConfig(concurrency=(1, 1)))
    assemble: StageConfig = field(default_factory=lambda: StageConfig(concurrency=(1, 1), num_cpus=0.5))

    def __post_init__(self) -> None:
        _check_choice("placement", self.placement, get_args(Placement))
        _check_choice("short_video", self.short_video, get_args(SkipPolicy))
        _check_choice("error_policy", self.error_policy, get_args(ErrorPolicy))
        if not self.tasks or any(w <= 0 for w in self.tasks.values()):
            raise ValueError(f"tasks ({self.tasks}) must name at least one task, all weights > 0")
        h, w = self.size
        if h < 1 or w < 1:
            raise ValueError(f"size ({h}, {w}) must be positive")
        if self.max_errors < 0:
            raise ValueError(f"max_errors ({self.max_errors}) must be >= 0")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The Ray Train side: ranks, batch, schedule, model and where results go."""

    workers: int = 2
    use_gpu: bool = False
    batch_size: int = 8
    epochs: int = 1
    steps: int = 0  # > 0: stop after this many steps, whatever the epochs
    lr: float = 1e-3
    weight_decay: float = 1e-4
    backbone: str = "tiny3d"
    checkpoint_every: int = 0  # steps; 0: at the end of each epoch only
    resources: dict[str, float] = field(default_factory=dict)  # custom Ray resources per rank
    out: str = "runs/latest"

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers ({self.workers}) must be >= 1")
        if self.batch_size < 1:
            raise ValueError(f"batch_size ({self.batch_size}) must be >= 1")
        if self.epochs < 1 and self.steps < 1:
            raise ValueError(f"epochs ({self.epochs}) or steps ({self.steps}) must be >= 1")
        _check_choice("backbone", self.backbone, ("tiny3d", "r3d_18", "r2plus1d_18"))


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    address: str | None = None  # None: local Ray (or RAY_ADDRESS)
    num_cpus: int | None = None  # logical CPUs for a local Ray


def _coerce(tp: Any, value: Any) -> Any:
    """Turn YAML/CLI values into the field's type (tuples from lists or 'a:b', nested dataclasses)."""
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
        return from_dict(tp, value)
    origin = get_origin(tp)
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = [a for a in get_args(tp) if a is not type(None)]
        return None if value is None else _coerce(args[0], value)
    if origin is tuple:
        if isinstance(value, str):
            value = value.replace("x", ":").split(":")
        if isinstance(value, int):
            value = (value, value)
        return tuple(_coerce(a, v) for a, v in zip(get_args(tp), value))
    if origin is dict and isinstance(value, str):
        return yaml.safe_load(value)
    if tp in (int, float, str) and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return tp(value)
    if tp is bool and isinstance(value, str):
        return value.lower() in ("1", "true", "yes", "on")
    return value


def from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys are an error naming them."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {sorted(unknown)}; known: {sorted(names)}")
    return cls(**{k: _coerce(hints[k], v) for k, v in data.items()})


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        tree = tree.setdefault(k, {})
    tree[keys[-1]] = value


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Load a YAML run config and apply ``key.sub=value`` overrides.

    Stage keys may be given without the ``data.`` prefix: ``video.concurrency=2:4`` is
    ``data.video.concurrency=[2, 4]``.
    """
    tree: dict[str, Any] = {}
    if path is not None:
        tree = yaml.safe_load(Path(path).read_text()) or {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        if key.split(".")[0] not in {f.name for f in dataclasses.fields(RunConfig)}:
            key = "data." + key
        value = raw if ":" in raw else yaml.safe_load(raw)
        _set(tree, key, value)
    return from_dict(RunConfig, tree)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
