"""The one-pass fused path (reduction="sum"): values and gradients equal the naive float64
reference and the dense path in fp32 and bf16, with no host read of any tensor."""

import pytest
import torch

from distil import losses
from distil.losses.fused import default_chunk_size
from tests.losses import reference
from tests.losses.test_fused import CASES, HS, HT, N, V, _inputs  # noqa: F401

MASK = torch.arange(N) % 4 != 1  # a masked token mean: the trainer's weights


def _weights(dtype=torch.float64):
    return MASK.to(dtype) / MASK.sum()


def _grads(fn, hs, ws, ht, wt, upstream=1.0):
    hs, ws = hs.clone().requires_grad_(), ws.clone().requires_grad_()
    loss = fn(hs, ws, ht, wt)
    (loss * upstream).backward()
    return loss.detach(), hs.grad, ws.grad


@pytest.mark.parametrize("name,params", [CASES[1], CASES[2], CASES[-1]])
def test_sum_equals_the_reference(name, params):
    """float64: the weighted sum and both gradients equal the naive per-row reference's."""
    hs, ws, ht, wt = _inputs()

    def fused(a, b, c, d):
        return losses.fused_linear_divergence(
            a,
            b,
            c,
            d,
            divergence=name,
            temperature=1.7,
            chunk_size=8,
            reduction="sum",
            token_weights=_weights(),
            **params,
        )

    def naive(a, b, c, d):
        values = reference.per_row(reference.dense, a @ b.T, c @ d.T, name, temperature=1.7, **params)
        return (values * _weights()).sum()

    got, want = _grads(fused, hs, ws, ht, wt, 0.37), _grads(naive, hs, ws, ht, wt, 0.37)
    assert got[0].shape == ()
    for g_, w_ in zip(got, want, strict=True):
        torch.testing.assert_close(g_, w_, rtol=1e-9, atol=1e-12)


# bf16, measured on seeds 0-3 (chunk 16, this mask): values and hidden gradients were
# bit-identical to the dense bf16 path; weight gradients differed by at most 0.65% of their
# largest entry (6.1e-5 of 0.0094 for the JSD, 4.9e-4 of 0.081 for forward KL: per-chunk
# products are rounded to bf16 on CPU before the float32 sum; CUDA keeps them in float32).
# The bound is 2% of the largest entry, so it does not hang on this CPU's rounding.
RELATIVE_ATOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name,params", [("generalized_jsd", {"beta": 0.5}), ("forward_kl", {})])
def test_sum_equals_the_dense_path(dtype, name, params):
    hs, ws, ht, wt = [x.to(dtype) for x in _inputs(seed=3)]
    weights = _weights(torch.float32)

    def fused(a, b, c, d):
        return losses.fused_linear_divergence(
            a, b, c, d, divergence=name, chunk_size=16, reduction="sum", token_weights=weights, **params
        )

    def dense(a, b, c, d):
        return (losses.divergence(name, a @ b.T, c @ d.T, **params) * weights).sum()

    got, want = _grads(fused, hs, ws, ht, wt), _grads(dense, hs, ws, ht, wt)
    assert got[0].dtype == torch.float32 and got[1].dtype == got[2].dtype == dtype
    for g_, w_ in zip(got, want, strict=True):
        atol = RELATIVE_ATOL[dtype] * w_.float().abs().max().item()
        torch.testing.assert_close(g_.float(), w_.float(), rtol=0, atol=atol)


def test_second_backward_recomputes_the_same_gradients():
    hs, ws, ht, wt = _inputs()
    a, b = hs.clone().requires_grad_(), ws.clone().requires_grad_()
    loss = losses.fused_linear_divergence(
        a, b, ht, wt, chunk_size=8, reduction="sum", token_weights=_weights()
    )
    loss.backward(retain_graph=True)
    once = a.grad.clone(), b.grad.clone()
    (2 * loss).backward()
    torch.testing.assert_close((a.grad, b.grad), (3 * once[0], 3 * once[1]), rtol=1e-9, atol=1e-12)


def _meta_inputs():
    return (
        torch.randn(N, HS, device="meta", requires_grad=True),
        torch.randn(V, HS, device="meta", requires_grad=True),
        torch.randn(N, HT, device="meta"),
        torch.randn(V, HT, device="meta"),
    )


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_forward_and_backward_never_read_a_tensor_on_the_host(reduction):
    """Meta tensors have no data: any .item(), bool() or comparison read on the host fails.
    (The backward used to test the upstream gradient's uniformity that way.)"""
    hs, ws, ht, wt = _meta_inputs()
    weights = torch.rand(N, device="meta") if reduction == "sum" else None
    out = losses.fused_linear_divergence(
        hs, ws, ht, wt, chunk_size=8, reduction=reduction, token_weights=weights
    )
    (out if reduction == "sum" else out.sum()).backward()
    assert hs.grad.shape == (N, HS) and ws.grad.shape == (V, HS)


def test_sparse_fused_objective_never_reads_a_tensor_on_the_host():
    hs, ws, _, _ = _meta_inputs()
    k = 5
    teacher = losses.TopKTeacher(
        torch.zeros(N, k, dtype=torch.long, device="meta"),
        torch.randn(N, k, device="meta"),
        torch.randn(N, device="meta"),
    )
    labels = torch.zeros(N, dtype=torch.long, device="meta")
    objective = losses.Objective("generalized_jsd", ce_weight=0.5)

    def per_token(student_logits, teacher_logits, rows):
        return losses.sparse_objective_per_token(objective, student_logits, teacher.rows(rows), labels[rows])

    losses.fused_linear_loss(hs, ws, None, None, per_token, chunk_size=8, reduction="sum").backward()
    assert ws.grad.shape == (V, HS)


def test_compiled_chunk_function_equals_eager():
    """The torch.compile'd per-chunk divergence (traced through dynamo and AOT autograd; the
    aot_eager backend keeps CPU compile time short) gives the eager values and gradients."""
    hs, ws, ht, wt = [x.float() for x in _inputs(seed=2)]

    def run(compile):
        return _grads(
            lambda *x: losses.fused_linear_divergence(
                *x, divergence="generalized_jsd", beta=0.3, chunk_size=16, reduction="sum", compile=compile
            ),
            hs,
            ws,
            ht,
            wt,
        )

    for got, want in zip(run("aot_eager"), run(False), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


def test_token_weights_need_the_sum_reduction_and_one_per_token():
    hs, ws, ht, wt = _inputs()
    with pytest.raises(ValueError, match="token_weights"):
        losses.fused_linear_divergence(hs, ws, ht, wt, token_weights=torch.ones(N))
    with pytest.raises(ValueError, match="token_weights"):
        losses.fused_linear_divergence(hs, ws, ht, wt, reduction="sum", token_weights=torch.ones(N + 1))
    with pytest.raises(ValueError, match="reduction"):
        losses.fused_linear_divergence(hs, ws, ht, wt, reduction="mean")


def test_gpu_chunks_are_larger_and_shrink_with_free_memory(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (100 * 2**30, 140 * 2**30))
    roomy = default_chunk_size(151936, cuda)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2**30, 140 * 2**30))
    tight = default_chunk_size(151936, cuda)
    cpu = default_chunk_size(151936, torch.device("cpu"))
    assert roomy > cpu and tight < roomy
    assert roomy * 151936 * 4 <= 2**27 and tight * 151936 * 4 * 64 <= 2**30
    assert default_chunk_size(100, cuda) == 4096
