"""Small statistics helpers for the benchmark tables."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The nearest-rank percentile of ``values`` (None when empty).

    :param values: the sample, in any order.
    :param pct: from 0 to 100.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def mean(values: Sequence[float]) -> float | None:
    """The arithmetic mean of ``values`` (None when empty).

    :param values: the sample.
    """
    return sum(values) / len(values) if values else None
