"""Divergences against a teacher known only by its top-k: ids, log-probabilities, tail mass.

A stored teacher signal gives, per token, the k most likely token ids K, their
log-probabilities log p_t(i) at temperature T, and the log of the tail mass
t_tail = 1 - sum_{i in K} p_t(i). The student is live: its full (N, V) logits are softened
with the same T. Both distributions are then coarsened onto the same k + 1 outcomes, the
k teacher tokens and one *tail bucket* holding everything else:

    teacher  [p_t(i) for i in K] + [t_tail]
    student  [p_s(i) for i in K] + [s_tail],   s_tail = sum_{j not in K} p_s(j)

and every divergence of the table (distil.losses.divergences) is taken between these two
(k + 1)-outcome distributions.

Why the tail bucket, for every divergence:
- it keeps both sides normalised without renormalising the student over K, which would
  leave the student free to put any mass outside the teacher's top-k unpunished;
- each of these divergences can only shrink under coarsening (data-processing inequality),
  so the sparse value is a lower bound of the dense one, never an overestimate;
- with k = V the bucket is empty and the values equal the dense divergences exactly.
What is lost is the shape of the teacher's distribution inside the tail: the student is
told how much mass belongs there, not where. Spreading t_tail uniformly over the V - k
other tokens was not chosen: it invents a distribution the teacher never had.

Reverse-type divergences (reverse_kl, skew_reverse_kl) are infinite where the teacher gives
a top-k entry or the tail zero probability and the student does not; the capture stores
the true tail (as a log, so it never rounds to zero unless it is zero).

A position where the teacher gave no distribution (`present` False: a store's absent
position) has no divergence: its value is 0 and nothing flows back through it; the
hard-label term (ce_weight) applies there as everywhere.
"""

import math
from typing import NamedTuple

import torch
from torch import Tensor

from distil.losses.dense import log_probs
from distil.losses.divergences import FrontEnd, bound_divergence
from distil.losses.objective import Objective


class TopKTeacher(NamedTuple):
    """The teacher's top-k per token, at the training temperature.

    ids (N, k) int64, distinct per row; logprobs (N, k) float, log p_t of those ids;
    log_tail (N,) float, log of the probability outside them (-inf when there is none);
    present (N,) bool, False where the teacher gave no distribution (that row's values are
    not used), or None when every row is present.
    """

    ids: Tensor
    logprobs: Tensor
    log_tail: Tensor
    present: Tensor | None = None

    def rows(self, rows: slice) -> "TopKTeacher":
        """The same signal for a slice of tokens (the fused path's chunks)."""
        present = None if self.present is None else self.present[rows]
        return TopKTeacher(self.ids[rows], self.logprobs[rows], self.log_tail[rows], present)


def teacher_top_k(teacher_logits: Tensor, k: int, temperature: float = 1.0) -> TopKTeacher:
    """Top-k of softmax(logits / T) with the log tail mass. (N, V) -> TopKTeacher (N, k).

    The tail is a log-sum-exp over the tokens outside the top-k, so it stays exact when
    the top-k holds nearly all the mass (1 - sum would cancel to noise).
    """
    if not 1 <= k <= teacher_logits.shape[-1]:
        raise ValueError(f"k must lie in [1, {teacher_logits.shape[-1]}], got {k}")
    log_t = log_probs(teacher_logits, temperature)  # (N, V)
    logprobs, ids = log_t.topk(k, dim=-1)  # (N, k)
    return TopKTeacher(ids, logprobs, _complement_log_mass(log_t, ids))


def keep_top(teacher: TopKTeacher, k: int) -> TopKTeacher:
    """The `k` most likely of the stored entries; the dropped ones join the tail. (N, k0) -> (N, k)."""
    if k >= teacher.ids.shape[1]:
        return teacher
    logprobs, order = teacher.logprobs.topk(k, dim=-1)
    dropped = teacher.logprobs.scatter(1, order, float("-inf"))  # (N, k0)
    log_tail = torch.logaddexp(teacher.log_tail, torch.logsumexp(dropped, dim=-1))
    return TopKTeacher(teacher.ids.gather(1, order), logprobs, log_tail, teacher.present)


def _complement_log_mass(log_p: Tensor, ids: Tensor) -> Tensor:
    """log sum_{j not in ids} p(j) per row; -inf where ids cover the row. (N, V), (N, k) -> (N,)."""
    masked = log_p.scatter(1, ids, float("-inf"))
    covered = torch.isneginf(masked).all(dim=-1, keepdim=True)  # (N, 1)
    # rows with nothing left get a dummy finite row, so no NaN reaches the gradient
    safe = torch.where(covered, torch.zeros_like(masked), masked)
    return torch.where(covered.squeeze(-1), float("-inf"), torch.logsumexp(safe, dim=-1))


def bucket_log_probs(
    student_logits: Tensor, teacher: TopKTeacher, temperature: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Student and teacher log-probabilities on the k teacher tokens plus the tail bucket.

    (N, V) logits and a TopKTeacher (N, k) -> two (N, k + 1) tensors; with k = V the
    (empty) bucket is left out and both are (N, V).
    """
    _check(student_logits, teacher)
    log_s = log_probs(student_logits, temperature)  # (N, V)
    student_top = log_s.gather(1, teacher.ids)  # (N, k)
    teacher_top = teacher.logprobs.to(student_top.dtype)
    if teacher.ids.shape[1] == student_logits.shape[1]:
        return student_top, teacher_top
    student_tail = _complement_log_mass(log_s, teacher.ids)
    return (
        torch.cat([student_top, student_tail[:, None]], dim=1),
        torch.cat([teacher_top, teacher.log_tail.to(student_top.dtype)[:, None]], dim=1),
    )


def sparse_divergence(
    name: str,
    student_logits: Tensor,
    teacher: TopKTeacher,
    *,
    temperature: float = 1.0,
    beta: float = 0.5,
    alpha: float = 0.1,
) -> Tensor:
    """The divergence `name` of the table on the top-k and the tail bucket, passing it only
    the parameter it takes. (N, V), TopKTeacher (N, k) -> (N,)."""
    fn = bound_divergence(name, beta=beta, alpha=alpha)
    return fn(*bucket_log_probs(student_logits, teacher, temperature))


def sparse_forward_kl(student_logits: Tensor, teacher: TopKTeacher, *, temperature: float = 1.0) -> Tensor:
    """KL(p_t || p_s) over the top-k and the tail bucket. (N, V), TopKTeacher (N, k) -> (N,)."""
    return sparse_divergence("forward_kl", student_logits, teacher, temperature=temperature)


def sparse_reverse_kl(student_logits: Tensor, teacher: TopKTeacher, *, temperature: float = 1.0) -> Tensor:
    """KL(p_s || p_t) over the top-k and the tail bucket. (N, V), TopKTeacher (N, k) -> (N,)."""
    return sparse_divergence("reverse_kl", student_logits, teacher, temperature=temperature)


def sparse_generalized_jsd(
    student_logits: Tensor, teacher: TopKTeacher, *, beta: float = 0.5, temperature: float = 1.0
) -> Tensor:
    """beta*KL(p_t||m) + (1-beta)*KL(p_s||m), m = beta*p_t + (1-beta)*p_s, on the buckets.

    beta = 0 is forward KL, beta = 1 reverse KL. (N, V), TopKTeacher (N, k) -> (N,).
    """
    return sparse_divergence("generalized_jsd", student_logits, teacher, temperature=temperature, beta=beta)


def sparse_skew_forward_kl(
    student_logits: Tensor, teacher: TopKTeacher, *, alpha: float = 0.1, temperature: float = 1.0
) -> Tensor:
    """KL(p_t || a*p_t + (1-a)*p_s) on the buckets. (N, V), TopKTeacher (N, k) -> (N,)."""
    return sparse_divergence("skew_forward_kl", student_logits, teacher, temperature=temperature, alpha=alpha)


def sparse_skew_reverse_kl(
    student_logits: Tensor, teacher: TopKTeacher, *, alpha: float = 0.1, temperature: float = 1.0
) -> Tensor:
    """KL(p_s || (1-a)*p_t + a*p_s) on the buckets. (N, V), TopKTeacher (N, k) -> (N,)."""
    return sparse_divergence("skew_reverse_kl", student_logits, teacher, temperature=temperature, alpha=alpha)


def sparse_tvd(student_logits: Tensor, teacher: TopKTeacher, *, temperature: float = 1.0) -> Tensor:
    """0.5 * sum |p_t - p_s| over the buckets. (N, V), TopKTeacher (N, k) -> (N,)."""
    return sparse_divergence("tvd", student_logits, teacher, temperature=temperature)


SPARSE_DIVERGENCES = FrontEnd(sparse_divergence)
"""Name -> the sparse divergence of that name (student_logits, teacher, temperature=..., beta=...,
alpha=...), for every name of the table, registered ones included."""


def sparse_objective_per_token(
    objective: Objective, student_logits: Tensor, teacher: TopKTeacher | None, labels: Tensor | None
) -> Tensor:
    """`Objective.per_token` with a top-k teacher. (N, V), TopKTeacher (N, k), (N,) -> (N,)."""
    kd = None
    if objective.kd_weight > 0:
        if teacher is None:
            raise ValueError("kd_weight > 0 needs the teacher's top-k")
        kd = sparse_divergence(
            objective.divergence,
            student_logits,
            _fill_absent(teacher),
            temperature=objective.temperature,
            beta=objective.beta,
            alpha=objective.alpha,
        )
        if teacher.present is not None:  # no divergence where the teacher gave none
            kd = torch.where(teacher.present, kd, torch.zeros_like(kd))
    return objective.combine(student_logits, kd, labels)


def _fill_absent(teacher: TopKTeacher) -> TopKTeacher:
    """Absent rows made uniform over the k + 1 buckets: finite, so the divergence computed
    there (then discarded) sends back zeros, never NaN. Present rows are untouched."""
    if teacher.present is None:
        return teacher
    uniform = -math.log(teacher.ids.shape[1] + 1)
    present = teacher.present
    return TopKTeacher(
        teacher.ids,
        torch.where(present[:, None], teacher.logprobs, uniform),
        torch.where(present, teacher.log_tail, uniform),
        present,
    )


def _check(student_logits: Tensor, teacher: TopKTeacher) -> None:
    n, vocab = student_logits.shape
    if teacher.ids.dim() != 2 or teacher.ids.shape != teacher.logprobs.shape:
        raise ValueError(
            f"teacher ids {tuple(teacher.ids.shape)} and logprobs "
            f"{tuple(teacher.logprobs.shape)} must both be (N, k)"
        )
    if (
        teacher.ids.shape[0] != n
        or teacher.log_tail.shape != (n,)
        or (teacher.present is not None and teacher.present.shape != (n,))
    ):
        raise ValueError(
            f"student has {n} tokens but the teacher signal has "
            f"{teacher.ids.shape[0]} (log_tail {tuple(teacher.log_tail.shape)})"
        )
    if teacher.ids.shape[1] > vocab:
        raise ValueError(f"teacher top-k ({teacher.ids.shape[1]}) exceeds the vocabulary ({vocab})")
