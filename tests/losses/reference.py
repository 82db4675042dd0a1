"""Naive references written straight from the definitions, one row at a time, in float64.

Nothing here calls the library: each divergence is the textbook sum over the vocabulary.
"""

import math

import numpy as np


def log_softmax(row: np.ndarray, temperature: float) -> np.ndarray:
    z = np.asarray(row, dtype=np.float64) / temperature
    finite = z[np.isfinite(z)]
    top = finite.max()
    log_norm = top + math.log(sum(math.exp(v - top) for v in finite))
    return z - log_norm


def log_mix(w: float, log_a: np.ndarray, log_b: np.ndarray) -> np.ndarray:
    """log(w * a + (1 - w) * b) without underflow: a log-sum-exp of the two terms."""
    with np.errstate(divide="ignore"):
        return np.logaddexp(np.log(w) + log_a, np.log1p(-w) + log_b)


def kl(p: np.ndarray, log_p: np.ndarray, log_q: np.ndarray) -> float:
    """sum_i p_i (log p_i - log q_i), with 0 log 0 = 0."""
    return float(sum(p[i] * (log_p[i] - log_q[i]) for i in range(len(p)) if p[i] > 0))


def _pair(student_row, teacher_row, temperature):
    log_s = log_softmax(student_row, temperature)
    log_t = log_softmax(teacher_row, temperature)
    return np.exp(log_s), log_s, np.exp(log_t), log_t


def forward_kl(student_row, teacher_row, temperature=1.0):
    p_s, log_s, p_t, log_t = _pair(student_row, teacher_row, temperature)
    return kl(p_t, log_t, log_s)


def reverse_kl(student_row, teacher_row, temperature=1.0):
    p_s, log_s, p_t, log_t = _pair(student_row, teacher_row, temperature)
    return kl(p_s, log_s, log_t)


def generalized_jsd(student_row, teacher_row, beta=0.5, temperature=1.0):
    if beta == 0:
        return forward_kl(student_row, teacher_row, temperature)
    if beta == 1:
        return reverse_kl(student_row, teacher_row, temperature)
    p_s, log_s, p_t, log_t = _pair(student_row, teacher_row, temperature)
    log_m = log_mix(beta, log_t, log_s)
    return beta * kl(p_t, log_t, log_m) + (1 - beta) * kl(p_s, log_s, log_m)


def skew_forward_kl(student_row, teacher_row, alpha=0.1, temperature=1.0):
    p_s, log_s, p_t, log_t = _pair(student_row, teacher_row, temperature)
    log_m = log_mix(alpha, log_t, log_s)
    return kl(p_t, log_t, log_m)


def skew_reverse_kl(student_row, teacher_row, alpha=0.1, temperature=1.0):
    p_s, log_s, p_t, log_t = _pair(student_row, teacher_row, temperature)
    log_m = log_mix(alpha, log_s, log_t)
    return kl(p_s, log_s, log_m)


def tvd(student_row, teacher_row, temperature=1.0):
    p_s, _, p_t, _ = _pair(student_row, teacher_row, temperature)
    return 0.5 * float(np.abs(p_t - p_s).sum())


def cross_entropy(student_row, label):
    return -float(log_softmax(student_row, 1.0)[label])


REFERENCES = {
    "forward_kl": forward_kl,
    "reverse_kl": reverse_kl,
    "generalized_jsd": generalized_jsd,
    "skew_forward_kl": skew_forward_kl,
    "skew_reverse_kl": skew_reverse_kl,
    "tvd": tvd,
}
