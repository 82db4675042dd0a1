"""Exact binomial and gamma tails and binomial intervals, in log space so that p-values far
below 1e-300 survive.

    binomial_sf(k=40, n=100, p=0.25)           # P(X >= 40), X ~ Binomial(100, 0.25)
    binomial_log10_sf(k=900, n=1000, p=0.25)   # its log10, when the value underflows
    gamma_log10_sf(n=100, s=160.0)             # log10 P(X >= 160), X ~ Gamma(100, 1)
    clopper_pearson(k=0, n=1000)               # exact 95% interval of a rate seen 0 times in 1000

No normal approximation anywhere: a watermark test counts few tokens, where one is wrong.
"""

import math

import numpy as np


def binomial_log_sf(k: int, n: int, p: float) -> float:
    """Natural log of P(X >= k) for X ~ Binomial(n, p), summed exactly term by term."""
    if not 0 <= p <= 1:
        raise ValueError(f"p must lie in [0, 1], got {p}")
    if k <= 0:
        return 0.0
    if k > n or p == 0:
        return -math.inf
    if p == 1:
        return 0.0
    first = (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )
    i = np.arange(k, n, dtype=np.float64)  # pmf(i + 1) / pmf(i) = (n - i) / (i + 1) * p / (1 - p)
    steps = np.log(n - i) - np.log(i + 1) + (math.log(p) - math.log1p(-p))
    log_terms = np.concatenate(([first], first + np.cumsum(steps)))
    top = float(log_terms.max())
    return min(0.0, top + math.log(float(np.exp(log_terms - top).sum())))


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the p-value of k green tokens out of n."""
    return math.exp(binomial_log_sf(k, n, p))


def binomial_log10_sf(k: int, n: int, p: float) -> float:
    """log10 P(X >= k): reported when the p-value itself underflows to 0."""
    return binomial_log_sf(k, n, p) / math.log(10)


def gamma_log_sf(n: int, s: float) -> float:
    """Natural log of P(X >= s) for X ~ Gamma(n, 1), n a whole number: the sum of n
    independent Exp(1) exceeds s exactly when a Poisson(s) count falls below n, so the tail is
    e^-s * sum_{k<n} s^k / k!. Summed term by term outward from its largest term, k = floor(s)
    (capped at n - 1), so that the terms that matter carry no accumulated rounding."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if s <= 0:
        return 0.0
    if n == 0:
        return -math.inf
    log_s = math.log(s)
    top = min(n - 1, math.floor(s))
    anchor = top * log_s - math.lgamma(top + 1) - s
    below = np.cumsum(np.log(np.arange(top, 0, -1, dtype=np.float64)) - log_s)  # k = top-1 .. 0
    above = np.cumsum(log_s - np.log(np.arange(top + 1, n, dtype=np.float64)))  # k = top+1 .. n-1
    rest = float(np.exp(below).sum() + np.exp(above).sum())  # each term over the largest
    return min(0.0, anchor + math.log1p(rest))


def gamma_log10_sf(n: int, s: float) -> float:
    """log10 P(X >= s), X ~ Gamma(n, 1): the p-value of a score s summed over n tuples."""
    return gamma_log_sf(n, s) / math.log(10)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a binomial rate seen k times in n trials."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    tail = (1 - level) / 2
    low = 0.0 if k == 0 else _bisect(lambda q: binomial_sf(k, n, q) - tail)
    high = 1.0 if k == n else _bisect(lambda q: tail - (1 - binomial_sf(k + 1, n, q)))
    return low, high


def _bisect(increasing, lo: float = 0.0, hi: float = 1.0, steps: int = 80) -> float:
    """The root of an increasing function on [lo, hi]."""
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if increasing(mid) < 0 else (lo, mid)
    return (lo + hi) / 2
