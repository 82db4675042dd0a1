"""Chunked fused-linear losses: divergences from hidden states without (N, V) logits.

`fused_linear_divergence` takes the student's and teacher's final hidden states and their
output-head weights and computes the per-token divergence one chunk of tokens at a time,
so at most (chunk_size, V) logits exist at once. The student's gradients are computed in
the same pass, chunk by chunk, while the logits are at hand:

- when the upstream gradient is the same for every token (a token mean or sum, the
  trainer's case), backward only scales the stored gradients: no second pass;
- for any other upstream gradient, and for a second backward through the same graph
  (retain_graph=True), backward recomputes each chunk's logits and applies it exactly.
  Either way values and gradients equal the dense path's.

Teacher inputs are constants (no gradient flows to them). First-order gradients only.
"""

from collections.abc import Callable

import torch
from torch import Tensor

from distil.losses.dense import divergence as dense_divergence

# (student logits (c, V) float32, teacher logits (c, V), rows of the chunk) -> values (c,)
PerToken = Callable[[Tensor, Tensor, slice], Tensor]


def default_chunk_size(vocab_size: int, device: torch.device) -> int:
    """Rows per chunk: a (chunk, V) float32 block of at most 32 MiB on CPU, 128 MiB on a GPU.

    On CPU, blocks under glibc's largest mmap threshold (32 MiB) are recycled from the heap
    instead of being mapped and zero-filled anew for every chunk.
    """
    budget = 2**25 if device.type == "cuda" else 2**23
    rows = max(1, budget // max(vocab_size, 1))
    return int(min(1024, max(8, 2 ** (rows.bit_length() - 1))))


def fused_linear_divergence(
    student_hidden: Tensor,
    student_weight: Tensor,
    teacher_hidden: Tensor,
    teacher_weight: Tensor,
    *,
    divergence: str = "generalized_jsd",
    beta: float = 0.5,
    alpha: float = 0.1,
    temperature: float = 1.0,
    chunk_size: int | None = None,
) -> Tensor:
    """Per-token divergence from hidden states and head weights. Returns (N,), float32 at least.

    student_hidden (N, Hs), student_weight (V, Hs), teacher_hidden (N, Ht),
    teacher_weight (V, Ht). Same values as `distil.losses.<divergence>` on the logits
    `hidden @ weight.T`, without holding those (N, V) logits.
    """

    def per_token(student_logits: Tensor, teacher_logits: Tensor, rows: slice) -> Tensor:
        return dense_divergence(divergence, student_logits, teacher_logits,
                                temperature=temperature, beta=beta, alpha=alpha)

    return fused_linear_loss(student_hidden, student_weight, teacher_hidden, teacher_weight,
                             per_token, chunk_size=chunk_size)


def fused_linear_loss(
    student_hidden: Tensor,
    student_weight: Tensor,
    teacher_hidden: Tensor | None,
    teacher_weight: Tensor | None,
    per_token: PerToken,
    *,
    chunk_size: int | None = None,
) -> Tensor:
    """Any per-token loss of (student logits, teacher logits), chunked. Returns (N,), float32 at least.

    `per_token` gets the chunk's student logits (float32 at least), teacher logits and its row slice
    (to index per-token extras such as labels). Teacher arguments may be None when the loss
    needs no teacher; `per_token` then gets an empty tensor in their place.
    """
    _check_shapes(student_hidden, student_weight, teacher_hidden, teacher_weight)
    chunk = chunk_size or default_chunk_size(student_weight.shape[0], student_hidden.device)
    needs_grad = torch.is_grad_enabled() and (
        student_hidden.requires_grad or student_weight.requires_grad)
    return _FusedLinearLoss.apply(student_hidden, student_weight, teacher_hidden,
                                  teacher_weight, per_token, chunk, needs_grad)


class _FusedLinearLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, student_hidden, student_weight, teacher_hidden, teacher_weight,
                per_token, chunk, needs_grad):
        n, device = student_hidden.shape[0], student_hidden.device
        dtype = _math_dtype(student_hidden)
        values = torch.empty(n, device=device, dtype=dtype)
        grad_hidden = grad_weight = None
        if needs_grad:
            grad_hidden = torch.empty(student_hidden.shape, device=device, dtype=dtype)
            grad_weight = torch.zeros(student_weight.shape, device=device, dtype=dtype)
        ones = torch.ones(min(chunk, n), device=device, dtype=dtype)
        for rows in _chunks(n, chunk):
            weights = ones[: rows.stop - rows.start] if needs_grad else None
            values[rows] = _chunk_pass(student_hidden, student_weight, teacher_hidden,
                                       teacher_weight, per_token, rows, weights,
                                       grad_hidden, grad_weight)
        ctx.per_token, ctx.chunk, ctx.needs_grad = per_token, chunk, needs_grad
        # kept out of save_for_backward: the first uniform backward scales them in place and
        # hands them over, which the saved-tensor version check would refuse on a second one
        ctx.stored = (grad_hidden, grad_weight) if needs_grad else None
        ctx.save_for_backward(student_hidden, student_weight, teacher_hidden, teacher_weight)
        return values

    @staticmethod
    def backward(ctx, grad_values):
        student_hidden, student_weight, teacher_hidden, teacher_weight = ctx.saved_tensors
        if not ctx.needs_grad:
            raise RuntimeError("fused_linear_loss was called without gradients enabled")
        uniform = grad_values.numel() > 0 and bool((grad_values == grad_values[0]).all())
        if uniform and ctx.stored is not None:
            # scale the stored gradients in place: no second copy of the (V, H) gradient;
            # they now belong to the caller, so a second backward (retain_graph) takes the
            # exact recompute path below
            grad_hidden, grad_weight = ctx.stored
            ctx.stored = None
            out_hidden = grad_hidden.mul_(grad_values[0])
            out_weight = grad_weight.mul_(grad_values[0])
        else:
            dtype = _math_dtype(student_hidden)
            out_hidden = torch.empty(student_hidden.shape, device=student_hidden.device, dtype=dtype)
            out_weight = torch.zeros(student_weight.shape, device=student_weight.device, dtype=dtype)
            for rows in _chunks(student_hidden.shape[0], ctx.chunk):
                _chunk_pass(student_hidden, student_weight, teacher_hidden, teacher_weight,
                            ctx.per_token, rows, grad_values[rows].to(out_hidden.dtype),
                            out_hidden, out_weight)
        hidden_grad = out_hidden.to(student_hidden.dtype) if ctx.needs_input_grad[0] else None
        weight_grad = out_weight.to(student_weight.dtype) if ctx.needs_input_grad[1] else None
        return hidden_grad, weight_grad, None, None, None, None, None


def _chunk_pass(student_hidden, student_weight, teacher_hidden, teacher_weight, per_token,
                rows, weights, grad_hidden, grad_weight):
    """Values of one chunk; with `weights`, also write/accumulate the weighted gradients."""
    hidden, dtype = student_hidden[rows], _math_dtype(student_hidden)
    with torch.no_grad():
        if teacher_hidden is None:
            teacher_logits = hidden.new_empty(0)
        else:
            teacher_logits = teacher_hidden[rows].detach() @ teacher_weight.detach().T
    if weights is None:
        with torch.no_grad():
            return per_token((hidden @ student_weight.T).to(dtype), teacher_logits, rows)
    with torch.enable_grad():
        logits = (hidden.detach() @ student_weight.detach().T).to(dtype).requires_grad_()
        values = per_token(logits, teacher_logits, rows)
        (grad_logits,) = torch.autograd.grad(values, logits, grad_outputs=weights)
    grad_logits = grad_logits.to(student_weight.dtype)  # (c, V), as the dense path casts back
    grad_hidden[rows] = (grad_logits @ student_weight.detach()).to(dtype)
    if grad_logits.dtype == grad_weight.dtype:
        grad_weight.addmm_(grad_logits.T, hidden.detach())  # in place: no (V, H) temporary
    else:
        grad_weight.add_((grad_logits.T @ hidden.detach()).to(dtype))
    return values.detach()


def _math_dtype(tensor: Tensor) -> torch.dtype:
    return torch.promote_types(tensor.dtype, torch.float32)


def _chunks(n: int, chunk: int):
    for start in range(0, n, chunk):
        yield slice(start, min(start + chunk, n))


def _check_shapes(student_hidden, student_weight, teacher_hidden, teacher_weight) -> None:
    if student_hidden.dim() != 2 or student_weight.dim() != 2:
        raise ValueError("student_hidden must be (N, Hs) and student_weight (V, Hs); got "
                         f"{tuple(student_hidden.shape)} and {tuple(student_weight.shape)}")
    if student_hidden.shape[1] != student_weight.shape[1]:
        raise ValueError(f"student_hidden has {student_hidden.shape[1]} features but "
                         f"student_weight has {student_weight.shape[1]}")
    if (teacher_hidden is None) != (teacher_weight is None):
        raise ValueError("pass both teacher_hidden and teacher_weight, or neither")
    if teacher_hidden is None:
        return
    if teacher_hidden.shape[0] != student_hidden.shape[0]:
        raise ValueError(f"teacher_hidden has {teacher_hidden.shape[0]} rows, "
                         f"student_hidden {student_hidden.shape[0]}")
    if teacher_weight.shape[0] != student_weight.shape[0]:
        raise ValueError(f"teacher vocabulary ({teacher_weight.shape[0]}) differs from the "
                         f"student's ({student_weight.shape[0]}); slice both heads to the shared size")
    if teacher_hidden.shape[1] != teacher_weight.shape[1]:
        raise ValueError(f"teacher_hidden has {teacher_hidden.shape[1]} features but "
                         f"teacher_weight has {teacher_weight.shape[1]}")
