"""Hidden-state distillation in the trainer: the layer map, the learned projections, the term.

A `HiddenMatcher` sits inside the trained module (distil.train.stage.DistillationStudent), so
its projections are prepared, clipped, stepped and checkpointed with the student: one
linear map (no bias) per matched pair from the student's hidden width to the teacher's,
or none where the widths agree. The loss itself is distil.losses.hidden.
"""

from typing import Any

import torch
from torch import Tensor

from distil.errors import ModelError
from distil.losses.hidden import hidden_state_loss, uniform_layer_map
from distil.recipe.hidden import HiddenSection


class HiddenMatcher(torch.nn.Module):
    """Which student state meets which teacher state, and the projection between them."""

    def __init__(
        self, pairs: list[tuple[int, int]], student_width: int, teacher_width: int, config: HiddenSection
    ) -> None:
        super().__init__()
        self.pairs, self.loss, self.weight = pairs, config.loss, config.weight
        self.projections = torch.nn.ModuleList(
            torch.nn.Linear(student_width, teacher_width, bias=False)
            if student_width != teacher_width
            else torch.nn.Identity()
            for _ in pairs
        )

    def project(self, student_states: tuple[Tensor, ...]) -> list[Tensor]:
        """The matched student states at the teacher's width, each (B, T, H_teacher)."""
        return [proj(student_states[s]) for proj, (s, _) in zip(self.projections, self.pairs, strict=True)]

    def per_token(
        self, projected: list[Tensor], teacher_states: tuple[Tensor, ...], token_index: Tensor
    ) -> Tensor:
        """weight * hidden-state loss at the positions that predict response tokens, (N,) in
        the order of the batch's `token_index` (flat b * T + t, as the logits are gathered).
        `projected` from `project`, `teacher_states` all of the teacher's."""
        teacher = [teacher_states[t] for _, t in self.pairs]
        per_position = hidden_state_loss(self.loss, projected, teacher)  # (B, T)
        return self.weight * per_position.flatten().index_select(0, token_index)


def build_matcher(config: HiddenSection, student: Any, teacher: Any) -> HiddenMatcher | None:
    """The matcher of `distill.hidden`, or None when its weight is 0."""
    if config.weight == 0:
        return None
    depth_s, depth_t = student.config.num_hidden_layers, teacher.config.num_hidden_layers
    pairs = [tuple(p) for p in config.layers] if config.layers else uniform_layer_map(depth_s, depth_t)
    bad = [p for p in pairs if p[0] > depth_s or p[1] > depth_t]
    if bad:
        raise ModelError(
            f"distill.hidden.layers pair {list(bad[0])} is out of range: student "
            f"states are 0..{depth_s}, teacher states 0..{depth_t} (0 is the "
            "embedding output); fix the pair or leave layers empty for the uniform map"
        )
    return HiddenMatcher(pairs, student.config.hidden_size, teacher.config.hidden_size, config)


def outputs_and_states(
    model: Any, inputs: dict[str, Tensor], hidden: bool, states: bool = True
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Final hidden states (B, T, H) when `hidden`, else logits (B, T, V); and, with
    `states`, every hidden state (embedding output first) from the same forward. `inputs`:
    input_ids with an attention_mask, or packed with position_ids (Batch.model_inputs)."""
    if hidden:
        out = model.base_model(**inputs, use_cache=False, output_hidden_states=states)
        return out.last_hidden_state, out.hidden_states if states else ()
    out = model(**inputs, use_cache=False, output_hidden_states=states)
    return out.logits, out.hidden_states if states else ()
