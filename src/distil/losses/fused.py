"""Chunked fused-linear losses: divergences from hidden states without (N, V) logits.

`fused_linear_divergence` takes the student's and teacher's final hidden states and their
output-head weights and computes the per-token divergence one chunk of tokens at a time,
so at most (chunk_size, V) logits exist at once. Two ways to ask for it:

- `reduction="sum"` returns sum_i w_i * loss_i (w: `token_weights`, default 1) as a scalar,
  and computes the student's gradients in the same pass, chunk by chunk, while the logits
  are at hand. Backward only multiplies them, in place, by the upstream scalar: one pass,
  no host synchronisation (the trainer's case: w = 1 / token count).
- `reduction="none"` returns the (N,) per-token values; backward recomputes each chunk's
  logits and applies any upstream gradient exactly (two passes).
A second backward through the same graph (retain_graph=True) always takes the exact
recompute path. Either way values and gradients equal the dense path's.

Matmuls run in the inputs' dtype (bf16 on a GPU: tensor cores, fp32 accumulation inside);
the divergence and its gradient run in float32 at least, and the gradients accumulate into
preallocated float32 buffers (bf16 products land there without a bf16 rounding on CUDA).
With `compile`, the per-chunk divergence and its backward are one torch.compile'd graph
(fused kernels on a GPU); eager stays the default. Teacher inputs are constants (no
gradient flows to them). First-order gradients only.
"""

from collections.abc import Callable
from functools import lru_cache
from typing import Literal

import torch
from torch import Tensor

from distil.losses.dense import divergence as dense_divergence

# (student logits (c, V) float32, teacher logits (c, V), rows of the chunk) -> values (c,)
PerToken = Callable[[Tensor, Tensor, slice], Tensor]
Reduction = Literal["none", "sum"]

CPU_BLOCK = 2**23
"""Float32 entries of one (chunk, V) block on CPU: 32 MiB, under glibc's largest mmap
threshold, so blocks are recycled from the heap instead of mapped and zero-filled anew."""
GPU_BLOCK = 2**25
"""Float32 entries of one (chunk, V) block on a GPU: 128 MiB, fewer and larger matmuls. About
six such blocks live at once, so a GPU short of memory gets smaller ones (see default_chunk_size)."""


def default_chunk_size(vocab_size: int, device: torch.device) -> int:
    """Rows per chunk: a power of two whose (chunk, V) float32 block fits the device's budget.

    CPU: CPU_BLOCK entries, at most 1024 rows. GPU: GPU_BLOCK entries but no more than 1/64 of
    the free memory, at most 4096 rows (small vocabularies get long chunks).
    """
    if device.type != "cuda":
        return _rows(CPU_BLOCK, vocab_size, 1024)
    free, _ = torch.cuda.mem_get_info(device)
    return _rows(min(GPU_BLOCK, free // (4 * 64)), vocab_size, 4096)


def _rows(budget: int, vocab_size: int, most: int) -> int:
    rows = max(1, budget // max(vocab_size, 1))
    return int(min(most, max(8, 2 ** (rows.bit_length() - 1))))


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
    reduction: Reduction = "none",
    token_weights: Tensor | None = None,
    compile: bool | str = False,
) -> Tensor:
    """Per-token divergence from hidden states and head weights, float32 at least:
    (N,) with reduction "none", the weighted sum (a scalar) with "sum".

    student_hidden (N, Hs), student_weight (V, Hs), teacher_hidden (N, Ht),
    teacher_weight (V, Ht). Same values as `distil.losses.<divergence>` on the logits
    `hidden @ weight.T`, without holding those (N, V) logits. `compile`: True (inductor) or
    a torch.compile backend name compiles the per-chunk divergence and its gradient.
    """
    if compile:
        backend = "inductor" if compile is True else compile
        fn = compiled_divergence(divergence, temperature, beta, alpha, backend)

        def per_token(student_logits: Tensor, teacher_logits: Tensor, rows: slice) -> Tensor:
            return fn(student_logits, teacher_logits)
    else:

        def per_token(student_logits: Tensor, teacher_logits: Tensor, rows: slice) -> Tensor:
            return dense_divergence(
                divergence, student_logits, teacher_logits, temperature=temperature, beta=beta, alpha=alpha
            )

    return fused_linear_loss(
        student_hidden,
        student_weight,
        teacher_hidden,
        teacher_weight,
        per_token,
        chunk_size=chunk_size,
        reduction=reduction,
        token_weights=token_weights,
    )


@lru_cache(maxsize=32)
def compiled_divergence(
    name: str, temperature: float, beta: float, alpha: float, backend: str = "inductor"
) -> Callable[[Tensor, Tensor], Tensor]:
    """The dense divergence `name` as one compiled (student, teacher) -> (c,) function.

    Compiled once per parameter set; chunk sizes are marked dynamic on the second shape seen,
    so the short last chunk costs one more compilation at most.
    """

    def values(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        return dense_divergence(
            name, student_logits, teacher_logits, temperature=temperature, beta=beta, alpha=alpha
        )

    return torch.compile(values, backend=backend)


def fused_linear_loss(
    student_hidden: Tensor,
    student_weight: Tensor,
    teacher_hidden: Tensor | None,
    teacher_weight: Tensor | None,
    per_token: PerToken,
    *,
    chunk_size: int | None = None,
    reduction: Reduction = "none",
    token_weights: Tensor | None = None,
) -> Tensor:
    """Any per-token loss of (student logits, teacher logits), chunked. Float32 at least:
    (N,) with reduction "none"; sum_i token_weights_i * loss_i (a scalar) with "sum".

    `per_token` gets the chunk's student logits (float32 at least), teacher logits and its row slice
    (to index per-token extras such as labels). Teacher arguments may be None when the loss
    needs no teacher; `per_token` then gets an empty tensor in their place.
    """
    _check_shapes(student_hidden, student_weight, teacher_hidden, teacher_weight)
    if reduction not in ("none", "sum"):
        raise ValueError(f"reduction must be 'none' or 'sum', got {reduction!r}")
    if token_weights is not None and (reduction != "sum" or token_weights.shape != student_hidden.shape[:1]):
        raise ValueError(
            "token_weights must be (N,) and go with reduction='sum'; got "
            f"{tuple(token_weights.shape)} with reduction={reduction!r}"
        )
    chunk = chunk_size or default_chunk_size(student_weight.shape[0], student_hidden.device)
    needs_grad = torch.is_grad_enabled() and (student_hidden.requires_grad or student_weight.requires_grad)
    return _FusedLinearLoss.apply(
        student_hidden,
        student_weight,
        teacher_hidden,
        teacher_weight,
        per_token,
        chunk,
        needs_grad,
        reduction,
        token_weights,
    )


class _FusedLinearLoss(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        student_hidden,
        student_weight,
        teacher_hidden,
        teacher_weight,
        per_token,
        chunk,
        needs_grad,
        reduction,
        token_weights,
    ):
        n, device = student_hidden.shape[0], student_hidden.device
        dtype = _math_dtype(student_hidden)
        weights = None
        if reduction == "sum":
            weights = (
                torch.ones(n, device=device, dtype=dtype)
                if token_weights is None
                else token_weights.detach().to(device, dtype)
            )
        one_pass = needs_grad and reduction == "sum"
        values = torch.empty(n, device=device, dtype=dtype)
        grads = _gradient_buffers(student_hidden, student_weight) if one_pass else (None, None)
        for rows in _chunks(n, chunk):
            values[rows] = _chunk_pass(
                student_hidden,
                student_weight,
                teacher_hidden,
                teacher_weight,
                per_token,
                rows,
                weights[rows] if one_pass else None,
                *grads,
            )
        ctx.per_token, ctx.chunk, ctx.needs_grad, ctx.reduction = (per_token, chunk, needs_grad, reduction)
        # kept out of save_for_backward: the first backward scales them in place and hands
        # them over, which the saved-tensor version check would refuse on a second one
        ctx.stored = grads if one_pass else None
        ctx.weights = weights
        ctx.save_for_backward(student_hidden, student_weight, teacher_hidden, teacher_weight)
        return (values * weights).sum() if reduction == "sum" else values

    @staticmethod
    def backward(ctx, grad_out):
        student_hidden, student_weight, teacher_hidden, teacher_weight = ctx.saved_tensors
        if not ctx.needs_grad:
            raise RuntimeError("fused_linear_loss was called without gradients enabled")
        dtype = _math_dtype(student_hidden)
        if ctx.stored is not None:
            # one pass: scale the stored gradients in place by the upstream scalar (a device
            # tensor, never read on the host); they now belong to the caller, so a second
            # backward (retain_graph) recomputes below
            grad_hidden, grad_weight = ctx.stored
            ctx.stored = None
            scale = grad_out.to(dtype)
            out_hidden, out_weight = grad_hidden.mul_(scale), grad_weight.mul_(scale)
        else:
            upstream = ctx.weights * grad_out.to(dtype) if ctx.reduction == "sum" else grad_out.to(dtype)
            out_hidden, out_weight = _gradient_buffers(student_hidden, student_weight)
            for rows in _chunks(student_hidden.shape[0], ctx.chunk):
                _chunk_pass(
                    student_hidden,
                    student_weight,
                    teacher_hidden,
                    teacher_weight,
                    ctx.per_token,
                    rows,
                    upstream[rows],
                    out_hidden,
                    out_weight,
                )
        hidden_grad = out_hidden.to(student_hidden.dtype) if ctx.needs_input_grad[0] else None
        weight_grad = out_weight.to(student_weight.dtype) if ctx.needs_input_grad[1] else None
        return hidden_grad, weight_grad, None, None, None, None, None, None, None


def _gradient_buffers(student_hidden: Tensor, student_weight: Tensor) -> tuple[Tensor, Tensor]:
    """Float32 (at least) gradient buffers: hidden rows are written once, the weight's summed."""
    dtype = _math_dtype(student_hidden)
    return (
        torch.empty(student_hidden.shape, device=student_hidden.device, dtype=dtype),
        torch.zeros(student_weight.shape, device=student_weight.device, dtype=dtype),
    )


def _chunk_pass(
    student_hidden,
    student_weight,
    teacher_hidden,
    teacher_weight,
    per_token,
    rows,
    weights,
    grad_hidden,
    grad_weight,
):
    """Values of one chunk; with `weights`, also write/accumulate the weighted gradients."""
    hidden, dtype = student_hidden[rows].detach(), _math_dtype(student_hidden)
    weight = student_weight.detach()
    with torch.no_grad():
        if teacher_hidden is None:
            teacher_logits = hidden.new_empty(0)
        else:
            teacher_logits = teacher_hidden[rows].detach() @ teacher_weight.detach().T
        logits = (hidden @ weight.T).to(dtype)
    if weights is None:
        with torch.no_grad():
            return per_token(logits, teacher_logits, rows)
    with torch.enable_grad():
        logits.requires_grad_()
        values = per_token(logits, teacher_logits, rows)
        (grad_logits,) = torch.autograd.grad(values, logits, grad_outputs=weights)
    grad_logits = grad_logits.to(weight.dtype)  # (c, V), as the dense path casts back
    _matmul_into(grad_hidden[rows], grad_logits, weight, accumulate=False)
    _matmul_into(grad_weight, grad_logits.T, hidden, accumulate=True)  # no (V, H) temporary
    return values.detach()


def _matmul_into(out: Tensor, a: Tensor, b: Tensor, *, accumulate: bool) -> None:
    """out (+)= a @ b in place; a and b may be of a narrower dtype than out (bf16 into fp32)."""
    if a.dtype == out.dtype:
        if accumulate:
            out.addmm_(a, b)
        else:
            torch.mm(a, b, out=out)
    elif _mixed_mm(out.device.type, a.dtype, out.dtype):
        if accumulate:
            torch.addmm(out, a, b, out_dtype=out.dtype, out=out)
        else:
            torch.mm(a, b, out_dtype=out.dtype, out=out)
    elif accumulate:
        out.add_(a @ b)
    else:
        out.copy_(a @ b)


@lru_cache(maxsize=8)
def _mixed_mm(device_type: str, low: torch.dtype, high: torch.dtype) -> bool:
    """Whether mm / addmm with out_dtype (a low-precision product kept in `high`) runs and
    agrees with the plain product on this device; probed once on small tensors."""
    if device_type != "cuda":
        return False
    try:
        g = torch.Generator(device="cuda").manual_seed(0)
        a = torch.randn(64, 32, device="cuda", generator=g).to(low)
        b = torch.randn(32, 48, device="cuda", generator=g).to(low)
        start = torch.randn(64, 48, device="cuda", generator=g, dtype=high)
        want = start + a.to(high) @ b.to(high)
        got = start.clone()
        torch.addmm(got, a, b, out_dtype=high, out=got)
        fresh = torch.empty(64, 48, device="cuda", dtype=high)
        torch.mm(a, b, out_dtype=high, out=fresh)
    except (RuntimeError, TypeError):
        return False
    return bool(
        torch.allclose(got, want, rtol=1e-3, atol=1e-3)
        and torch.allclose(fresh, want - start, rtol=1e-3, atol=1e-3)
    )


def _math_dtype(tensor: Tensor) -> torch.dtype:
    return torch.promote_types(tensor.dtype, torch.float32)


def _chunks(n: int, chunk: int):
    for start in range(0, n, chunk):
        yield slice(start, min(start + chunk, n))


def _check_shapes(student_hidden, student_weight, teacher_hidden, teacher_weight) -> None:
    if student_hidden.dim() != 2 or student_weight.dim() != 2:
        raise ValueError(
            "student_hidden must be (N, Hs) and student_weight (V, Hs); got "
            f"{tuple(student_hidden.shape)} and {tuple(student_weight.shape)}"
        )
    if student_hidden.shape[1] != student_weight.shape[1]:
        raise ValueError(
            f"student_hidden has {student_hidden.shape[1]} features but "
            f"student_weight has {student_weight.shape[1]}"
        )
    if (teacher_hidden is None) != (teacher_weight is None):
        raise ValueError("pass both teacher_hidden and teacher_weight, or neither")
    if teacher_hidden is None:
        return
    if teacher_hidden.shape[0] != student_hidden.shape[0]:
        raise ValueError(
            f"teacher_hidden has {teacher_hidden.shape[0]} rows, student_hidden {student_hidden.shape[0]}"
        )
    if teacher_weight.shape[0] != student_weight.shape[0]:
        raise ValueError(
            f"teacher vocabulary ({teacher_weight.shape[0]}) differs from the "
            f"student's ({student_weight.shape[0]}); slice both heads to the shared size"
        )
    if teacher_hidden.shape[1] != teacher_weight.shape[1]:
        raise ValueError(
            f"teacher_hidden has {teacher_hidden.shape[1]} features but "
            f"teacher_weight has {teacher_weight.shape[1]}"
        )
