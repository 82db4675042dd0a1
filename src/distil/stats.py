"""Intervals over a few repeated measurements: seeds of a training, pairs of timed runs.

    from distil.stats import mean_interval, ratio_interval
    mean_interval([0.80, 0.84, 0.86])   # (0.833, 0.076): mean, half-width of its 95% t-interval
    ratio_interval([4.1, 3.9, 4.0])     # {"ratio": 4.0, "low": 3.76, "high": 4.26, "pairs": 3}

Pure functions, one source for every figure that says "± 95%" (`--compare`, the bench).
"""

import math
import statistics

# fmt: off
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086)
"""Two-sided 95% quantiles of Student's t for 1..20 degrees of freedom (beyond: 1.96)."""
# fmt: on


def mean_interval(values: list[float]) -> tuple[float, float | None]:
    """Mean and half-width of its two-sided 95% t-interval (None for a single value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    t = T_975[len(values) - 2] if len(values) - 1 <= len(T_975) else 1.96
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


def ratio_interval(ratios: list[float]) -> dict[str, float | int | None]:
    """Geometric mean of positive ratios and its 95% t-interval, taken on their logarithms.

    A ratio of speeds is multiplicative (2x and 0.5x are equally far from 1), so the mean
    and its interval are computed on log(ratio) and turned back: ratio = exp(mean),
    low/high = exp(mean -/+ half-width); None for a single ratio.
    """
    if not ratios or min(ratios) <= 0:
        raise ValueError("need at least one ratio, all positive")
    mean, half = mean_interval([math.log(r) for r in ratios])
    return {
        "ratio": math.exp(mean),
        "low": None if half is None else math.exp(mean - half),
        "high": None if half is None else math.exp(mean + half),
        "pairs": len(ratios),
    }
