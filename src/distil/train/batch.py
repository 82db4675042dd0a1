"""A training micro-batch, typed: the student's tokens, the teacher's side, and its grader.

    layout = BatchLayout(pad_token_id, pad_multiple=64, device=accelerator.device)
    batch = layout.batch(rows, grader, teacher=top_k)     # padded, indexed, moved; one host pass
    loss = batch.grader.loss(student_out, batch)          # summed over its response tokens

A batch never says which training mode made it by the keys it holds: the `TrainingSignal`
chosen for the session (distil.train.signals) makes every batch, gives it its teacher side
(a store's or an API's top-k, a cross-tokenizer teacher's inputs and spans, or nothing when
the grader runs the teacher on `input_ids`) and names the `Grader` that turns the student's
outputs and that side into the loss. The layout follows the rules of distil.train.step:
padding to `train.pad_multiple`, the counted positions indexed on the CPU and the token
count kept there, so the step reads nothing back from the device.
"""

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from distil.data import Example, collate
from distil.losses import IGNORE_INDEX
from distil.train.step import pad_to_multiple, response_index


class Grader(Protocol):
    """What turns the student's outputs on a batch, and the batch's teacher side, into loss."""

    def loss(self, student_out: Tensor, batch: "Batch") -> Tensor:
        """The batch's loss summed over its counted tokens (0-d). `student_out` (N, V) logits,
        or (N, H) final hidden states on the fused path, at `batch.token_index`."""
        ...


@dataclass(frozen=True)
class Batch:
    """One micro-batch on the training device."""

    input_ids: Tensor
    """(B, T) token ids, right-padded."""
    attention_mask: Tensor
    """(B, T)."""
    labels: Tensor
    """(B, T) the response tokens; IGNORE_INDEX on prompts and padding."""
    token_index: Tensor
    """(N,) flat positions b * T + t whose next token the loss counts (made on the CPU)."""
    positions: Tensor
    """0-d, on the CPU: the positions the student read (attention_mask.sum())."""
    grader: Grader
    """What computes this batch's loss."""
    teacher: Any = None
    """The teacher's side the batch carries: a `TopKTeacher` (N, k) from a store or an API's
    scores, a cross-tokenizer teacher's fields, or None when the grader runs the teacher."""
    hard_labels: bool = True
    """Whether the responses are the data's (the hard-label term applies); False for the
    student's own samples."""

    def targets(self) -> Tensor:
        """(N,) the next token at each counted position; IGNORE_INDEX throughout when the
        batch has no hard labels."""
        targets = self.labels.flatten()[self.token_index + 1]
        return targets if self.hard_labels else torch.full_like(targets, IGNORE_INDEX)

    def response_mask(self) -> Tensor:
        """(B, T - 1) the positions that predict a response token."""
        return self.labels[:, 1:] != IGNORE_INDEX


@dataclass(frozen=True)
class BatchLayout:
    """How the session's rows become device batches."""

    pad_token_id: int
    pad_multiple: int | None
    """train.pad_multiple: each batch's length rounded up to a multiple of it."""
    device: torch.device

    def batch(self, rows: list[Example], grader: Grader, teacher: Any = None,
              hard_labels: bool = True) -> Batch:
        """`rows` collated, padded, indexed on the CPU and moved with `teacher` to the device."""
        tokens = pad_to_multiple(collate(rows, self.pad_token_id), self.pad_multiple,
                                 self.pad_token_id)
        index = response_index(tokens)  # on the CPU: no device read later
        return Batch(tokens["input_ids"].to(self.device),
                     tokens["attention_mask"].to(self.device),
                     tokens["labels"].to(self.device), index.to(self.device),
                     tokens["attention_mask"].sum(),  # stays on the CPU
                     grader, moved(teacher, self.device), hard_labels)


def moved(value: Any, device: torch.device) -> Any:
    """`value`'s tensors on `device`: a tensor, a named tuple or dict of them, or None."""
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: item.to(device) for key, item in value.items()}
    if isinstance(value, tuple):  # a named tuple, e.g. TopKTeacher
        return type(value)(*(item.to(device) for item in value))
    return value
