"""Distillation losses: pure functions over tensors.

Dense divergences take (N, V) student and teacher logits and return (N,) per-token values
in nats; `fused_linear_divergence` computes the same from hidden states and head weights in
chunks; `Objective` combines a divergence with hard-label cross-entropy.
"""

from distil.losses.dense import (
    DIVERGENCES,
    divergence,
    forward_kl,
    generalized_jsd,
    reverse_kl,
    skew_forward_kl,
    skew_reverse_kl,
    tvd,
)
from distil.losses.fused import fused_linear_divergence, fused_linear_loss
from distil.losses.objective import (
    IGNORE_INDEX,
    Objective,
    masked_token_mean,
    token_cross_entropy,
)

__all__ = [
    "DIVERGENCES",
    "IGNORE_INDEX",
    "Objective",
    "divergence",
    "forward_kl",
    "fused_linear_divergence",
    "fused_linear_loss",
    "generalized_jsd",
    "masked_token_mean",
    "reverse_kl",
    "skew_forward_kl",
    "skew_reverse_kl",
    "token_cross_entropy",
    "tvd",
]
