"""Hidden-state distillation losses: pure functions over matched student and teacher states.

    pairs = uniform_layer_map(student_layers=2, teacher_layers=10)   # [(1, 5), (2, 10)]
    values = hidden_state_loss("mse", [s1, s2], [t5, t10], mask)     # (N,) per response token

States are numbered as transformers returns them with output_hidden_states: 0 is the
embedding output, i the output of layer i. The student's states come already projected to
the teacher's width where the widths differ (a learned linear map, distil.train.hidden).
"""

import torch
import torch.nn.functional as F
from torch import Tensor


def hidden_mse(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean squared difference over the hidden width. (..., H), (..., H) -> (...)."""
    return (_at_least_float32(student) - _at_least_float32(teacher)).pow(2).mean(dim=-1)


def hidden_cosine(student: Tensor, teacher: Tensor, eps: float = 1e-8) -> Tensor:
    """1 - cosine similarity over the hidden width (0 where either state is zero, as
    F.cosine_similarity clamps the norms by `eps`). (..., H), (..., H) -> (...) in [0, 2]."""
    return 1 - F.cosine_similarity(_at_least_float32(student), _at_least_float32(teacher), dim=-1, eps=eps)


def _at_least_float32(x: Tensor) -> Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


HIDDEN_LOSSES = {"mse": hidden_mse, "cosine": hidden_cosine}


def hidden_state_loss(
    kind: str, student_states: list[Tensor], teacher_states: list[Tensor], mask: Tensor | None = None
) -> Tensor:
    """Mean over the matched pairs of the per-position loss `kind` (`mse` or `cosine`).

    Each pair: (B, T, H) student state (projected to the teacher's width) and (B, T, H)
    teacher state; `mask` (B, T) picks the positions that count. Returns (N,), one value per
    masked position (row-major), or (B, T) without a mask.
    """
    if kind not in HIDDEN_LOSSES:
        raise ValueError(f"unknown hidden-state loss {kind!r}; choose one of {sorted(HIDDEN_LOSSES)}")
    if not student_states or len(student_states) != len(teacher_states):
        raise ValueError(
            f"{len(student_states)} student and {len(teacher_states)} teacher "
            "states: give one teacher state per student state, at least one"
        )
    loss = HIDDEN_LOSSES[kind]
    total = sum(loss(s, t) for s, t in zip(student_states, teacher_states, strict=True))
    total = total / len(student_states)
    return total if mask is None else total[mask]


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """Student state i of S matched with teacher state round(i * T / S), i = 1..S: evenly
    spaced, the last states always together (half-way cases round up)."""
    if student_layers < 1 or teacher_layers < 1:
        raise ValueError("both models need at least one layer")
    return [
        (i, (2 * i * teacher_layers + student_layers) // (2 * student_layers))
        for i in range(1, student_layers + 1)
    ]
