"""Stall-driven scaling of the decode stages, on Ray Data's own actor-pool autoscaler.

Ray Data already grows an actor pool whose actors are all busy and shrinks an idle one,
within the stage's ``concurrency=(min, max)``. Busy actors alone do not mean the trainers
need more: with a full output buffer the pool is busy feeding a queue nobody reads. So the
decision is tied to what the trainers measure: their recent stall fraction (time waiting
for data over step time, from the run's telemetry sink).

- trainers waiting (stall >= ``UP``) and the pool at or above Ray Data's upscaling
  utilization: add actors (Ray Data's delta, within max and the resource budget);
- trainers not waiting (stall < ``UP``): never add actors, whatever the utilization;
- trainers fed (stall <= ``DOWN``) and the pool under Ray Data's downscaling utilization:
  release actors (never below min); while the trainers wait (stall > ``DOWN``) keep them.

Example: video concurrency (1, 3), trainers stall 40% -> 2 actors, then 3; stall falls to
3% -> stays; the epoch tail leaves actors idle -> back towards 1.

Installed into every worker process of a run through Ray's ``worker_process_setup_hook``
(the process that executes the dataset is a worker: Ray Train's split coordinator), where
it replaces the factory Ray Data calls for its actor autoscaler. Stages that are not
clipstream decode stages keep Ray Data's behaviour.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from pipelines.telemetry import ENV_SINK, NAMESPACE

UP = 0.10
DOWN = 0.03
DECODE_STAGES = ("VideoStage", "AudioStage", "MotionStage", "DALIVideoStage", "DALIAudioStage")


def install() -> None:
    """``worker_process_setup_hook``: use the stall-aware autoscaler in this process."""
    if not os.environ.get(ENV_SINK):
        return
    import ray.data._internal.execution.streaming_executor as executor

    executor.create_actor_autoscaler = _create


def _create(topology, resource_manager, config):
    from ray.data._internal.actor_autoscaler import DefaultActorAutoscaler
    from ray.data._internal.actor_autoscaler.autoscaling_actor_pool import ActorPoolScalingRequest

    class StallAwareActorAutoscaler(DefaultActorAutoscaler):
        """Ray Data's default decisions, gated by the trainers' stall fraction."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._stall: float | None = None
            self._read_at = 0.0
            self._sink: Any = None
            self._last: dict[str, tuple[str, int, int]] = {}

        def stall(self) -> float | None:
            now = time.monotonic()
            if now - self._read_at >= 1.0:
                self._read_at = now
                try:
                    import ray

                    if self._sink is None:
                        self._sink = ray.get_actor(os.environ[ENV_SINK], namespace=NAMESPACE)
                    self._stall = ray.get(self._sink.stall.remote(10.0), timeout=2)
                except Exception:  # noqa: BLE001, S110 - no reading this second: keep the last one
                    pass
            return self._stall

        def _derive_target_scaling_config(self, actor_pool, op, op_state):
            request = super()._derive_target_scaling_config(actor_pool, op, op_state)
            stage = next((name for name in DECODE_STAGES if f"({name})" in op.name), None)
            if stage is None or request.force or request.reason in (
                    "pool below min size", "pool exceeding max size"):
                return request
            stall = self.stall()
            if stall is None:
                return request
            if request.delta > 0 and stall < UP:
                decided = ActorPoolScalingRequest.no_op(
                    reason=f"trainers stall {stall:.0%} < {UP:.0%}: no more decode actors")
            elif request.delta < 0 and stall > DOWN:
                decided = ActorPoolScalingRequest.no_op(
                    reason=f"trainers stall {stall:.0%} > {DOWN:.0%}: keep decode actors")
            elif request.delta:
                decided = dataclasses.replace(
                    request, reason=f"trainers stall {stall:.0%}; Ray Data: {request.reason}")
            else:
                return request
            self._record(stage, request.delta, decided, stall)
            return decided

        def _record(self, stage: str, proposed: int, decided, stall: float) -> None:
            """Keep every scaling step, and each run of vetoes once, in the run's telemetry."""
            key = (stage, proposed, decided.delta)
            if self._sink is None or (decided.delta == 0 and self._last.get(stage) == key):
                return
            self._last[stage] = key
            self._sink.decision.remote(stage, decided.delta,
                                       f"{decided.reason} (proposed {proposed:+d})", stall)

    return StallAwareActorAutoscaler(topology, resource_manager, config=config)
