"""Naive references written straight from the definitions, one row at a time, in float64.

Nothing here calls the library: each divergence is the textbook sum over the outcomes, taken
only where the distribution in front of the log is positive (0 log 0 = 0), so a token of
probability 0 (a -inf logit) simply drops out of the sum. Written with torch so that autograd
on these sums gives the reference gradients; rows may be tensors (with grad) or arrays.
"""

import math

import torch
from torch import Tensor


def _float64(row) -> Tensor:
    return torch.as_tensor(row).to(torch.float64)


def log_sum_exp(values: Tensor) -> Tensor:
    """log sum_i exp(v_i) over the finite v_i, shifted by their max; -inf when there are none."""
    finite = values[torch.isfinite(values)]
    if finite.numel() == 0:
        return torch.tensor(float("-inf"), dtype=torch.float64)
    top = finite.max().detach()  # a shift: it changes the rounding only, not the value
    return top + torch.log(torch.exp(finite - top).sum())


def log_softmax(row, temperature: float) -> Tensor:
    """log p_i = z_i / T - log sum_j exp(z_j / T). (V,) -> (V,)."""
    z = _float64(row) / temperature
    return z - log_sum_exp(z)


def kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """sum_i p_i (log p_i - log q_i) over the i with p_i > 0."""
    p = torch.exp(log_p)
    on = p > 0
    return (p[on] * (log_p[on] - log_q[on])).sum()


def kl_to_mixture(log_p: Tensor, w: float, log_a: Tensor, log_b: Tensor) -> Tensor:
    """KL(p || w*a + (1-w)*b) over the i with p_i > 0, for 0 < w < 1.

    p is a or b, so the mixture is positive wherever p is; log(w*a_i + (1-w)*b_i) is taken as
    a log-sum-exp of the two terms so that tiny probabilities do not underflow.
    """
    p = torch.exp(log_p)
    on = p > 0
    log_m = torch.logaddexp(math.log(w) + log_a[on], math.log1p(-w) + log_b[on])
    return (p[on] * (log_p[on] - log_m)).sum()


# The divergences between two distributions given by log-probabilities (s: student, t: teacher).


def forward_kl_of(log_s: Tensor, log_t: Tensor) -> Tensor:
    return kl(log_t, log_s)


def reverse_kl_of(log_s: Tensor, log_t: Tensor) -> Tensor:
    return kl(log_s, log_t)


def generalized_jsd_of(log_s: Tensor, log_t: Tensor, beta: float = 0.5) -> Tensor:
    """beta*KL(t||m) + (1-beta)*KL(s||m), m = beta*t + (1-beta)*s; beta 0 / 1: forward / reverse KL."""
    if beta == 0:
        return kl(log_t, log_s)
    if beta == 1:
        return kl(log_s, log_t)
    return beta * kl_to_mixture(log_t, beta, log_t, log_s) + (1 - beta) * kl_to_mixture(
        log_s, beta, log_t, log_s
    )


def skew_forward_kl_of(log_s: Tensor, log_t: Tensor, alpha: float = 0.1) -> Tensor:
    """KL(t || a*t + (1-a)*s); a = 0 is forward KL."""
    return kl(log_t, log_s) if alpha == 0 else kl_to_mixture(log_t, alpha, log_t, log_s)


def skew_reverse_kl_of(log_s: Tensor, log_t: Tensor, alpha: float = 0.1) -> Tensor:
    """KL(s || a*s + (1-a)*t); a = 0 is reverse KL."""
    return kl(log_s, log_t) if alpha == 0 else kl_to_mixture(log_s, alpha, log_s, log_t)


def tvd_of(log_s: Tensor, log_t: Tensor) -> Tensor:
    return 0.5 * (torch.exp(log_t) - torch.exp(log_s)).abs().sum()


OF_LOG_PROBS = {
    "forward_kl": forward_kl_of,
    "reverse_kl": reverse_kl_of,
    "generalized_jsd": generalized_jsd_of,
    "skew_forward_kl": skew_forward_kl_of,
    "skew_reverse_kl": skew_reverse_kl_of,
    "tvd": tvd_of,
}


def dense(name: str, student_row, teacher_row, temperature: float = 1.0, **params) -> Tensor:
    """The divergence `name` between softmax(student / T) and softmax(teacher / T) of one row."""
    return OF_LOG_PROBS[name](
        log_softmax(student_row, temperature), log_softmax(teacher_row, temperature), **params
    )


def top_k_buckets(student_row, teacher_row, k: int, temperature: float) -> tuple[Tensor, Tensor]:
    """Both distributions on the teacher's k most likely tokens plus one bucket for the rest.

    (V,), (V,) -> two log-probability vectors (k + 1,), or (V,) when k = V (no bucket).
    Ties are broken by token index; the bucket's log mass is a log-sum-exp over its tokens.
    """
    log_s = log_softmax(student_row, temperature)
    log_t = log_softmax(teacher_row, temperature)
    order = sorted(range(len(log_t)), key=lambda i: -float(log_t[i]))
    top, rest = order[:k], order[k:]
    student = [log_s[i] for i in top] + ([log_sum_exp(log_s[rest])] if rest else [])
    teacher = [log_t[i] for i in top] + ([log_sum_exp(log_t[rest])] if rest else [])
    return torch.stack(student), torch.stack(teacher)


def sparse(name: str, student_row, teacher_row, k: int, temperature: float = 1.0, **params) -> Tensor:
    """The divergence `name` between the two distributions coarsened onto `top_k_buckets`."""
    return OF_LOG_PROBS[name](*top_k_buckets(student_row, teacher_row, k, temperature), **params)


def cross_entropy(student_row, label: int) -> Tensor:
    """-log softmax(student)_label at T = 1."""
    return -log_softmax(student_row, 1.0)[label]


def per_row(fn, student: Tensor, teacher: Tensor, *args, **kwargs) -> Tensor:
    """fn applied to each (student, teacher) row pair, stacked. (N, V), (N, V) -> (N,)."""
    return torch.stack([fn(*args, s, t, **kwargs) for s, t in zip(student, teacher, strict=True)])
