"""Provenance: keyed watermarks, their scores and exact p-values (pure functions).

    key = WatermarkKey.from_env("DISTIL_WATERMARK_KEY")
    spec = WatermarkSpec(gamma=0.25, delta=2.0, context_width=2)
    bias = green_bias(key, spec, contexts, vocab_size)       # (N, V): +delta on green tokens
    result = score_sequences(key, spec, [token_ids])         # de-duplicated green count, p-value

    spec = WatermarkSpec(context_width=2, scheme="exp-min")  # distortion-free (exponential.py)
    tokens = exp_min_choice(seeds, log_probs)                # (N,): keyed draws from p
    result = score_sequences(key, spec, [token_ids])         # sum of -log(1 - r), gamma p-value

Shared by `distil serve --watermark` (marking what a teacher serves) and `distil audit`
(testing text and models). Nothing here touches a model or a file.
"""

from distil.provenance.exponential import (
    ExpMinScore,
    exp_min_choice,
    exp_min_score,
    keyed_uniforms,
    tuple_scores,
)
from distil.provenance.greenlist import (
    SCHEMES,
    Scheme,
    WatermarkError,
    WatermarkKey,
    WatermarkSpec,
    context_seeds,
    green_bias,
    green_mask,
    is_green,
    token_hash,
)
from distil.provenance.marking import ExpMinSampler, KGWBias
from distil.provenance.score import Score, score_sequences, score_tuples, unique_tuples
from distil.provenance.stats import (
    binomial_log10_sf,
    binomial_sf,
    clopper_pearson,
    gamma_log10_sf,
    gamma_log_sf,
)

__all__ = [
    "SCHEMES", "ExpMinSampler", "ExpMinScore", "KGWBias", "Scheme", "Score", "WatermarkError",
    "WatermarkKey", "WatermarkSpec", "binomial_log10_sf", "binomial_sf", "clopper_pearson",
    "context_seeds", "exp_min_choice", "exp_min_score", "gamma_log10_sf", "gamma_log_sf",
    "green_bias", "green_mask", "is_green", "keyed_uniforms", "score_sequences", "score_tuples",
    "token_hash", "tuple_scores", "unique_tuples",
]
