"""Divergences between a teacher and a student that tokenize the same text differently.

The two tokenizations are cut into spans on which their token boundaries agree
(distil.align). A span holds one or more tokens on each side; the models are compared once
per span, at the span's first token, each side by the chain rule over its own tokens in the
span (the "observed" merge of TRL's GOLD):

    P(v) = p(v | prefix) * prod_{j > 1} p(y_j | prefix, y_1..y_{j-1})

p at the span's first position, v a token there, y_j the side's actual tokens of the span;
c = the product, the probability of the span's own continuation. P(y_1) is the model's
probability of the whole span as it is tokenized, and P(v) for another v is the event
"v, then the observed continuation", so that sum_v P(v) = c and everything else (other
continuations) has mass 1 - c. With one token a side, c = 1 and P is the plain distribution.

Two losses on these span distributions:

- `aligned_divergence` (as DSKD and GOLD align vocabularies): the outcomes are
  1. the span as observed, P(y_1) on each side (the teacher's first token and the
     student's may differ: " 12" against " 1", "2");
  2. each other teacher token v whose string the student also has (the vocabulary map
     sends it to a student token u), with P_t(v) against P_s(u), leaving out the tokens
     that are the span's own first token on either side;
  3. one *bucket* for all the rest on each side: unmapped tokens, the teacher's tail
     outside a stored top-k, and the 1 - c of other continuations.
  Both sides are normalised distributions over these outcomes, and any divergence of the
  table (distil.losses.divergences) applies to them. `BUCKET_FLOOR` is added to both
  buckets: mass that only one side can express (a teacher merge the student spells with
  two tokens while the student's every token is mapped) then costs a bounded amount, not
  an infinite KL. With identical tokenizers every span is one token a side, the map is
  the identity, the buckets hold only the floor, and this is the dense (or, over a stored
  top-k, the sparse) divergence up to a factor 1 / (1 + BUCKET_FLOOR), for the built-in
  divergences.
- `uld_distance` (ULD, Boizard et al. 2024): no vocabulary map. Each side's span
  probabilities are sorted in decreasing order, the k largest kept and the rest summed into
  a tail, and the loss is sum_i |P_t(i) - P_s(i)| + |tail_t - tail_s|: the closed form ULD
  uses for the Wasserstein-1 distance between the two sorted vectors. It never exceeds the
  L1 distance of the two distributions (rearrangement), and equals it when both rank their
  tokens in the same order; with identical tokenizers and k = V that is 2 * TVD.

Per-token values (`spread_over_positions`): a span's value sits on its first student token
and the other tokens of the span get 0, so a token mean over the student's response
tokens weighs every span once.
"""

import math
from typing import NamedTuple

import torch
from torch import Tensor

from distil.losses.dense import log_probs
from distil.losses.divergences import bound_divergence
from distil.losses.objective import Objective
from distil.losses.sparse import TopKTeacher


class SpanPositions(NamedTuple):
    """Where the spans are on one side, over that side's (N,) response positions.

    first (M,) int64: the position of each span's first token; span (N,) int64: the span
    each position belongs to, -1 for positions in no span.
    """

    first: Tensor
    span: Tensor


class SpanTeacher(NamedTuple):
    """The teacher per span, at the training temperature: its top-k at the span's first token
    (teacher ids), log c (its continuation tokens in the span), and its own first token and
    log-probability there (which a stored top-k may lack). (M, k), (M,), (M,), (M,)."""

    first: TopKTeacher
    log_continuation: Tensor
    first_token: Tensor
    first_logprob: Tensor


BUCKET_FLOOR = 1e-6
"""Probability added to both sides' bucket before renormalising: mass that one side cannot
express (say, every student token is the image of a teacher token, so the student's bucket
is empty) costs a bounded amount instead of an infinite KL."""


def span_log_probs(log_p: Tensor, targets: Tensor, spans: SpanPositions) -> tuple[Tensor, Tensor]:
    """One side's log-probabilities at each span's first position and log c per span.

    (N, V) log-probabilities, (N,) actual tokens, SpanPositions -> (M, V), (M,).
    """
    num_spans = spans.first.shape[0]
    token_log_p = log_p.gather(1, targets[:, None]).squeeze(1)  # (N,)
    positions = torch.arange(log_p.shape[0], device=log_p.device)
    in_span = spans.span >= 0
    later = in_span & (positions != spans.first[spans.span.clamp(min=0)])  # (N,)
    log_c = torch.zeros(num_spans, dtype=log_p.dtype, device=log_p.device)
    log_c = log_c.scatter_add(0, spans.span[later], token_log_p[later])
    return log_p[spans.first], log_c


def dense_span_teacher(log_p: Tensor, targets: Tensor, spans: SpanPositions) -> SpanTeacher:
    """A SpanTeacher from full teacher log-probabilities. (N_t, V_t), (N_t,) -> SpanTeacher (M, V_t)."""
    first, log_c = span_log_probs(log_p, targets, spans)
    ids = torch.arange(first.shape[1], device=first.device).expand(first.shape[0], -1)
    none = torch.full((first.shape[0],), float("-inf"), dtype=first.dtype, device=first.device)
    first_token = targets[spans.first]
    return SpanTeacher(
        TopKTeacher(ids, first, none), log_c, first_token, first.gather(1, first_token[:, None]).squeeze(1)
    )


def aligned_log_probs(
    student_first: Tensor,
    student_log_c: Tensor,
    student_first_token: Tensor,
    teacher: SpanTeacher,
    teacher_to_student: Tensor,
) -> tuple[Tensor, Tensor]:
    """Student and teacher span log-probabilities on [the span, the other mapped tokens, bucket].

    (M, V_s) student log-probabilities at the spans' first tokens, (M,) student log c, (M,)
    the student's first tokens, SpanTeacher (M, k), (V_t,) map -> two (M, k + 2) tensors:
    column 0 the span as observed, columns 1..k the teacher's other entries (-inf where not
    an outcome), the last the bucket.
    """
    top, dtype, inf = teacher.first, student_first.dtype, float("-inf")
    student_ids = teacher_to_student.to(top.ids.device)[top.ids]  # (M, k), -1 unmapped
    own = top.ids == teacher.first_token[:, None]  # (M, k)
    other = (student_ids >= 0) & ~own & (student_ids != student_first_token[:, None])
    safe_ids = student_ids.clamp(min=0)
    teacher_logs = top.logprobs.to(dtype)
    first_logprob = teacher.first_logprob.to(dtype)
    # the teacher's first-position mass outside the span's token and the other outcomes
    tail = top.log_tail.to(dtype)
    stored = own.any(dim=1)
    tail = torch.where(
        stored,
        tail,
        tail + _log_one_minus_exp(torch.clamp(first_logprob - tail, max=0).masked_fill(stored, -1.0)),
    )
    teacher_rest = _log_add(_log_sum(teacher_logs.masked_fill(other | own, inf)), tail)
    covered = (
        torch.zeros_like(student_first, dtype=torch.int32).scatter_add(1, safe_ids, other.to(torch.int32)) > 0
    )  # (M, V_s)
    covered = covered.scatter(1, student_first_token[:, None], True)
    student_rest = _log_sum(student_first.masked_fill(covered, inf))
    student = _outcomes(
        student_first.gather(1, student_first_token[:, None]).squeeze(1),
        student_first.gather(1, safe_ids).masked_fill(~other, inf),
        student_rest,
        student_log_c,
    )
    teacher_side = _outcomes(
        first_logprob, teacher_logs.masked_fill(~other, inf), teacher_rest, teacher.log_continuation.to(dtype)
    )
    return student, teacher_side


def _outcomes(span_first: Tensor, others: Tensor, rest: Tensor, log_c: Tensor) -> Tensor:
    """[log c + span_first, log c + others, log(c * rest + 1 - c)], bucket floored. -> (M, k + 2)."""
    log_c = log_c.clamp(max=0)
    bucket = _log_add(rest + log_c, _log_one_minus_exp(log_c))
    bucket = torch.logaddexp(bucket, torch.full_like(bucket, math.log(BUCKET_FLOOR)))
    rows = torch.cat([(span_first + log_c)[:, None], others + log_c[:, None], bucket[:, None]], 1)
    return rows - math.log1p(BUCKET_FLOOR)


def aligned_divergence(
    name: str,
    student_first: Tensor,
    student_log_c: Tensor,
    student_first_token: Tensor,
    teacher: SpanTeacher,
    teacher_to_student: Tensor,
    *,
    beta: float = 0.5,
    alpha: float = 0.1,
) -> Tensor:
    """The divergence `name` of the table between the aligned span distributions (module
    docstring). -> (M,)."""
    fn = bound_divergence(name, beta=beta, alpha=alpha)
    return fn(
        *aligned_log_probs(student_first, student_log_c, student_first_token, teacher, teacher_to_student)
    )


def uld_distance(student_first: Tensor, student_log_c: Tensor, teacher: SpanTeacher, k: int) -> Tensor:
    """ULD between the sorted span distributions over the top-k support and the tail.

    (M, V_s) student log-probabilities at the spans' first tokens, (M,) log c, SpanTeacher
    (M, k_t) -> (M,). k is capped by the teacher's stored k_t and the student's vocabulary.
    """
    k = min(k, teacher.first.logprobs.shape[1], student_first.shape[1])
    teacher_top = teacher.first.logprobs.to(student_first.dtype).topk(k, dim=-1).values
    student_top = student_first.topk(k, dim=-1).values  # (M, k), decreasing
    teacher_p = (teacher_top + teacher.log_continuation.to(student_first.dtype).clamp(max=0)[:, None]).exp()
    student_p = (student_top + student_log_c.clamp(max=0)[:, None]).exp()
    tails = (1 - teacher_p.sum(dim=-1)) - (1 - student_p.sum(dim=-1))
    return (teacher_p - student_p).abs().sum(dim=-1) + tails.abs()


def spread_over_positions(values: Tensor, spans: SpanPositions, num_positions: int) -> Tensor:
    """Per-span values on the spans' first positions, 0 elsewhere. (M,) -> (N,)."""
    out = torch.zeros(num_positions, dtype=values.dtype, device=values.device)
    return out.index_put((spans.first,), values)


def _log_sum(log_values: Tensor) -> Tensor:
    """logsumexp over the last dim; -inf (with a zero gradient) where every entry is -inf."""
    empty = torch.isneginf(log_values).all(dim=-1)
    safe = log_values.masked_fill(empty[:, None], 0.0)
    return torch.logsumexp(safe, dim=-1).masked_fill(empty, float("-inf"))


def _log_add(a: Tensor, b: Tensor) -> Tensor:
    """log(exp(a) + exp(b)); -inf with a zero gradient where both are -inf."""
    both = torch.isneginf(a) & torch.isneginf(b)
    return torch.logaddexp(a.masked_fill(both, 0.0), b.masked_fill(both, 0.0)).masked_fill(
        both, float("-inf")
    )


def _log_one_minus_exp(log_x: Tensor) -> Tensor:
    """log(1 - exp(log_x)) for log_x <= 0; -inf (zero gradient) where log_x is 0."""
    full = log_x >= 0
    safe = torch.where(full, torch.full_like(log_x, -1.0), log_x)
    return torch.log(-torch.expm1(safe)).masked_fill(full, float("-inf"))


def cross_tokenizer_per_token(
    objective: Objective,
    method: str,
    student_logits: Tensor,
    labels: Tensor,
    spans: SpanPositions,
    teacher: SpanTeacher | None,
    teacher_to_student: Tensor | None,
    top_k: int,
) -> Tensor:
    """`Objective.per_token` for a teacher of another tokenizer. (N, V_s), (N,) -> (N,).

    `method` is `aligned` (the objective's divergence over mapped tokens and the bucket) or
    `uld`; `labels` are the student's actual tokens; the teacher is at the objective's
    temperature already. The divergence sits on each span's first student token.
    """
    kd = None
    if objective.kd_weight > 0:
        if teacher is None:
            raise ValueError("kd_weight > 0 needs the teacher's span distributions")
        log_s = log_probs(student_logits, objective.temperature)
        first, log_c = span_log_probs(log_s, labels, spans)
        if method == "uld":
            values = uld_distance(first, log_c, teacher, top_k)
        elif method == "aligned":
            if teacher_to_student is None:
                raise ValueError("the aligned loss needs the vocabulary map")
            values = aligned_divergence(
                objective.divergence,
                first,
                log_c,
                labels[spans.first],
                teacher,
                teacher_to_student,
                beta=objective.beta,
                alpha=objective.alpha,
            )
        else:
            raise ValueError(f"unknown cross-tokenizer method {method!r}; use aligned or uld")
        kd = spread_over_positions(values, spans, student_logits.shape[0])
    return objective.combine(student_logits, kd, labels)
