"""The distillation objective per token, and its masked token-mean reduction.

    loss_i = kd_weight * T^2 * D(p_t^T || p_s^T)_i + ce_weight * CE(student, label_i)

The T^2 factor (Hinton et al., 2015) keeps the divergence's gradient on the same scale
whatever the temperature, so kd_weight and ce_weight keep their meaning when T changes.
The cross-entropy uses the unsoftened student (T = 1) against the dataset's tokens.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from distil.losses.dense import divergence, log_probs

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Objective:
    """Which divergence, its parameters and the weights of the two terms."""

    divergence: str = "forward_kl"
    temperature: float = 1.0
    beta: float = 0.5
    alpha: float = 0.1
    kd_weight: float = 1.0
    ce_weight: float = 0.0

    def per_token(
        self, student_logits: Tensor, teacher_logits: Tensor | None, labels: Tensor | None
    ) -> Tensor:
        """Loss per token. (N, V), (N, V) or None, (N,) or None -> (N,) float32."""
        kd = None
        if self.kd_weight > 0:
            if teacher_logits is None:
                raise ValueError("kd_weight > 0 needs teacher logits")
            kd = divergence(
                self.divergence,
                student_logits,
                teacher_logits,
                temperature=self.temperature,
                beta=self.beta,
                alpha=self.alpha,
            )
        return self.combine(student_logits, kd, labels)

    def combine(self, student_logits: Tensor, kd: Tensor | None, labels: Tensor | None) -> Tensor:
        """kd_weight * T^2 * kd + ce_weight * CE per token, from a divergence computed by the
        caller (dense or over a stored top-k). (N, V), (N,) or None, (N,) or None -> (N,)."""
        total = torch.zeros(
            student_logits.shape[0],
            device=student_logits.device,
            dtype=torch.promote_types(student_logits.dtype, torch.float32),
        )
        if self.kd_weight > 0:
            total = total + self.kd_weight * self.temperature**2 * kd
        if self.ce_weight > 0:
            if labels is None:
                raise ValueError("ce_weight > 0 needs labels")
            total = total + self.ce_weight * token_cross_entropy(student_logits, labels)
        return total


def token_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """-log p(label) per token at T = 1; 0 where label is IGNORE_INDEX. (N, V), (N,) -> (N,)."""
    return F.nll_loss(log_probs(logits), labels, ignore_index=IGNORE_INDEX, reduction="none")


def masked_token_mean(values: Tensor, mask: Tensor, num_tokens: Tensor | int | None = None) -> Tensor:
    """Sum of `values` where `mask` is true, divided by `num_tokens` (default: mask.sum()).

    Pass the token count of the whole accumulated batch as `num_tokens` so that micro-batches
    of different lengths add up to the same loss as one large batch.
    """
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    count = mask.sum() if num_tokens is None else num_tokens
    return total / torch.clamp(torch.as_tensor(count, device=values.device), min=1)
