"""A training micro-batch, typed: the student's tokens, the teacher's side, and its grader.

    layout = BatchLayout(pad_token_id, pad_multiple=64, device=accelerator.device)
    batch = layout.batch(rows, grader, teacher=top_k)     # padded, indexed, moved; one host pass
    out = model(**batch.model_inputs())                    # padded, or packed (position ids)
    loss = batch.grader.loss(student_out, batch)          # summed over its response tokens

A batch never says which training mode made it by the keys it holds: the `TrainingSignal`
chosen for the session (distil.train.signals) makes every batch, gives it its teacher side
(a store's or an API's top-k, a cross-tokenizer teacher's inputs and spans, or nothing when
the grader runs the teacher on `input_ids`) and names the `Grader` that turns the student's
outputs and that side into the loss. The layout follows the rules of distil.train.step:
padding to `train.pad_multiple`, the counted positions indexed on the CPU and the token
count kept there, so the step reads nothing back from the device. With `pack_length`
(train.packing) the rows are packed (distil.batching.pack) and the counted positions listed row
by row in the rows' order, so a teacher side made for the rows in order meets them as it
does unpacked.
"""

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from distil.batching import collate, pack
from distil.data import Example
from distil.losses import IGNORE_INDEX
from distil.train.step import packed_response_index, pad_to_multiple, response_index


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
    """(B, T) token ids, right-padded; packed: B sequences of several rows each."""
    attention_mask: Tensor | None
    """(B, T); None when packed (the position ids tell the rows apart)."""
    labels: Tensor
    """(B, T) the response tokens; IGNORE_INDEX on prompts and padding."""
    token_index: Tensor
    """(N,) flat positions b * T + t whose next token the loss counts (made on the CPU)."""
    positions: Tensor
    """0-d, on the CPU: the positions the student read (its rows' tokens, no padding)."""
    grader: Grader
    """What computes this batch's loss."""
    teacher: Any = None
    """The teacher's side the batch carries: a `TopKTeacher` (N, k) from a store or an API's
    scores, a cross-tokenizer teacher's fields, or None when the grader runs the teacher."""
    hard_labels: bool = True
    """Whether the responses are the data's (the hard-label term applies); False for the
    student's own samples."""
    position_ids: Tensor | None = None
    """(B, T) packed: each row's positions from 0 (distil.batching.pack); None when padded."""

    def model_inputs(self) -> dict[str, Tensor]:
        """What a model's forward is given: the tokens with their attention mask, or packed,
        with their position ids and no mask (transformers then keeps the rows apart)."""
        if self.position_ids is not None:
            return {"input_ids": self.input_ids, "position_ids": self.position_ids}
        assert self.attention_mask is not None
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}

    def targets(self) -> Tensor:
        """(N,) the next token at each counted position; IGNORE_INDEX throughout when the
        batch has no hard labels."""
        targets = self.labels.flatten()[self.token_index + 1]
        return targets if self.hard_labels else torch.full_like(targets, IGNORE_INDEX)


@dataclass(frozen=True)
class BatchLayout:
    """How the session's rows become device batches."""

    pad_token_id: int
    pad_multiple: int | None
    """train.pad_multiple: each batch's length rounded up to a multiple of it."""
    device: torch.device
    pack_length: int | None = None
    """train.packing: rows packed into sequences of at most this many tokens (data.max_length)."""

    def batch(
        self, rows: list[Example], grader: Grader, teacher: Any = None, hard_labels: bool = True
    ) -> Batch:
        """`rows` collated (or packed), padded, indexed on the CPU and moved with `teacher` to
        the device."""
        if self.pack_length is None:
            tokens = pad_to_multiple(collate(rows, self.pad_token_id), self.pad_multiple, self.pad_token_id)
            index = response_index(tokens)  # on the CPU: no device read later
        else:
            tokens = pack(rows, self.pack_length, self.pad_token_id)
            sequence, offset = tokens.pop("sequence"), tokens.pop("offset")
            tokens = pad_to_multiple(tokens, self.pad_multiple, self.pad_token_id)
            index = packed_response_index(rows, sequence, offset, tokens["input_ids"].shape[1])
        on_device = {key: value.to(self.device) for key, value in tokens.items()}
        return Batch(
            on_device["input_ids"],
            on_device.get("attention_mask"),
            on_device["labels"],
            index.to(self.device),
            torch.tensor(sum(len(row.input_ids) for row in rows)),  # stays on the CPU
            grader,
            moved(teacher, self.device),
            hard_labels,
            on_device.get("position_ids"),
        )


def moved(value: Any, device: torch.device) -> Any:
    """`value`'s tensors on `device`: a tensor, a named tuple or dict of them, or None."""
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: item.to(device) for key, item in value.items()}
    if isinstance(value, tuple):  # a named tuple, e.g. TopKTeacher (whose `present` may be None)
        return type(value)(*(None if item is None else item.to(device) for item in value))
    return value
