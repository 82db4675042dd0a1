"""Provenance: keyed watermarks, their scores and exact p-values (pure functions).

    key = WatermarkKey.from_env("DISTIL_WATERMARK_KEY")
    spec = WatermarkSpec(gamma=0.25, delta=2.0, context_width=2)
    bias = green_bias(key, spec, contexts, vocab_size)       # (N, V): +delta on green tokens
    result = score_sequences(key, spec, [token_ids])         # de-duplicated green count, p-value

    spec = WatermarkSpec(context_width=2, scheme="exp-min")  # distortion-free (exponential.py)
    tokens = exp_min_choice(seeds, log_probs)                # (N,): keyed draws from p
    result = score_sequences(key, spec, [token_ids])         # sum of -log(1 - r), gamma p-value

Shared by `distil serve --watermark` (marking what a teacher serves) and `distil audit`
(testing text and models). Nothing here touches a model or a file. Names load on first use,
so `spec` (the settings and the key) reads without numpy or torch.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    **dict.fromkeys(
        ["ExpMinScore", "exp_min_choice", "exp_min_score", "keyed_uniforms", "tuple_scores"],
        "distil.provenance.exponential",
    ),
    **dict.fromkeys(
        ["context_seeds", "green_bias", "green_mask", "is_green", "token_hash"], "distil.provenance.greenlist"
    ),
    **dict.fromkeys(
        ["SCHEMES", "Scheme", "WatermarkError", "WatermarkKey", "WatermarkSpec"], "distil.provenance.spec"
    ),
    **dict.fromkeys(["ExpMinSampler", "KGWBias"], "distil.provenance.marking"),
    **dict.fromkeys(["Score", "score_sequences", "score_tuples", "unique_tuples"], "distil.provenance.score"),
    **dict.fromkeys(
        ["binomial_log10_sf", "binomial_sf", "clopper_pearson", "gamma_log10_sf", "gamma_log_sf"],
        "distil.provenance.stats",
    ),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'distil.provenance' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
