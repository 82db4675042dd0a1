"""Latency statistics of repeated generations, and speed ratios of paired runs (pure
functions, tested against hand sums).

A run is the list of times, in seconds from the call, at which each new token of the batch
was chosen: [t_1, ..., t_N]. t_1 is the time to first token (prefill + first choice); each
t_i - t_{i-1} is one decoding step's latency.
"""

from statistics import median
from typing import Any

import numpy as np

from distil.stats import ratio_interval


def latency_summary(runs: list[list[float]], batch: int) -> dict[str, float | int]:
    """Time to first token, step latency p50/p95 and tokens/s over repeated runs.

    runs: R lists of N increasing times (s). tokens/s counts every sequence of the batch:
    batch * N / median total time (prefill included); decode tokens/s leaves prefill out:
    batch * (N - 1) / median(t_N - t_1).
    """
    if not runs or any(len(run) != len(runs[0]) or len(run) < 2 for run in runs):
        raise ValueError("need at least one run, all of the same length >= 2")
    steps = np.concatenate([np.diff(run) for run in runs])  # (R * (N - 1),)
    new_tokens = len(runs[0])
    total = median(run[-1] for run in runs)
    decoding = median(run[-1] - run[0] for run in runs)
    return {
        "ttft_ms": 1e3 * median(run[0] for run in runs),
        "token_latency_ms_p50": 1e3 * float(np.percentile(steps, 50)),
        "token_latency_ms_p95": 1e3 * float(np.percentile(steps, 95)),
        "tokens_per_s": batch * new_tokens / total,
        "decode_tokens_per_s": batch * (new_tokens - 1) / decoding,
        "new_tokens": new_tokens,
        "repeats": len(runs),
    }


def paired_speedup(runs: list[list[float]], reference: list[list[float]]) -> dict[str, Any]:
    """A model's tokens/s over the reference's, from runs paired by round (the same batch and
    new tokens, timed one after the other under the same load).

    Pair r's ratio is reference[r][-1] / runs[r][-1] (total times; the work is the same).
    Returns distil.stats.ratio_interval of the ratios (geometric mean, 95% interval, pairs)
    and the ratios themselves as `per_pair`.
    """
    if len(runs) != len(reference):
        raise ValueError(f"{len(runs)} runs but {len(reference)} reference runs: pair them by round")
    ratios = [ref[-1] / run[-1] for run, ref in zip(runs, reference, strict=True)]
    return {**ratio_interval(ratios), "per_pair": ratios}
