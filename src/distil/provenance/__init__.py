"""Provenance: keyed green-list watermarks, their scores and exact p-values (pure functions).

    key = WatermarkKey.from_env("DISTIL_WATERMARK_KEY")
    spec = WatermarkSpec(gamma=0.25, delta=2.0, context_width=2)
    bias = green_bias(key, spec, contexts, vocab_size)       # (N, V): +delta on green tokens
    result = score_sequences(key, spec, [token_ids])         # de-duplicated green count, p-value

Shared by `distil serve --watermark` (marking what a teacher serves) and `distil audit`
(testing text and models). Nothing here touches a model or a file.
"""

from distil.provenance.greenlist import (
    WatermarkError,
    WatermarkKey,
    WatermarkSpec,
    context_seeds,
    green_bias,
    green_mask,
    is_green,
)
from distil.provenance.marking import KGWBias
from distil.provenance.score import Score, score_sequences, score_tuples, unique_tuples
from distil.provenance.stats import binomial_log10_sf, binomial_sf, clopper_pearson

__all__ = [
    "KGWBias", "Score", "WatermarkError", "WatermarkKey", "WatermarkSpec", "binomial_log10_sf", "binomial_sf",
    "clopper_pearson", "context_seeds", "green_bias", "green_mask", "is_green", "score_sequences",
    "score_tuples", "unique_tuples",
]
