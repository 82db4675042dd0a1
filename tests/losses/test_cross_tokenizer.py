"""Cross-tokenizer losses against naive float64 references, and their same-tokenizer limits."""

import pytest
import torch

from distil import losses
from distil.losses import Objective, TopKTeacher, teacher_top_k
from distil.losses.cross_tokenizer import (
    SpanPositions,
    SpanTeacher,
    aligned_divergence,
    cross_tokenizer_per_token,
    dense_span_teacher,
    span_log_probs,
    uld_distance,
)
from tests.losses import reference

# Three spans: teacher [0] ~ student [0]; teacher [1, 2] ~ student [1] (many-to-one);
# teacher [3] ~ student [2, 3] (one-to-many); student position 4 is in no span.
TEACHER_SPANS, STUDENT_SPANS = [[0], [1, 2], [3]], [[0], [1], [2, 3]]
MAP = [0, 2, -1, 1, 5, -1, 3]  # teacher id -> student id (V_t = 7, V_s = 6)
NAMES = [
    ("forward_kl", {}),
    ("reverse_kl", {}),
    ("generalized_jsd", {"beta": 0.4}),
    ("skew_forward_kl", {"alpha": 0.2}),
    ("skew_reverse_kl", {"alpha": 0.2}),
    ("tvd", {}),
]


def test_names_cover_every_divergence():
    assert {name for name, _ in NAMES} == set(losses.DIVERGENCES)


def positions(groups, n):
    span = torch.full((n,), -1)
    for number, group in enumerate(groups):
        span[group] = number
    return SpanPositions(torch.tensor([g[0] for g in groups]), span)


def inputs(seed, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    student = (torch.randn(5, 6, generator=g, dtype=torch.float64) * scale).requires_grad_()
    teacher = torch.randn(4, 7, generator=g, dtype=torch.float64) * scale
    return (student, torch.randint(0, 6, (5,), generator=g), teacher, torch.randint(0, 7, (4,), generator=g))


# --- naive references, one span at a time, straight from the definitions ----------------


def ref_span(rows, targets, group, temperature):
    """(log p at the span's first position, log c = sum of log p of the later actual tokens)."""
    logs = [reference.log_softmax(rows[j], temperature) for j in group]
    later = [logs[i][int(targets[j])] for i, j in enumerate(group) if i]
    return logs[0], sum(later, torch.tensor(0.0, dtype=torch.float64))


def ref_aligned(name, params, student, s_targets, teacher, t_targets, temperature, teacher_k=None):
    """Outcomes: the span as observed, the other mapped teacher tokens, the floored bucket."""
    values = []
    for t_group, s_group in zip(TEACHER_SPANS, STUDENT_SPANS, strict=True):
        log_s, c_s = ref_span(student, s_targets, s_group, temperature)
        log_t, c_t = ref_span(teacher, t_targets, t_group, temperature)
        y_t, y_s = int(t_targets[t_group[0]]), int(s_targets[s_group[0]])
        order = sorted(range(7), key=lambda i: -float(log_t[i]))[: teacher_k or 7]
        ids = [i for i in order if MAP[i] >= 0 and i != y_t and MAP[i] != y_s]
        p_t = [torch.exp(c_t + log_t[y_t])] + [torch.exp(c_t + log_t[i]) for i in ids]
        p_s = [torch.exp(c_s + log_s[y_s])] + [torch.exp(c_s + log_s[MAP[i]]) for i in ids]
        floor = losses.cross_tokenizer.BUCKET_FLOOR
        t = torch.stack(p_t + [1 - sum(p_t) + floor]) / (1 + floor)
        s = torch.stack(p_s + [1 - sum(p_s) + floor]) / (1 + floor)
        values.append(reference.OF_LOG_PROBS[name](torch.log(s), torch.log(t), **params))
    return torch.stack(values)


def ref_uld(student, s_targets, teacher, t_targets, temperature, k):
    values = []
    for t_group, s_group in zip(TEACHER_SPANS, STUDENT_SPANS, strict=True):
        sides = []
        for rows, targets, group in ((teacher, t_targets, t_group), (student, s_targets, s_group)):
            log_p, c = ref_span(rows, targets, group, temperature)
            p = sorted((torch.exp(c + lp) for lp in log_p), key=lambda x: float(x.detach()), reverse=True)[:k]
            sides.append(p + [1 - sum(p)])
        values.append(sum(abs(a - b) for a, b in zip(*sides, strict=True)))
    return torch.stack(values)


def library_span_inputs(student, s_targets, teacher, t_targets, temperature, teacher_k=None):
    s_spans, t_spans = positions(STUDENT_SPANS, 5), positions(TEACHER_SPANS, 4)
    first, log_c = span_log_probs(losses.dense.log_probs(student, temperature), s_targets, s_spans)
    log_t = losses.dense.log_probs(teacher, temperature)
    span_teacher = dense_span_teacher(log_t, t_targets, t_spans)
    if teacher_k is not None:
        top = teacher_top_k(teacher[t_spans.first], teacher_k, temperature)
        span_teacher = span_teacher._replace(first=top)
    return first, log_c, s_targets[s_spans.first], span_teacher


# --- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("name,params", NAMES)
@pytest.mark.parametrize("teacher_k", [None, 3])
def test_aligned_matches_naive_reference_with_gradients(name, params, teacher_k):
    student, s_targets, teacher, t_targets = inputs(seed=1)
    temperature = 1.5
    first, log_c, own, span_teacher = library_span_inputs(
        student, s_targets, teacher, t_targets, temperature, teacher_k
    )
    got = aligned_divergence(name, first, log_c, own, span_teacher, torch.tensor(MAP), **params)
    (got_grad,) = torch.autograd.grad(got.sum(), student)
    want = ref_aligned(name, params, student, s_targets, teacher, t_targets, temperature, teacher_k)
    (want_grad,) = torch.autograd.grad(want.sum(), student)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("k", [1, 3, 6])
def test_uld_matches_naive_reference_with_gradients(k):
    student, s_targets, teacher, t_targets = inputs(seed=2)
    first, log_c, _, span_teacher = library_span_inputs(student, s_targets, teacher, t_targets, 0.8)
    got = uld_distance(first, log_c, span_teacher, k)
    (got_grad,) = torch.autograd.grad(got.sum(), student)
    want = ref_uld(student, s_targets, teacher, t_targets, 0.8, k)
    (want_grad,) = torch.autograd.grad(want.sum(), student)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-8, atol=1e-10)


def identity_inputs(seed, n=6, v=9, scale=3.0):
    """One tokenizer on both sides: one span per token, the identity map."""
    g = torch.Generator().manual_seed(seed)
    student, teacher = torch.randn(n, v, generator=g) * scale, torch.randn(n, v, generator=g) * scale
    targets = torch.randint(0, v, (n,), generator=g)
    spans = SpanPositions(torch.arange(n), torch.arange(n))
    return student, teacher, targets, spans, torch.arange(v)


@pytest.mark.parametrize("name,params", [*NAMES, ("generalized_jsd", {"beta": 0.0})])
@pytest.mark.parametrize("temperature", [0.7, 2.0])
def test_identical_tokenizers_give_the_dense_divergence(name, params, temperature):
    student, teacher, targets, spans, identity = identity_inputs(seed=3)
    a, b = student.clone().requires_grad_(), student.clone().requires_grad_()
    objective = Objective(divergence=name, temperature=temperature, ce_weight=0.5, **params)
    log_t = losses.dense.log_probs(teacher, temperature)
    got = cross_tokenizer_per_token(
        objective, "aligned", a, targets, spans, dense_span_teacher(log_t, targets, spans), identity, top_k=9
    )
    want = objective.per_token(b, teacher, targets)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    got.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name,params", NAMES)
def test_identical_tokenizers_over_a_stored_top_k_give_the_sparse_divergence(name, params):
    student, teacher, targets, spans, identity = identity_inputs(seed=4)
    top = teacher_top_k(teacher, 4, temperature=1.0)
    log_t = losses.dense.log_probs(teacher)
    span_teacher = SpanTeacher(top, torch.zeros(6), targets, log_t.gather(1, targets[:, None])[:, 0])
    first, log_c = span_log_probs(losses.dense.log_probs(student), targets, spans)
    got = aligned_divergence(name, first, log_c, targets, span_teacher, identity, **params)
    want = losses.sparse_divergence(name, student, top, **params)
    # the sparse divergence puts the actual token in the bucket when it is outside the
    # top-k; the aligned one keeps it as the span's outcome: equal where it is inside, up
    # to the floor both buckets get (1e-6 against a bucket of real mass here)
    inside = (top.ids == targets[:, None]).any(dim=1)
    assert inside.any() and not inside.all()
    torch.testing.assert_close(got[inside], want[inside], rtol=1e-4, atol=1e-5)


def test_uld_with_identical_tokenizers_is_at_most_twice_the_tvd_and_equal_when_ranked_alike():
    student, teacher, targets, spans, identity = identity_inputs(seed=5)
    log_t = losses.dense.log_probs(teacher)
    first, log_c = span_log_probs(losses.dense.log_probs(student), targets, spans)
    uld = uld_distance(first, log_c, dense_span_teacher(log_t, targets, spans), k=9)
    assert (uld <= 2 * losses.tvd(student, teacher) + 1e-6).all()
    assert (uld < 2 * losses.tvd(student, teacher) - 1e-3).any()  # random rankings differ
    alike = 0.5 * teacher  # the same order of tokens, flatter
    first, log_c = span_log_probs(losses.dense.log_probs(alike), targets, spans)
    uld = uld_distance(first, log_c, dense_span_teacher(log_t, targets, spans), k=9)
    torch.testing.assert_close(uld, 2 * losses.tvd(alike, teacher), rtol=1e-5, atol=1e-6)


def test_per_token_values_sit_on_each_span_first_student_token():
    student, s_targets, teacher, t_targets = inputs(seed=6)
    span_teacher = dense_span_teacher(losses.dense.log_probs(teacher), t_targets, positions(TEACHER_SPANS, 4))
    for method in ("aligned", "uld"):
        values = cross_tokenizer_per_token(
            Objective(),
            method,
            student,
            s_targets,
            positions(STUDENT_SPANS, 5),
            span_teacher,
            torch.tensor(MAP),
            top_k=4,
        )
        assert values.shape == (5,)
        assert values[[0, 1, 2]].gt(0).all() and values[[3, 4]].eq(0).all()


def test_extreme_inputs_stay_finite():
    """Near one-hot distributions with masked tokens: finite values and gradients."""
    student, s_targets, teacher, t_targets = inputs(seed=7, scale=40.0)
    student.data[:, 3] = float("-inf")
    teacher[:, 5] = float("-inf")
    first, log_c, own, span_teacher = library_span_inputs(student, s_targets, teacher, t_targets, 1.0)
    for value in (
        aligned_divergence("generalized_jsd", first, log_c, own, span_teacher, torch.tensor(MAP)),
        uld_distance(first, log_c, span_teacher, 4),
    ):
        (grad,) = torch.autograd.grad(value.sum(), student, retain_graph=True)
        assert torch.isfinite(value).all() and torch.isfinite(grad).all()


def test_unknown_method_is_refused():
    student, teacher, targets, spans, identity = identity_inputs(seed=8)
    span_teacher = dense_span_teacher(losses.dense.log_probs(teacher), targets, spans)
    with pytest.raises(ValueError, match="cross-tokenizer method"):
        cross_tokenizer_per_token(
            Objective(), "dskd", student, targets, spans, span_teacher, identity, top_k=2
        )
    assert isinstance(span_teacher.first, TopKTeacher)
