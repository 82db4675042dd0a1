"""The fused path on a GPU: bf16 values and gradients equal the dense path's, the compiled
chunk function equals eager, and a step synchronises with the host nowhere. Skipped without CUDA."""

import pytest
import torch

from distil import losses
from distil.losses.fused import _mixed_mm

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

N, V, HS, HT = 1000, 4099, 64, 96


def _inputs(dtype):
    g = torch.Generator(device="cuda").manual_seed(0)
    shapes = [(N, HS), (V, HS), (N, HT), (V, HT)]
    return [(torch.randn(*s, device="cuda", generator=g) * 0.5).to(dtype) for s in shapes]


def _grads(fn, hs, ws, ht, wt):
    hs, ws = hs.clone().requires_grad_(), ws.clone().requires_grad_()
    loss = fn(hs, ws, ht, wt)
    loss.backward()
    return loss.detach(), hs.grad, ws.grad


def _fused(**options):
    def fn(hs, ws, ht, wt):
        return losses.fused_linear_divergence(
            hs, ws, ht, wt, divergence="generalized_jsd", reduction="sum", chunk_size=128, **options
        )

    return fn


def _dense(hs, ws, ht, wt):
    return losses.generalized_jsd(hs @ ws.T, ht @ wt.T).sum()


@pytest.mark.parametrize("dtype,share", [(torch.float32, 1e-4), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("compile", [False, True])
def test_cuda_fused_equals_dense(dtype, share, compile):
    """Gradients within `share` of their largest entry (bf16: a rounding of the product)."""
    inputs = _inputs(dtype)
    got, want = _grads(_fused(compile=compile), *inputs), _grads(_dense, *inputs)
    torch.testing.assert_close(got[0], want[0], rtol=1e-3, atol=0)
    for g_, w_ in zip(got[1:], want[1:], strict=True):
        atol = share * w_.float().abs().max().item()
        torch.testing.assert_close(g_.float(), w_.float(), rtol=0, atol=atol)


def test_cuda_step_never_synchronises_with_the_host():
    inputs = _inputs(torch.bfloat16)
    _grads(_fused(), *inputs)  # warm-up: allocator, cuBLAS handles, the out_dtype probe
    torch.cuda.set_sync_debug_mode("error")
    try:
        _grads(_fused(), *inputs)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_bf16_products_accumulate_in_float32():
    assert _mixed_mm("cuda", torch.bfloat16, torch.float32)
