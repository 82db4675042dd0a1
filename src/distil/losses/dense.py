"""Per-token divergences between teacher and student distributions over the vocabulary.

Every function takes `student_logits` and `teacher_logits` of shape (N, V), softens both
with `temperature` (logits / T), and returns the per-token divergence, shape (N,), in nats.
The maths runs in float32 at least (float64 stays float64), whatever the input dtype.
Masking and reduction are the caller's: see `distil.losses.masked_token_mean`.

Conventions: p_t is the teacher distribution, p_s the student's.
- forward_kl      KL(p_t || p_s)                       mode-covering, the classic KD loss
- reverse_kl      KL(p_s || p_t)                       mode-seeking
- generalized_jsd beta*KL(p_t||m) + (1-beta)*KL(p_s||m), m = beta*p_t + (1-beta)*p_s;
                  beta=0 is forward KL and beta=1 reverse KL (GKD, Agarwal et al. 2024)
- skew_forward_kl KL(p_t || a*p_t + (1-a)*p_s)         (DistiLLM, Ko et al. 2024)
- skew_reverse_kl KL(p_s || (1-a)*p_t + a*p_s)
- tvd             0.5 * sum |p_t - p_s|
"""

import math

import torch
from torch import Tensor


def log_probs(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """log softmax(logits / T) over the last dim, in float32 at least. (N, V) -> (N, V)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    dtype = torch.promote_types(logits.dtype, torch.float32)
    return torch.log_softmax(logits.to(dtype) / temperature, dim=-1)


def kl_from_log_probs(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) per row from log-probabilities. (N, V), (N, V) -> (N,).

    Entries where p is exactly 0 contribute 0 (the 0 * log 0 = 0 convention), also when
    log q is -inf there, and they pass no NaN into the gradient.
    """
    p = log_p.exp()
    support = p > 0
    diff = torch.where(support, log_p - log_q, torch.zeros_like(log_p))
    return (p * diff).sum(dim=-1)


def log_mixture(log_p: Tensor, log_q: Tensor, weight_p: float) -> Tensor:
    """log(w*p + (1-w)*q) computed stably from log-probabilities, for 0 < w < 1. (N, V) -> (N, V).

    Where p and q are both 0 (a vocabulary entry masked on both sides) the result is -inf
    with a zero gradient: a log-sum-exp over two -inf terms has the right value but a NaN
    gradient, which would spread to the whole row through the softmax.
    """
    both_zero = torch.isneginf(log_p) & torch.isneginf(log_q)  # (N, V)
    stacked = torch.stack([log_p + math.log(weight_p), log_q + math.log1p(-weight_p)])
    mixed = torch.logsumexp(stacked.masked_fill(both_zero, 0.0), dim=0)
    return mixed.masked_fill(both_zero, float("-inf"))


def forward_kl(student_logits: Tensor, teacher_logits: Tensor, *, temperature: float = 1.0) -> Tensor:
    """KL(p_t || p_s) per token. (N, V), (N, V) -> (N,)."""
    log_s = log_probs(student_logits, temperature)
    log_t = log_probs(teacher_logits, temperature)
    return kl_from_log_probs(log_t, log_s)


def reverse_kl(student_logits: Tensor, teacher_logits: Tensor, *, temperature: float = 1.0) -> Tensor:
    """KL(p_s || p_t) per token. (N, V), (N, V) -> (N,)."""
    log_s = log_probs(student_logits, temperature)
    log_t = log_probs(teacher_logits, temperature)
    return kl_from_log_probs(log_s, log_t)


def generalized_jsd(
    student_logits: Tensor, teacher_logits: Tensor, *, beta: float = 0.5, temperature: float = 1.0
) -> Tensor:
    """Generalised Jensen-Shannon divergence per token. (N, V), (N, V) -> (N,).

    beta*KL(p_t || m) + (1-beta)*KL(p_s || m) with m = beta*p_t + (1-beta)*p_s for
    0 < beta < 1; beta = 0 is forward KL and beta = 1 reverse KL (the GKD convention).
    """
    if not 0 <= beta <= 1:
        raise ValueError(f"beta must lie in [0, 1], got {beta}")
    if beta == 0:
        return forward_kl(student_logits, teacher_logits, temperature=temperature)
    if beta == 1:
        return reverse_kl(student_logits, teacher_logits, temperature=temperature)
    log_s = log_probs(student_logits, temperature)
    log_t = log_probs(teacher_logits, temperature)
    log_m = log_mixture(log_t, log_s, beta)
    return beta * kl_from_log_probs(log_t, log_m) + (1 - beta) * kl_from_log_probs(log_s, log_m)


def skew_forward_kl(
    student_logits: Tensor, teacher_logits: Tensor, *, alpha: float = 0.1, temperature: float = 1.0
) -> Tensor:
    """KL(p_t || a*p_t + (1-a)*p_s) per token; a = 0 is forward KL. (N, V), (N, V) -> (N,)."""
    if not 0 <= alpha < 1:
        raise ValueError(f"alpha must lie in [0, 1), got {alpha}")
    log_s = log_probs(student_logits, temperature)
    log_t = log_probs(teacher_logits, temperature)
    log_m = log_s if alpha == 0 else log_mixture(log_t, log_s, alpha)
    return kl_from_log_probs(log_t, log_m)


def skew_reverse_kl(
    student_logits: Tensor, teacher_logits: Tensor, *, alpha: float = 0.1, temperature: float = 1.0
) -> Tensor:
    """KL(p_s || (1-a)*p_t + a*p_s) per token; a = 0 is reverse KL. (N, V), (N, V) -> (N,)."""
    if not 0 <= alpha < 1:
        raise ValueError(f"alpha must lie in [0, 1), got {alpha}")
    log_s = log_probs(student_logits, temperature)
    log_t = log_probs(teacher_logits, temperature)
    log_m = log_t if alpha == 0 else log_mixture(log_s, log_t, alpha)
    return kl_from_log_probs(log_s, log_m)


def tvd(student_logits: Tensor, teacher_logits: Tensor, *, temperature: float = 1.0) -> Tensor:
    """Total variation distance 0.5 * sum |p_t - p_s| per token. (N, V), (N, V) -> (N,)."""
    p_s = log_probs(student_logits, temperature).exp()
    p_t = log_probs(teacher_logits, temperature).exp()
    return 0.5 * (p_t - p_s).abs().sum(dim=-1)


DIVERGENCES = {
    "forward_kl": forward_kl,
    "reverse_kl": reverse_kl,
    "generalized_jsd": generalized_jsd,
    "skew_forward_kl": skew_forward_kl,
    "skew_reverse_kl": skew_reverse_kl,
    "tvd": tvd,
}


def divergence(
    name: str,
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    temperature: float = 1.0,
    beta: float = 0.5,
    alpha: float = 0.1,
) -> Tensor:
    """Dispatch to the divergence called `name`, passing only the parameter it takes."""
    if name not in DIVERGENCES:
        raise ValueError(f"unknown divergence {name!r}; choose one of {sorted(DIVERGENCES)}")
    return DIVERGENCES[name](student_logits, teacher_logits, temperature=temperature,
                             **divergence_params(name, beta, alpha))


def divergence_params(name: str, beta: float, alpha: float) -> dict[str, float]:
    """The one parameter the divergence `name` takes (beta or alpha), or none."""
    if name == "generalized_jsd":
        return {"beta": beta}
    if name.startswith("skew_"):
        return {"alpha": alpha}
    return {}
