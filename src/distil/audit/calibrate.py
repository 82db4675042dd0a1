"""The audit's test: exact p-value of the de-duplicated tuples under the key (binomial for
kgw, gamma for exp-min), and the same test under random keys (the empirical null the exact
p-value should agree with).

    settings = AuditSettings(gamma=0.25, context_width=2, null_keys=200)    # distil.audit.settings
    result = calibrated_test(key, settings, contexts, tokens, positions=1234)
"""

from typing import Any

import numpy as np

from distil.audit.settings import AuditSettings
from distil.provenance import WatermarkKey, WatermarkSpec, score_tuples

NULL_ALPHAS = (0.01, 0.001)
"""Levels at which the null's false-positive rate is reported."""


def calibrated_test(
    key: WatermarkKey, settings: AuditSettings, contexts: np.ndarray, tokens: np.ndarray, positions: int
) -> dict[str, Any]:
    """The test under `key` and under `settings.null_keys` random keys.

    contexts (N, H) and tokens (N,): the de-duplicated tuples; positions: how many scored
    positions they came from."""
    spec = settings.spec
    score = score_tuples(key, spec, contexts, tokens, positions)
    result: dict[str, Any] = {"score": score.as_dict(), "null": None}
    if settings.null_keys:
        result["null"] = null_summary(
            score.log10_p, null_log10_p(spec, contexts, tokens, settings.null_keys, settings.seed)
        )
    return result


def null_log10_p(
    spec: WatermarkSpec, contexts: np.ndarray, tokens: np.ndarray, keys: int, seed: int
) -> np.ndarray:
    """log10 p-values of the same tuples under `keys` random keys."""
    rng = np.random.default_rng(seed)
    return np.array(
        [score_tuples(WatermarkKey.random(rng), spec, contexts, tokens).log10_p for _ in range(keys)]
    )


def null_summary(observed_log10_p: float, null: np.ndarray) -> dict[str, Any]:
    """How the observed p-value sits in the null, and whether the null's p-values are calibrated:
    the share of random keys at or below each level should be at most that level."""
    below = int((null <= observed_log10_p + 1e-12).sum())
    return {
        "keys": len(null),
        "empirical_p": (1 + below) / (1 + len(null)),
        "rate_at": {str(alpha): float((null <= np.log10(alpha)).mean()) for alpha in NULL_ALPHAS},
        "median_p": float(10 ** np.median(null)),
        "min_p": float(10 ** null.min()),
    }
