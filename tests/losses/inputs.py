"""Logits with masked (-inf) vocabulary entries, shared by the dense, sparse and fused tests."""

import torch
from torch import Tensor


def zero_sides(name: str, params: dict) -> list[str]:
    """The sides that may give a token probability 0 alone with the divergence staying finite.

    A zero of the teacher alone makes KL(p_s || p_t) infinite; a zero of the student alone
    makes KL(p_t || p_s) infinite; the mixtures and the TVD stay finite either way.
    """
    forward = (
        name == "forward_kl"
        or (name == "generalized_jsd" and params["beta"] == 0)
        or (name == "skew_forward_kl" and params["alpha"] == 0)
    )
    reverse = (
        name == "reverse_kl"
        or (name == "generalized_jsd" and params["beta"] == 1)
        or (name == "skew_reverse_kl" and params["alpha"] == 0)
    )
    return [side for side, infinite in (("teacher", reverse), ("student", forward)) if not infinite]


def masked_logits(name: str, params: dict, scale: float, seed: int) -> tuple[Tensor, Tensor]:
    """(6, 9) student and teacher logits with -inf (a masked vocabulary entry) in every pattern:

    0: the same three tokens masked on both sides; 1: all tokens but one masked on both sides
    (identical one-hot distributions); 2 and 3: the shared mask plus one token masked on the
    teacher's side alone, then the student's alone (where that keeps the divergence finite);
    4: nothing masked; 5: masked on both sides with the two rows otherwise equal.
    """
    g = torch.Generator().manual_seed(seed)
    student, teacher = torch.randn(6, 9, generator=g) * scale, torch.randn(6, 9, generator=g) * scale
    inf = float("-inf")
    for row in (0, 2, 3, 5):
        student[row, [1, 4, 7]] = teacher[row, [1, 4, 7]] = inf
    student[1, 1:] = teacher[1, 1:] = inf
    sides = zero_sides(name, params)
    if "teacher" in sides:
        teacher[2, 2] = inf
    if "student" in sides:
        student[3, 2] = inf
    student[5] = teacher[5]
    return student, teacher
