"""Micro-batches of tokenised examples: padded to the longest row (`collate`) or packed
(`pack`, train.packing: rows laid end to end into sequences of at most data.max_length
tokens, position ids restarting with every row), and their order.

The batch order is a pure function of (seed, micro-batch number), `micro_batch_indices`: a
resumed run sees exactly the batches an uninterrupted run would have seen.
"""

import math

import torch

from distil.data import Example
from distil.losses import IGNORE_INDEX


def collate(examples: list[Example], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of examples into input_ids, attention_mask and labels, each (B, T)."""
    length = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        input_ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def pack(examples: list[Example], max_length: int, pad_token_id: int) -> dict[str, torch.Tensor]:
    """Lay the examples end to end into P sequences of at most `max_length` tokens.

    Rows go first-fit in order of decreasing length (ties in their order). Returns input_ids,
    labels and position_ids, each (P, L) with L the longest sequence, and `sequence` and
    `offset` (M,): where each example's first token is, in the examples' order. Position
    ids restart at 0 with every row, which is how transformers' attention tells the rows
    apart (no attention mask: the model is handed position ids only); a row's first label is
    IGNORE_INDEX, so no position predicts across rows (it predicts nothing when padded
    either). Padding at the end of a sequence has position 0 throughout: each pad token is a
    row of its own, seen by no other.
    """
    sequences: list[list[int]] = []  # example numbers per sequence
    room: list[int] = []
    for number in sorted(range(len(examples)), key=lambda i: -len(examples[i].input_ids)):
        size = len(examples[number].input_ids)
        free = next((s for s, left in enumerate(room) if left >= size), None)
        if free is None:
            sequences.append([])
            room.append(max(max_length, size))
            free = len(sequences) - 1
        sequences[free].append(number)
        room[free] -= size
    width = max(sum(len(examples[i].input_ids) for i in s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(sequences), width), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((len(sequences), width), dtype=torch.long)
    where = torch.zeros((2, len(examples)), dtype=torch.long)  # sequence, offset
    for row, members in enumerate(sequences):
        offset = 0
        for number in members:
            example, end = examples[number], offset + len(examples[number].input_ids)
            input_ids[row, offset:end] = torch.tensor(example.input_ids)
            labels[row, offset + 1 : end] = torch.tensor(example.labels[1:], dtype=torch.long)
            position_ids[row, offset:end] = torch.arange(end - offset)
            where[:, number] = torch.tensor([row, offset])
            offset = end
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": position_ids,
        "sequence": where[0],
        "offset": where[1],
    }


def batches_per_epoch(num_examples: int, batch_size: int, world_size: int = 1) -> int:
    """Micro-batches per pass over the data (the last one may be short)."""
    return math.ceil(num_examples / (batch_size * world_size))


def micro_batch_indices(
    number: int, num_examples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
) -> list[int]:
    """Row indices of micro-batch `number` for process `rank`: a seeded shuffle per epoch."""
    per_epoch = batches_per_epoch(num_examples, batch_size, world_size)
    epoch, position = divmod(number, per_epoch)
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(num_examples, generator=generator)
    global_size = batch_size * world_size
    rows = order[position * global_size : (position + 1) * global_size]
    return rows[rank::world_size].tolist()
