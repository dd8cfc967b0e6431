"""Sample accounting: which planned ids the ranks actually received.

    >>> account(expected=[1, 2, 3, 4], delivered=[[1, 2], [2, 4]])
    {'expected': 4, 'delivered': 4, 'unique': 3, 'duplicated': 1, 'missing': 1, ...}

``delivered`` counts every row a rank consumed (failed decodes included: they were
delivered, masked and quarantined); ``duplicated`` counts deliveries beyond the first of an
id; ``missing`` counts planned ids never delivered; ``unexpected`` counts ids not planned.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence


def id_ranges(ids: Iterable[int]) -> list[list[int]]:
    """Compress ids into sorted inclusive ranges: [1, 2, 3, 7] -> [[1, 3], [7, 7]]."""
    out: list[list[int]] = []
    for i in sorted(set(ids)):
        if out and out[-1][1] == i - 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


def expand_ranges(ranges: Sequence[Sequence[int]]) -> list[int]:
    return [i for lo, hi in ranges for i in range(lo, hi + 1)]


def account(expected: Iterable[int], delivered: Sequence[Iterable[int]], *, failed: Iterable[int] = (),
            examples: int = 10) -> dict:
    """The ``samples`` block of metrics.json.

    Args:
        expected: planned sample ids.
        delivered: per rank, the sample ids it received (in any order).
        failed: ids delivered as failed decodes (masked, quarantined).
        examples: how many missing/duplicated ids to list.
    """
    want = set(expected)
    counts: Counter[int] = Counter()
    per_rank = []
    for ids in delivered:
        ids = list(ids)
        per_rank.append(len(ids))
        counts.update(ids)
    dup = {i: c - 1 for i, c in counts.items() if c > 1}
    missing = sorted(want - counts.keys())
    unexpected = sorted(counts.keys() - want)
    return {
        "expected": len(want),
        "delivered": sum(counts.values()),
        "unique": len(counts.keys() & want),
        "duplicated": sum(dup.values()),
        "missing": len(missing),
        "unexpected": len(unexpected),
        "failed": len(set(failed)),
        "per_rank": per_rank,
        "missing_ids": missing[:examples],
        "duplicated_ids": sorted(dup)[:examples],
    }
