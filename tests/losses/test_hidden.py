"""Hidden-state losses against naive float64 references; projection gradients by gradcheck."""

import math
from fractions import Fraction

import pytest
import torch

from distil.losses.hidden import hidden_state_loss, uniform_layer_map


def _naive_mse(s, t) -> float:
    return sum((float(a) - float(b)) ** 2 for a, b in zip(s, t, strict=True)) / len(s)


def _naive_cosine(s, t, eps=1e-8) -> float:
    dot = sum(float(a) * float(b) for a, b in zip(s, t, strict=True))
    norm_s = math.sqrt(sum(float(a) ** 2 for a in s))
    norm_t = math.sqrt(sum(float(b) ** 2 for b in t))
    return 1 - dot / (max(norm_s, eps) * max(norm_t, eps))


NAIVE = {"mse": _naive_mse, "cosine": _naive_cosine}


def _states(seed: int, shape=(2, 5, 6), scale=1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("kind", ["mse", "cosine"])
@pytest.mark.parametrize("scale", [1.0, 1e4, 1e-6])
def test_masked_loss_matches_the_naive_reference(kind, scale):
    student = [_states(1, scale=scale), _states(2, scale=scale)]
    teacher = [_states(3, scale=scale), _states(4, scale=scale)]
    student[0][0, 1] = 0.0  # a zero state: cosine falls back on its eps-clamped norm
    mask = torch.tensor([[True, True, False, True, False], [False, True, True, True, True]])
    got = hidden_state_loss(kind, student, teacher, mask)
    expected = [
        sum(NAIVE[kind](s[b, p], t[b, p]) for s, t in zip(student, teacher, strict=True)) / 2
        for b in range(2)
        for p in range(5)
        if mask[b, p]
    ]
    assert got.shape == (int(mask.sum()),) and got.dtype == torch.float64
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-9, atol=1e-12)


def test_float32_states_keep_float32_and_unmasked_shape():
    s, t = _states(5).float(), _states(6).float()
    values = hidden_state_loss("mse", [s], [t])
    assert values.shape == (2, 5) and values.dtype == torch.float32


@pytest.mark.parametrize("kind", ["mse", "cosine"])
def test_projection_gradients_pass_gradcheck(kind):
    """The student state (width 3) goes through a learned linear map to the teacher's width 4."""
    weight = torch.randn(
        4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7), requires_grad=True
    )
    student = _states(8, shape=(2, 3, 3)).requires_grad_()
    teacher = _states(9, shape=(2, 3, 4))
    mask = torch.tensor([[True, False, True], [True, True, False]])

    def loss(w, s):
        return hidden_state_loss(kind, [torch.nn.functional.linear(s, w)], [teacher], mask)

    assert torch.autograd.gradcheck(loss, (weight, student))


def test_projection_gradient_equals_the_hand_derived_mse_gradient():
    # d/dW mean_h (W s - t)_h^2 = (2 / H) (W s - t) s^T, for one position
    w = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    s, t = _states(2, shape=(1, 1, 3)), _states(3, shape=(1, 1, 4))
    hidden_state_loss("mse", [torch.nn.functional.linear(s, w)], [t]).sum().backward()
    residual = w.detach() @ s[0, 0] - t[0, 0]
    torch.testing.assert_close(w.grad, (2 / 4) * torch.outer(residual, s[0, 0]))


@pytest.mark.parametrize("student_layers,teacher_layers", [(2, 10), (3, 4), (4, 4), (1, 6), (3, 12)])
def test_uniform_layer_map_rounds_evenly_and_ends_together(student_layers, teacher_layers):
    pairs = uniform_layer_map(student_layers, teacher_layers)
    expected = [
        (i, math.floor(Fraction(i * teacher_layers, student_layers) + Fraction(1, 2)))
        for i in range(1, student_layers + 1)
    ]
    assert pairs == expected and pairs[-1] == (student_layers, teacher_layers)
    assert uniform_layer_map(2, 10) == [(1, 5), (2, 10)]


def test_bad_arguments_are_refused():
    s = [_states(1)]
    with pytest.raises(ValueError, match="unknown hidden-state loss"):
        hidden_state_loss("l1", s, s)
    with pytest.raises(ValueError, match="one teacher state per student state"):
        hidden_state_loss("mse", s, s + s)
