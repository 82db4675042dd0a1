"""How a training step runs fast on a GPU, without changing what it computes on CPU.

- `train.compile`: the student's forward and the fused path's per-chunk loss are compiled
  with torch.compile (auto: on with CUDA, off on CPU, where compiling a small model costs
  more than it saves);
- AdamW is the fused single-kernel one on CUDA (the default foreach one elsewhere);
- the teacher runs under torch.inference_mode (it is loaded in bf16 on a GPU, see
  `distil.models.resolve_dtype`), and under bf16 mixed precision the fused head matmuls run
  in bf16 like the autocast dense path's;
- losses, token counts and gradient norms stay device tensors: `LossWindow` reads them on
  the host once per logging step, not after every micro-batch;
- `train.pad_multiple` right-pads every micro-batch to a multiple of that many positions, so
  a compiled student meets a few shapes instead of one per length (the padding is masked:
  the same tokens enter the loss).
"""

import importlib.util
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from functools import lru_cache, partial
from typing import Any

import torch
from torch import Tensor

from distil.losses import IGNORE_INDEX, Objective, sparse_objective_per_token

COMPILE_BACKEND = "inductor"
"""torch.compile backend of the student and of the per-chunk loss when `train.compile` is on."""


def use_compile(mode: str, device: torch.device) -> bool:
    """`train.compile`: "on", "off", or "auto" (on with CUDA when Triton, which inductor's GPU
    kernels need, is installed)."""
    if mode == "auto":
        return device.type == "cuda" and importlib.util.find_spec("triton") is not None
    return mode == "on"


def compile_module(module: torch.nn.Module) -> None:
    """torch.compile `module`'s forward in place (its state-dict keys stay as they are)."""
    module.compile(backend=COMPILE_BACKEND)


def chunk_objective(objective: Objective, stored: bool, compiled: bool) -> Callable:
    """The fused path's per-chunk loss, (student logits, teacher logits or top-k, labels) ->
    (c,): `Objective.per_token`, or its stored top-k form; torch.compile'd when `compiled`
    (the divergence, cross-entropy and their backward fused into a few kernels)."""
    if compiled:
        return _compiled_objective(objective, stored, COMPILE_BACKEND)
    return partial(sparse_objective_per_token, objective) if stored else objective.per_token


@lru_cache(maxsize=16)
def _compiled_objective(objective: Objective, stored: bool, backend: str) -> Callable:
    return torch.compile(chunk_objective(objective, stored, compiled=False), backend=backend)


def make_optimizer(
    params, learning_rate: float, weight_decay: float, device: torch.device
) -> torch.optim.AdamW:
    """AdamW; the fused CUDA kernel on a GPU, the default implementation elsewhere."""
    fused = True if device.type == "cuda" else None
    return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay, fused=fused)


def teacher_mode() -> AbstractContextManager:
    """Context of the teacher's forward: no autograd record at all."""
    return torch.inference_mode()


def head_dtype(mixed_precision: str) -> torch.dtype | None:
    """Dtype of the fused path's head matmuls: bf16 under bf16 mixed precision (what autocast
    gives the dense path's lm_head), else None (the tensors' own dtype)."""
    return torch.bfloat16 if mixed_precision == "bf16" else None


def autocast_head(tensor: Tensor, dtype: torch.dtype | None) -> Tensor:
    """`tensor` in the head dtype; differentiable, so gradients reach the float32 original."""
    return tensor if dtype is None or tensor.dtype == dtype else tensor.to(dtype)


def pad_to_multiple(batch: dict[str, Tensor], multiple: int | None, pad_token_id: int) -> dict[str, Tensor]:
    """Right-pad input_ids, labels and the attention_mask or, packed, the position_ids (B, T)
    to T rounded up to `multiple` (packed pad tokens have position 0: each its own row)."""
    length = batch["input_ids"].shape[1]
    if not multiple or length % multiple == 0:
        return batch
    extra = multiple - length % multiple
    fill = {"input_ids": pad_token_id, "attention_mask": 0, "labels": IGNORE_INDEX, "position_ids": 0}
    padded = dict(batch)
    for key, value in fill.items():
        if key in batch:
            padded[key] = torch.nn.functional.pad(batch[key], (0, extra), value=value)
    return padded


def response_tokens(batches: Sequence[Any]) -> Tensor:
    """Tokens the loss counts in all `batches` (each with `labels` (B, T), shifted by one),
    as a device tensor."""
    return torch.stack([(b.labels[:, 1:] != IGNORE_INDEX).sum() for b in batches]).sum()


def response_index(batch: dict[str, Tensor]) -> Tensor:
    """Flat positions b * T + t of the tokens the loss counts (the label at t + 1 is set).

    Computed on the CPU before the batch moves, it lets the device gather those rows without
    the host read a boolean mask needs. Row-major, as `x[:, :-1][mask]` orders them.
    """
    labels = batch["labels"]
    counted = (labels[:, 1:] != IGNORE_INDEX).nonzero()  # (N, 2): b, t
    return counted[:, 0] * labels.shape[1] + counted[:, 1]


def packed_response_index(examples: Sequence[Any], sequence: Tensor, offset: Tensor, width: int) -> Tensor:
    """`response_index` of a packed batch (distil.batching.pack) of `width` positions per
    sequence, in the examples' order: the positions whose next token is a response token of
    the same row, each example's in turn, so the (N,) rows meet a store's or a
    cross-tokenizer teacher's rows as they do unpacked."""
    starts = (sequence * width + offset).tolist()
    index = [
        start + t
        for example, start in zip(examples, starts, strict=True)
        for t, label in enumerate(example.labels[1:])
        if label != IGNORE_INDEX
    ]
    return torch.tensor(index, dtype=torch.long)


def response_rows(outputs: Tensor, index: Tensor) -> Tensor:
    """(B, T, ...) outputs at the counted positions: (N, ...), as `outputs[:, :-1][mask]`."""
    return outputs.reshape(-1, *outputs.shape[2:]).index_select(0, index)


class LossWindow:
    """Per-step losses kept as device tensors until a logging step reads them at once.

    Each step adds its micro-batches' losses (or, across processes, the reduced float);
    `read` converts all tensors in one transfer and sums each step's with the arithmetic of a
    per-micro-batch `.item()`, so the logged figures are those of a host read every step.
    """

    def __init__(self, num_processes: int = 1) -> None:
        self.num_processes = num_processes
        self.steps: list[list[Tensor] | float] = []

    def add(self, step: list[Tensor] | float) -> None:
        self.steps.append(step if isinstance(step, float) else [x.detach() for x in step])

    def read(self) -> list[float]:
        """Each added step's loss, as floats; empties the window."""
        flat = [x for step in self.steps if not isinstance(step, float) for x in step]
        values = iter(torch.stack(flat).tolist() if flat else [])
        out = [
            step if isinstance(step, float) else step_loss([next(values) for _ in step], self.num_processes)
            for step in self.steps
        ]
        self.steps.clear()
        return out


def step_loss(micro_losses: list[float], num_processes: int) -> float:
    """A step's loss from its micro-batches' (each scaled by the process count for DDP)."""
    total = 0.0
    for value in micro_losses:
        total += value / num_processes
    return total
