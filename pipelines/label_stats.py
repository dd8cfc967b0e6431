"""Label metrics: how often each task delivered each label, against the task's design.

A pretext task's labels come out of its planner with a designed distribution (uniform over
the classes for most; Shuffle & Learn 75% negatives; -1 always for contrastive tasks). A
planner bug, a skip policy that drops some classes more than others, or a dataset that
cannot fit the long plans shows up as a drift from that design. :class:`LabelHistogram`
counts labels per task as batches arrive (ranks merge theirs) and :meth:`LabelHistogram.report`
flags a task whose shares drift beyond its tolerance.

    hist = LabelHistogram.for_tasks([get_task("shuffle_learn")])
    hist.update("shuffle_learn", batch["label"])
    for check in hist.report():
        if check.flagged:
            print(check.line())
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.tasks.base import Task

NOT_A_CLASS = {-1: 1.0}  # the design of tasks whose label is not a class


@dataclass(frozen=True)
class LabelCheck:
    """One task's labels against its design.

    ``deviation``: the largest |observed - expected| share over the labels; ``allowance``:
    how much deviation the check accepts at this count (the tolerance plus three standard
    errors of the largest-variance label, so small counts are not flagged for noise).
    """

    task: str
    count: int
    observed: dict[int, float]
    expected: dict[int, float]
    deviation: float
    allowance: float
    flagged: bool
    reason: str

    def line(self) -> str:
        """One readable line, e.g. ``shuffle_learn: 1000 labels, FLAGGED: label 0 at 0.600,
        designed 0.750 (allowed +-0.091)``."""
        status = "FLAGGED: " if self.flagged else "ok: "
        return f"{self.task}: {self.count} labels, {status}{self.reason}"


class LabelHistogram:
    """Counts of each label per task, checked against each task's designed distribution.

    Args:
        expected: task name -> {label: share}; a task with ``{}`` has labels that are not
            classes (always -1). Tasks missing here are counted but never flagged.
        tolerance: the share by which a label may drift from its design beyond sampling
            noise (three standard errors).
        min_count: fewer labels than this are reported but not judged on their shares.

    Example: Shuffle & Learn (design {0: 0.75, 1: 0.25}), 1000 labels of which 600 are 0:
    deviation 0.150, allowance 0.05 + 3 * sqrt(0.75 * 0.25 / 1000) = 0.091 -> flagged.
    A label outside the design (7 from a 6-class task, or 0 from a contrastive task) is
    flagged at any count.
    """

    def __init__(
        self,
        expected: Mapping[str, Mapping[int, float]] | None = None,
        *,
        tolerance: float = 0.05,
        min_count: int = 100,
    ) -> None:
        if not 0.0 <= tolerance <= 1.0:
            raise ValueError(f"tolerance ({tolerance}) must be in [0, 1]")
        if min_count < 1:
            raise ValueError(f"min_count ({min_count}) must be >= 1")
        self.expected: dict[str, dict[int, float]] = {}
        for task, dist in (expected or {}).items():
            self.expect(task, dist)
        self.tolerance, self.min_count = tolerance, min_count
        self.counts: dict[str, dict[int, int]] = {}

    @classmethod
    def for_tasks(cls, tasks: Iterable[Task], **kwargs: Any) -> LabelHistogram:
        """A histogram expecting each task's ``expected_label_distribution()``."""
        return cls({t.name: t.expected_label_distribution() for t in tasks}, **kwargs)

    def expect(self, task: str, dist: Mapping[int, float]) -> None:
        """Set the designed distribution of ``task`` (``{}``: labels are always -1)."""
        dist = {int(k): float(v) for k, v in dist.items()} or dict(NOT_A_CLASS)
        total = sum(dist.values())
        if any(v < 0 for v in dist.values()) or not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(
                f"expected distribution of {task!r} ({dist}) must be shares summing to 1"
            )
        self.expected[task] = dist

    def update(self, task: str, labels: int | Sequence[int] | np.ndarray) -> None:
        """Count the labels of one task (a scalar or any array of ints)."""
        values, counts = np.unique(np.asarray(labels, dtype=np.int64).ravel(), return_counts=True)
        bucket = self.counts.setdefault(task, {})
        for v, c in zip(values.tolist(), counts.tolist()):
            bucket[v] = bucket.get(v, 0) + c

    def update_batch(
        self, tasks: Sequence[str] | np.ndarray, labels: Sequence[int] | np.ndarray
    ) -> None:
        """Count a mixed batch: row i has task ``tasks[i]`` and label ``labels[i]``."""
        names = np.asarray(tasks).astype(str)
        values = np.asarray(labels, dtype=np.int64).reshape(len(names), -1)
        for name in np.unique(names):
            self.update(str(name), values[names == name])

    def merge(self, other: LabelHistogram) -> None:
        """Add another histogram's counts (e.g. another rank's)."""
        for task, bucket in other.counts.items():
            mine = self.counts.setdefault(task, {})
            for label, c in bucket.items():
                mine[label] = mine.get(label, 0) + c

    def total(self, task: str) -> int:
        return sum(self.counts.get(task, {}).values())

    def shares(self, task: str) -> dict[int, float]:
        """Observed share of each label of ``task``."""
        n = self.total(task)
        return {k: c / n for k, c in sorted(self.counts.get(task, {}).items())} if n else {}

    def check(self, task: str) -> LabelCheck:
        """The check of one task (see the class docstring for the rule)."""
        n = self.total(task)
        observed = self.shares(task)
        expected = self.expected.get(task)
        if expected is None:
            return LabelCheck(task, n, observed, {}, 0.0, 0.0, False, "no designed distribution")
        unexpected = sorted(set(observed) - set(expected))
        labels = sorted(set(expected) | set(observed))
        gaps = {k: abs(observed.get(k, 0.0) - expected.get(k, 0.0)) for k in labels}
        worst = max(labels, key=lambda k: gaps[k])
        spread = max(p * (1 - p) for p in expected.values())
        allowance = self.tolerance + 3 * math.sqrt(spread / n) if n else 1.0
        if unexpected:
            reason = f"labels {unexpected} are outside the design {sorted(expected)}"
            return LabelCheck(task, n, observed, expected, gaps[worst], allowance, True, reason)
        if n < self.min_count:
            reason = f"too few labels to judge (< {self.min_count})"
            return LabelCheck(task, n, observed, expected, gaps[worst], allowance, False, reason)
        flagged = gaps[worst] > allowance
        reason = (f"label {worst} at {observed.get(worst, 0.0):.3f}, designed "
                  f"{expected.get(worst, 0.0):.3f} (allowed +-{allowance:.3f})")
        return LabelCheck(task, n, observed, expected, gaps[worst], allowance, flagged, reason)

    def report(self) -> list[LabelCheck]:
        """One check per task seen or expected, in name order."""
        return [self.check(t) for t in sorted(set(self.counts) | set(self.expected))]

    def flagged(self) -> list[LabelCheck]:
        return [c for c in self.report() if c.flagged]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able state (for checkpoints and the run's results file)."""
        return {
            "tolerance": self.tolerance,
            "min_count": self.min_count,
            "expected": {t: {str(k): v for k, v in d.items()} for t, d in self.expected.items()},
            "counts": {t: {str(k): v for k, v in d.items()} for t, d in self.counts.items()},
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> LabelHistogram:
        hist = cls(
            {t: {int(k): v for k, v in d.items()} for t, d in state["expected"].items()},
            tolerance=state["tolerance"], min_count=state["min_count"],
        )
        hist.counts = {
            t: {int(k): int(v) for k, v in d.items()} for t, d in state["counts"].items()
        }
        return hist
