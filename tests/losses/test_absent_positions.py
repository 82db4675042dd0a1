"""Absent teacher positions in the top-k loss: the divergence is skipped there, the hard-label
term is kept, against naive float64 references (values and gradients), dense and fused."""

import numpy as np
import pytest
import torch

from distil.losses import Objective, TopKTeacher, fused_linear_loss, teacher_top_k
from distil.losses.sparse import sparse_objective_per_token
from tests.losses import reference
from tests.losses.test_sparse import CASES

N, V, H, K = 7, 13, 5, 3
PRESENT = [True, False, True, True, False, True, False]  # the last row: an end-of-turn token


def _inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, H, generator=g, dtype=torch.float64)
    weight = torch.randn(V, H, generator=g, dtype=torch.float64)
    teacher = torch.randn(N, V, generator=g, dtype=torch.float64) * 2.5
    labels = torch.randint(0, V, (N,), generator=g)
    return hidden, weight, teacher, labels


def _stored(teacher_logits: torch.Tensor, temperature: float) -> TopKTeacher:
    """The teacher's top-k as a store gives it: absent rows hold ids 0..k-1 at probability 0."""
    top = teacher_top_k(teacher_logits, K, temperature)
    present = torch.tensor(PRESENT)
    ids = torch.where(present[:, None], top.ids, torch.arange(K))
    return TopKTeacher(
        ids,
        torch.where(present[:, None], top.logprobs, float("-inf")),
        torch.where(present, top.log_tail, float("-inf")),
        present,
    )


def _reference(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    objective: Objective,
    params: dict,
) -> torch.Tensor:
    """sum over present rows of kd_weight T^2 D(t || s) on the top-k buckets, plus, over every
    row, ce_weight * -log softmax(s)[label], row by row in float64."""
    total = torch.zeros((), dtype=torch.float64)
    t = objective.temperature
    for i in range(N):
        if PRESENT[i]:
            total = total + objective.kd_weight * t**2 * reference.sparse(
                objective.divergence, student_logits[i], teacher_logits[i], K, t, **params
            )
        total = total - objective.ce_weight * reference.log_softmax(student_logits[i], 1.0)[labels[i]]
    return total


@pytest.mark.parametrize("name,params", CASES)
@pytest.mark.parametrize("ce_weight", [0.0, 0.3])
def test_the_loss_skips_the_divergence_at_absent_positions(name, params, ce_weight):
    hidden, weight, teacher, labels = _inputs(seed=len(name))
    objective = Objective(name, temperature=2.0, kd_weight=0.7, ce_weight=ce_weight, **params)
    stored = _stored(teacher, objective.temperature)

    got_in = (hidden @ weight.T).detach().requires_grad_()
    got = sparse_objective_per_token(objective, got_in, stored, labels)
    want_in = got_in.detach().clone().requires_grad_()
    want = _reference(want_in, teacher, labels, objective, params)
    torch.testing.assert_close(got.sum(), want, rtol=1e-10, atol=1e-12)
    got.sum().backward()
    want.backward()
    assert torch.isfinite(got_in.grad).all()
    torch.testing.assert_close(got_in.grad, want_in.grad, rtol=1e-9, atol=1e-12)
    if ce_weight == 0:  # nothing at all is learned where the teacher gave nothing
        absent = ~torch.tensor(PRESENT)
        assert (got.detach()[absent] == 0).all() and (got_in.grad[absent] == 0).all()


@pytest.mark.parametrize("chunk_size", [2, 3])
def test_the_fused_path_slices_the_marks_with_its_chunks(chunk_size):
    hidden, weight, teacher, labels = _inputs(seed=3)
    objective = Objective("reverse_kl", temperature=1.0, kd_weight=1.0, ce_weight=0.2)
    stored = _stored(teacher, 1.0)
    hidden_in, weight_in = hidden.clone().requires_grad_(), weight.clone().requires_grad_()

    def per_token(student_logits, _, rows):
        return sparse_objective_per_token(objective, student_logits, stored.rows(rows), labels[rows])

    got = fused_linear_loss(
        hidden_in, weight_in, None, None, per_token, chunk_size=chunk_size, reduction="sum"
    )
    ref_hidden, ref_weight = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    want = _reference(ref_hidden @ ref_weight.T, teacher, labels, objective, {})
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    got.backward()
    want.backward()
    np.testing.assert_allclose(hidden_in.grad.numpy(), ref_hidden.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(weight_in.grad.numpy(), ref_weight.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_without_marks_nothing_changes():
    _, _, teacher, labels = _inputs(seed=5)
    student = torch.randn(N, V, generator=torch.Generator().manual_seed(9))
    objective = Objective("forward_kl", kd_weight=1.0, ce_weight=0.5)
    top = teacher_top_k(teacher.float(), K)
    all_present = TopKTeacher(*top[:3], torch.ones(N, dtype=torch.bool))
    torch.testing.assert_close(
        sparse_objective_per_token(objective, student, all_present, labels),
        sparse_objective_per_token(objective, student, top, labels),
        rtol=0,
        atol=0,
    )
