"""Sparse (top-k + tail bucket) divergences: naive references, k = V equals dense, bounds."""

import math

import numpy as np
import pytest
import torch

from distil import losses
from distil.losses import Objective, TopKTeacher, keep_top, teacher_top_k
from tests.losses import reference
from tests.losses.inputs import masked_logits

CASES = [
    ("forward_kl", {}),
    ("reverse_kl", {}),
    ("generalized_jsd", {"beta": 0.0}),
    ("generalized_jsd", {"beta": 0.3}),
    ("generalized_jsd", {"beta": 1.0}),
    ("skew_forward_kl", {"alpha": 0.0}),
    ("skew_forward_kl", {"alpha": 0.2}),
    ("skew_reverse_kl", {"alpha": 0.0}),
    ("skew_reverse_kl", {"alpha": 0.2}),
    ("tvd", {}),
]


def _logits(n, v, scale, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, v, generator=g) * scale, torch.randn(n, v, generator=g) * scale


@pytest.mark.parametrize("name,params", CASES)
@pytest.mark.parametrize("k", [1, 3, 10])
@pytest.mark.parametrize("temperature", [0.7, 2.0])
def test_matches_naive_reference(name, params, k, temperature):
    student, teacher = _logits(5, 12, 2.5, seed=k)
    top = teacher_top_k(teacher, k, temperature)
    got = losses.sparse_divergence(name, student, top, temperature=temperature, **params)
    assert got.shape == (5,) and got.dtype == torch.float32
    want = reference.per_row(reference.sparse, student, teacher, name, k=k, temperature=temperature, **params)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,params", CASES)
@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_k_equal_to_vocabulary_equals_dense(name, params, temperature):
    """With every token stored (in a shuffled order) the bucket is empty: values and gradients match."""
    student, teacher = _logits(6, 17, 3.0, seed=7)
    top = teacher_top_k(teacher, 17, temperature)
    order = torch.randperm(17, generator=torch.Generator().manual_seed(1))
    top = TopKTeacher(top.ids[:, order], top.logprobs[:, order], top.log_tail)
    assert torch.isneginf(top.log_tail).all()
    sparse_in, dense_in = student.clone().requires_grad_(), student.clone().requires_grad_()
    sparse = losses.sparse_divergence(name, sparse_in, top, temperature=temperature, **params)
    dense = losses.divergence(name, dense_in, teacher, temperature=temperature, **params)
    torch.testing.assert_close(sparse, dense, rtol=1e-6, atol=1e-7)
    sparse.sum().backward()
    dense.sum().backward()
    assert torch.isfinite(sparse_in.grad).all()
    torch.testing.assert_close(sparse_in.grad, dense_in.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name,params", CASES)
def test_sparse_is_a_lower_bound_that_tightens_with_k(name, params):
    """Coarsening can only lose information: D_k <= D_k' <= D_dense for k < k'."""
    student, teacher = _logits(8, 40, 2.0, seed=3)
    dense = losses.divergence(name, student, teacher, temperature=1.5, **params)
    previous = torch.zeros_like(dense)
    for k in (1, 4, 16, 39, 40):
        value = losses.sparse_divergence(
            name, student, teacher_top_k(teacher, k, 1.5), temperature=1.5, **params
        )
        assert (value <= dense + 1e-6).all() and (value >= previous - 1e-6).all(), k
        previous = value
    torch.testing.assert_close(previous, dense, rtol=1e-5, atol=1e-6)


def test_cases_cover_every_divergence():
    assert {name for name, _ in CASES} == set(losses.SPARSE_DIVERGENCES)


@pytest.mark.parametrize("name,params", CASES)
@pytest.mark.parametrize("k", [2, 5, 9])
@pytest.mark.parametrize("scale", [3.0, 1e4])
def test_masked_entries_give_reference_values_and_gradients(name, params, k, scale):
    """-inf logits on both sides (or on one, where finite): masked tokens inside the top-k
    (k = 9 = V, and row 1 at any k), a tail bucket of probability 0 on both sides (row 1, and
    row 0 at k = 5), a tail holding masked and unmasked tokens (k = 2): values and gradients
    equal the float64 reference's. No k cuts through tied (masked) teacher tokens that differ
    on the student side, so which of them the top-k holds does not matter."""
    student, teacher = masked_logits(name, params, scale, seed=17)
    teacher[0, 2] = student[0, 2] = float("-inf")  # row 0 keeps 5 tokens: its tail is empty at k = 5
    upstream = torch.rand(6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    s_ref = student.double().requires_grad_()
    want = reference.per_row(reference.sparse, s_ref, teacher.double(), name, k=k, temperature=0.8, **params)
    assert torch.isfinite(want).all()
    (want * upstream).sum().backward()
    s = student.double().requires_grad_()
    got = losses.sparse_divergence(
        name, s, teacher_top_k(teacher.double(), k, 0.8), temperature=0.8, **params
    )
    (got * upstream).sum().backward()
    assert torch.isfinite(s.grad).all(), s.grad
    torch.testing.assert_close(got, want.detach(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(s.grad, s_ref.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name,params", CASES)
def test_gradcheck(name, params):
    student, teacher = _logits(3, 7, 1.5, seed=11)
    top = teacher_top_k(teacher.double(), 3, 1.3)

    def fn(s):
        return losses.sparse_divergence(name, s, top, temperature=1.3, **params)

    assert torch.autograd.gradcheck(fn, (student.double().requires_grad_(),), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name,params", CASES)
def test_extreme_logits_stay_finite(name, params):
    student, teacher = _logits(4, 9, 1e4, seed=5)
    student[1] = teacher[1]
    top = teacher_top_k(teacher, 3)
    values = losses.sparse_divergence(name, student.requires_grad_(), top, **params)
    values.sum().backward()
    assert torch.isfinite(values).all() and torch.isfinite(student.grad).all()
    assert values[1].abs() < 1e-5  # identical distributions


def test_tail_is_exact_when_the_top_k_holds_nearly_all_mass():
    teacher = torch.tensor([[30.0, 0.0, 0.0, -5.0]])
    top = teacher_top_k(teacher, 1)
    want = math.log(2 + math.exp(-5)) - 30.0 - math.log1p((2 + math.exp(-5)) * math.exp(-30))
    assert top.log_tail.item() == pytest.approx(want, rel=1e-6)


def test_keep_top_moves_dropped_mass_into_the_tail():
    _, teacher = _logits(5, 20, 2.0, seed=9)
    full = teacher_top_k(teacher, 12)
    shuffled = TopKTeacher(full.ids.flip(1), full.logprobs.flip(1), full.log_tail)
    kept = keep_top(shuffled, 4)
    direct = teacher_top_k(teacher, 4)
    torch.testing.assert_close(kept.ids, direct.ids)
    torch.testing.assert_close(kept.logprobs, direct.logprobs)
    torch.testing.assert_close(kept.log_tail, direct.log_tail, rtol=1e-5, atol=1e-6)
    assert keep_top(full, 12) is full


@pytest.mark.parametrize("k", [4, 10])
def test_objective_adds_scaled_divergence_and_cross_entropy(k):
    """kd_weight * T^2 * the bucketed divergence + ce_weight * CE at T = 1, 0 CE where ignored."""
    student, teacher = _logits(6, 10, 2.0, seed=2)
    labels = torch.tensor([1, 2, 3, -100, 5, 0])
    objective = Objective("generalized_jsd", temperature=2.0, beta=0.3, kd_weight=0.7, ce_weight=0.4)
    got = losses.sparse_objective_per_token(objective, student, teacher_top_k(teacher, k, 2.0), labels)
    for i in range(6):
        kd = reference.sparse(
            "generalized_jsd", student[i], teacher[i], k=k, temperature=2.0, beta=0.3
        ).item()
        ce = 0.0 if labels[i] < 0 else reference.cross_entropy(student[i], int(labels[i])).item()
        assert got[i].item() == pytest.approx(0.7 * 2.0**2 * kd + 0.4 * ce, rel=1e-5)


def test_shape_mismatches_are_refused():
    student, teacher = _logits(4, 9, 1.0, seed=1)
    top = teacher_top_k(teacher, 3)
    with pytest.raises(ValueError, match="student has 3 tokens"):
        losses.sparse_forward_kl(student[:3], top)
    with pytest.raises(ValueError, match="unknown divergence"):
        losses.sparse_divergence("kl", student, top)
