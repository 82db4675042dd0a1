"""Every dense divergence against the naive float64 reference, gradients by gradcheck."""

import math

import numpy as np
import pytest
import torch

from distil import losses
from tests.losses import reference
from tests.losses.inputs import masked_logits

CASES = [
    ("forward_kl", {}),
    ("reverse_kl", {}),
    ("generalized_jsd", {"beta": 0.0}),
    ("generalized_jsd", {"beta": 0.1}),
    ("generalized_jsd", {"beta": 0.5}),
    ("generalized_jsd", {"beta": 0.9}),
    ("generalized_jsd", {"beta": 1.0}),
    ("skew_forward_kl", {"alpha": 0.0}),
    ("skew_forward_kl", {"alpha": 0.1}),
    ("skew_forward_kl", {"alpha": 0.5}),
    ("skew_reverse_kl", {"alpha": 0.0}),
    ("skew_reverse_kl", {"alpha": 0.1}),
    ("skew_reverse_kl", {"alpha": 0.5}),
    ("tvd", {}),
]
TEMPERATURES = [0.5, 1.0, 2.0, 4.0]


def _reference(name, student, teacher, temperature, params):
    return reference.per_row(
        reference.dense, student, teacher, name, temperature=temperature, **params
    ).numpy()


def _logits(n, v, scale, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, v, generator=g) * scale, torch.randn(n, v, generator=g) * scale


@pytest.mark.parametrize("name,params", CASES)
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_matches_reference(name, params, temperature):
    student, teacher = _logits(6, 11, 3.0, seed=len(name) + int(temperature * 10))
    got = getattr(losses, name)(student, teacher, temperature=temperature, **params)
    assert got.shape == (6,) and got.dtype == torch.float32
    want = _reference(name, student, teacher, temperature, params)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,params", CASES)
def test_extreme_logits(name, params):
    """Logits of magnitude 1e4 and -inf entries in the teacher stay finite and exact."""
    student, teacher = _logits(4, 9, 1e4, seed=3)
    teacher[0, :4] = float("-inf")
    student[1] = teacher[1]
    got = getattr(losses, name)(student, teacher, temperature=1.0, **params)
    want = _reference(name, student, teacher, 1.0, params)
    assert torch.isfinite(got).all()
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-3)
    assert got[1].abs() < 1e-6  # identical distributions


def test_cases_cover_every_divergence():
    assert {name for name, _ in CASES} == set(losses.DIVERGENCES)


@pytest.mark.parametrize("name,params", CASES)
@pytest.mark.parametrize("scale", [3.0, 1e4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_masked_entries_give_reference_values_and_gradients(name, params, scale, dtype):
    """-inf logits on both sides (or on one, where the divergence is finite): values and
    gradients equal the float64 reference's, which skips the zero-probability entries."""
    student, teacher = masked_logits(name, params, scale, seed=13)
    upstream = torch.rand(6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    s_ref = student.double().requires_grad_()
    want = reference.per_row(reference.dense, s_ref, teacher.double(), name, temperature=1.5, **params)
    assert torch.isfinite(want).all()  # the inputs stay where the divergence is finite
    (want * upstream).sum().backward()
    s = student.to(dtype).requires_grad_()
    got = getattr(losses, name)(s, teacher.to(dtype), temperature=1.5, **params)
    (got * upstream.to(got.dtype)).sum().backward()
    assert torch.isfinite(s.grad).all(), s.grad
    tol = {"rtol": 1e-9, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    torch.testing.assert_close(got.double(), want.detach(), **tol)
    torch.testing.assert_close(s.grad.double(), s_ref.grad, **tol)


@pytest.mark.parametrize("name,params", CASES)
@pytest.mark.parametrize("temperature", [0.7, 2.0])
def test_gradcheck(name, params, temperature):
    student, teacher = _logits(3, 5, 1.5, seed=11)
    student = student.double().requires_grad_()

    def fn(s):
        return getattr(losses, name)(s, teacher.double(), temperature=temperature, **params)

    assert torch.autograd.gradcheck(fn, (student,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name,params", CASES)
def test_fp32_gradients_match_fp64(name, params):
    student, teacher = _logits(5, 13, 2.0, seed=5)
    grads = []
    for dtype in (torch.float32, torch.float64):
        s = student.detach().to(dtype).clone().requires_grad_()
        getattr(losses, name)(s, teacher.to(dtype), temperature=2.0, **params).sum().backward()
        grads.append(s.grad.double())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_gradient_of_forward_kl_is_the_textbook_one():
    """d KL(p_t||p_s) / d z_s = (p_s - p_t) / T."""
    student, teacher = _logits(4, 7, 2.0, seed=9)
    s = student.double().requires_grad_()
    losses.forward_kl(s, teacher.double(), temperature=3.0).sum().backward()
    want = (torch.softmax(student.double() / 3, -1) - torch.softmax(teacher.double() / 3, -1)) / 3
    torch.testing.assert_close(s.grad, want)


@pytest.mark.parametrize("name,params", CASES)
def test_bf16_inputs_compute_in_float32(name, params):
    """bf16 logits are read as they are and the maths runs in float32: the float64 reference
    on the same (bf16) values agrees to float32 precision, far beyond bf16's (~4e-3)."""
    student, teacher = (x.bfloat16() for x in _logits(4, 32, 2.0, seed=1))
    got = getattr(losses, name)(student, teacher, **params)
    assert got.dtype == torch.float32
    want = _reference(name, student.double(), teacher.double(), 1.0, params)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


def test_jsd_half_is_symmetric_and_bounded():
    student, teacher = _logits(8, 20, 4.0, seed=2)
    ab = losses.generalized_jsd(student, teacher, beta=0.5)
    ba = losses.generalized_jsd(teacher, student, beta=0.5)
    torch.testing.assert_close(ab, ba)
    assert (ab >= 0).all() and (ab <= math.log(2) + 1e-6).all()


@pytest.mark.parametrize(
    "fn,kwargs",
    [
        (losses.generalized_jsd, {"beta": 1.5}),
        (losses.skew_forward_kl, {"alpha": 1.0}),
        (losses.forward_kl, {"temperature": 0.0}),
    ],
)
def test_bad_parameters_are_refused(fn, kwargs):
    student, teacher = _logits(2, 4, 1.0, seed=0)
    with pytest.raises(ValueError):
        fn(student, teacher, **kwargs)


def test_masked_token_mean_ignores_masked_infinities():
    values = torch.tensor([1.0, float("inf"), 3.0, float("nan")])
    mask = torch.tensor([True, False, True, False])
    assert losses.masked_token_mean(values, mask).item() == 2.0
    assert losses.masked_token_mean(values, mask, num_tokens=4).item() == 1.0


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_objective_combines_terms_with_t_squared(temperature):
    student, teacher = _logits(5, 9, 2.0, seed=4)
    labels = torch.tensor([0, 3, -100, 8, 1])
    objective = losses.Objective(
        divergence="reverse_kl", temperature=temperature, kd_weight=0.7, ce_weight=0.3
    )
    got = objective.per_token(student, teacher, labels)
    for i in range(5):
        kd = reference.dense("reverse_kl", student[i], teacher[i], temperature).item()
        ce = 0.0 if labels[i] < 0 else reference.cross_entropy(student[i], int(labels[i])).item()
        assert got[i].item() == pytest.approx(0.7 * temperature**2 * kd + 0.3 * ce, rel=1e-5)
