"""The dense front end: divergences between teacher and student logits over the vocabulary.

Every function takes `student_logits` and `teacher_logits` of shape (N, V), softens both
with `temperature` (log_softmax(logits / T)), and hands the pair of log-probability rows to
the divergence table (distil.losses.divergences, where each divergence is defined); the
result is the per-token divergence, shape (N,), in nats. The maths runs in float32 at least
(float64 stays float64), whatever the input dtype. Masking and reduction are the caller's:
see `distil.losses.masked_token_mean`.
"""

import torch
from torch import Tensor

from distil.losses.divergences import FrontEnd, bound_divergence


def log_probs(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """log softmax(logits / T) over the last dim, in float32 at least. (N, V) -> (N, V)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    dtype = torch.promote_types(logits.dtype, torch.float32)
    return torch.log_softmax(logits.to(dtype) / temperature, dim=-1)


def divergence(
    name: str,
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    temperature: float = 1.0,
    beta: float = 0.5,
    alpha: float = 0.1,
) -> Tensor:
    """The divergence `name` of the table between softmax(logits / T) of both sides, passing
    it only the parameter it takes. (N, V), (N, V) -> (N,)."""
    fn = bound_divergence(name, beta=beta, alpha=alpha)
    return fn(log_probs(student_logits, temperature), log_probs(teacher_logits, temperature))


def forward_kl(student_logits: Tensor, teacher_logits: Tensor, *, temperature: float = 1.0) -> Tensor:
    """KL(p_t || p_s) per token. (N, V), (N, V) -> (N,)."""
    return divergence("forward_kl", student_logits, teacher_logits, temperature=temperature)


def reverse_kl(student_logits: Tensor, teacher_logits: Tensor, *, temperature: float = 1.0) -> Tensor:
    """KL(p_s || p_t) per token. (N, V), (N, V) -> (N,)."""
    return divergence("reverse_kl", student_logits, teacher_logits, temperature=temperature)


def generalized_jsd(
    student_logits: Tensor, teacher_logits: Tensor, *, beta: float = 0.5, temperature: float = 1.0
) -> Tensor:
    """Generalised Jensen-Shannon divergence per token; beta = 0 is forward KL, 1 reverse KL.
    (N, V), (N, V) -> (N,)."""
    return divergence("generalized_jsd", student_logits, teacher_logits, temperature=temperature, beta=beta)


def skew_forward_kl(
    student_logits: Tensor, teacher_logits: Tensor, *, alpha: float = 0.1, temperature: float = 1.0
) -> Tensor:
    """KL(p_t || a*p_t + (1-a)*p_s) per token; a = 0 is forward KL. (N, V), (N, V) -> (N,)."""
    return divergence("skew_forward_kl", student_logits, teacher_logits, temperature=temperature, alpha=alpha)


def skew_reverse_kl(
    student_logits: Tensor, teacher_logits: Tensor, *, alpha: float = 0.1, temperature: float = 1.0
) -> Tensor:
    """KL(p_s || (1-a)*p_t + a*p_s) per token; a = 0 is reverse KL. (N, V), (N, V) -> (N,)."""
    return divergence("skew_reverse_kl", student_logits, teacher_logits, temperature=temperature, alpha=alpha)


def tvd(student_logits: Tensor, teacher_logits: Tensor, *, temperature: float = 1.0) -> Tensor:
    """Total variation distance 0.5 * sum |p_t - p_s| per token. (N, V), (N, V) -> (N,)."""
    return divergence("tvd", student_logits, teacher_logits, temperature=temperature)


DIVERGENCES = FrontEnd(divergence)
"""Name -> the dense divergence of that name (student_logits, teacher_logits, temperature=...,
beta=..., alpha=...), for every name of the table, registered ones included."""
