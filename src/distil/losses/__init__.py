"""Distillation losses: pure functions over tensors.

Each divergence is written once, in the table of distil.losses.divergences, over two
log-probability rows; `register_divergence` adds one. Dense divergences take (N, V) student
and teacher logits and return (N,) per-token values in nats; `fused_linear_divergence`
computes the same from hidden states and head weights in chunks; `Objective` combines a
divergence with hard-label cross-entropy. The sparse divergences (`sparse_forward_kl`, ...)
take a teacher known only by its top-k and tail mass (`TopKTeacher`, as a signal store
holds it).
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
from distil.losses.divergences import Param, divergence_names, register_divergence, unregister_divergence
from distil.losses.fused import fused_linear_divergence, fused_linear_loss
from distil.losses.objective import IGNORE_INDEX, Objective, masked_token_mean, token_cross_entropy
from distil.losses.sparse import (
    SPARSE_DIVERGENCES,
    TopKTeacher,
    bucket_log_probs,
    keep_top,
    sparse_divergence,
    sparse_forward_kl,
    sparse_generalized_jsd,
    sparse_objective_per_token,
    sparse_reverse_kl,
    sparse_skew_forward_kl,
    sparse_skew_reverse_kl,
    sparse_tvd,
    teacher_top_k,
)

__all__ = [
    "DIVERGENCES",
    "IGNORE_INDEX",
    "Objective",
    "Param",
    "SPARSE_DIVERGENCES",
    "TopKTeacher",
    "bucket_log_probs",
    "divergence",
    "divergence_names",
    "forward_kl",
    "fused_linear_divergence",
    "fused_linear_loss",
    "generalized_jsd",
    "keep_top",
    "masked_token_mean",
    "register_divergence",
    "reverse_kl",
    "skew_forward_kl",
    "skew_reverse_kl",
    "sparse_divergence",
    "sparse_forward_kl",
    "sparse_generalized_jsd",
    "sparse_objective_per_token",
    "sparse_reverse_kl",
    "sparse_skew_forward_kl",
    "sparse_skew_reverse_kl",
    "sparse_tvd",
    "teacher_top_k",
    "token_cross_entropy",
    "tvd",
    "unregister_divergence",
]
