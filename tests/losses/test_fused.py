"""The fused-linear path equals the dense path: values and student gradients."""

import pytest
import torch

from distil import losses
from distil.losses.fused import default_chunk_size
from tests.losses import reference

N, V, HS, HT = 37, 53, 8, 12
CASES = [
    ("forward_kl", {}),
    ("reverse_kl", {}),
    ("generalized_jsd", {"beta": 0.5}),
    ("generalized_jsd", {"beta": 0.2}),
    ("skew_forward_kl", {"alpha": 0.1}),
    ("skew_reverse_kl", {"alpha": 0.3}),
    ("tvd", {}),
]


def test_cases_cover_every_divergence():
    assert {name for name, _ in CASES} == set(losses.DIVERGENCES)


def _inputs(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    hs = torch.randn(N, HS, generator=g, dtype=torch.float64)
    ws = torch.randn(V, HS, generator=g, dtype=torch.float64) * 0.5
    ht = torch.randn(N, HT, generator=g, dtype=torch.float64)
    wt = torch.randn(V, HT, generator=g, dtype=torch.float64) * 0.5
    return [x.to(dtype) for x in (hs, ws, ht, wt)]


def _dense(hs, ws, ht, wt, name, params, temperature):
    return losses.divergence(name, hs @ ws.T, ht @ wt.T, temperature=temperature, **params)


def _run(fn, hs, ws, ht, wt, upstream):
    hs, ws = hs.clone().requires_grad_(), ws.clone().requires_grad_()
    values = fn(hs, ws, ht, wt)
    (values * upstream).sum().backward()
    return values.detach(), hs.grad, ws.grad


@pytest.mark.parametrize("name,params", CASES)
@pytest.mark.parametrize("chunk_size", [1, 8, 64])
@pytest.mark.parametrize("upstream_kind", ["uniform", "random"])
def test_fused_equals_dense(name, params, chunk_size, upstream_kind):
    hs, ws, ht, wt = _inputs()
    g = torch.Generator().manual_seed(1)
    upstream = (
        torch.full((N,), 0.37, dtype=torch.float64)
        if upstream_kind == "uniform"
        else torch.rand(N, generator=g, dtype=torch.float64)
    )

    def fused(a, b, c, d):
        return losses.fused_linear_divergence(
            a, b, c, d, divergence=name, temperature=1.7, chunk_size=chunk_size, **params
        )

    def dense(a, b, c, d):
        return _dense(a, b, c, d, name, params, 1.7)

    got, want = _run(fused, hs, ws, ht, wt, upstream), _run(dense, hs, ws, ht, wt, upstream)
    for g_, w_ in zip(got, want, strict=True):
        torch.testing.assert_close(g_.double(), w_.double(), rtol=1e-9, atol=1e-12)


def test_masked_upstream_gradient_is_exact():
    """A token-mean over a mask makes the upstream gradient non-uniform: recompute path."""
    hs, ws, ht, wt = [x.float() for x in _inputs()]
    mask = torch.arange(N) % 3 != 0
    results = []
    for use_fused in (True, False):
        a, b = hs.clone().requires_grad_(), ws.clone().requires_grad_()
        values = (
            losses.fused_linear_divergence(a, b, ht, wt, divergence="forward_kl", chunk_size=5)
            if use_fused
            else losses.forward_kl(a @ b.T, ht @ wt.T)
        )
        losses.masked_token_mean(values, mask).backward()
        results.append((a.grad, b.grad))
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,params", CASES)
@pytest.mark.parametrize("upstream_kind", ["uniform", "random"])
def test_masked_vocabulary_columns_match_the_reference(name, params, upstream_kind):
    """A per-token loss that masks vocabulary columns (padding past the real vocabulary) puts
    -inf on both sides of every row: values and both gradients equal the float64 reference's."""
    hs, ws, ht, wt = _inputs()
    masked = torch.zeros(V, dtype=torch.bool)
    masked[[0, 17, 40, V - 1]] = True

    def per_token(student_logits, teacher_logits, rows):
        return losses.divergence(
            name,
            student_logits.masked_fill(masked, float("-inf")),
            teacher_logits.masked_fill(masked, float("-inf")),
            temperature=1.3,
            **params,
        )

    def fused(a, b, c, d):
        return losses.fused_linear_loss(a, b, c, d, per_token, chunk_size=8)

    def naive(a, b, c, d):
        return reference.per_row(
            reference.dense,
            (a @ b.T).masked_fill(masked, float("-inf")),
            (c @ d.T).masked_fill(masked, float("-inf")),
            name,
            temperature=1.3,
            **params,
        )

    upstream = (
        torch.full((N,), 0.37, dtype=torch.float64)
        if upstream_kind == "uniform"
        else torch.rand(N, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    )
    got, want = _run(fused, hs, ws, ht, wt, upstream), _run(naive, hs, ws, ht, wt, upstream)
    assert torch.isfinite(got[1]).all() and torch.isfinite(got[2]).all()
    for g_, w_ in zip(got, want, strict=True):
        torch.testing.assert_close(g_, w_, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("upstream_kind", ["uniform", "random"])
def test_second_backward_accumulates_the_same_gradients(upstream_kind):
    """backward(retain_graph=True) then backward again: twice the gradients of one backward."""
    hs, ws, ht, wt = _inputs()
    upstream = (
        torch.full((N,), 0.37, dtype=torch.float64)
        if upstream_kind == "uniform"
        else torch.rand(N, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    )
    a, b = hs.clone().requires_grad_(), ws.clone().requires_grad_()
    loss = (
        losses.fused_linear_divergence(a, b, ht, wt, divergence="generalized_jsd", chunk_size=8) * upstream
    ).sum()
    loss.backward(retain_graph=True)
    once = a.grad.clone(), b.grad.clone()
    _, want_hidden, want_weight = _run(
        lambda *x: _dense(*x, "generalized_jsd", {}, 1.0), hs, ws, ht, wt, upstream
    )
    torch.testing.assert_close(once, (want_hidden, want_weight), rtol=1e-9, atol=1e-12)
    loss.backward()
    torch.testing.assert_close((a.grad, b.grad), (2 * once[0], 2 * once[1]), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name,params", CASES)
@pytest.mark.parametrize("scale", [1e3, 1e4])
@pytest.mark.parametrize("temperature", [0.01, 1.0, 100.0])
def test_extreme_logits_and_temperatures_match_the_reference(name, params, scale, temperature):
    """Logits of magnitude 1e3-1e4 (near one-hot at T <= 1, |logits / T| up to 1e6): float64
    values and both gradients equal the float64 reference's; float32 values stay finite and
    within 1e-5 of the largest value (observed at most 1.5e-6 over seeds 0-2). Float32
    gradients are only checked finite: rounding 1e4-sized logits in the (chunk, V) matmul
    moves them by ~1e-3, which a near one-hot softmax turns into large relative changes."""
    hs, ws, ht, wt = _inputs()
    hs, ht = hs[:10] * scale / 2, ht[:10] * scale / 2  # (10, H): |logits| up to ~scale
    upstream = torch.rand(10, generator=torch.Generator().manual_seed(6), dtype=torch.float64)

    def fused(a, b, c, d):
        return losses.fused_linear_divergence(
            a, b, c, d, divergence=name, temperature=temperature, chunk_size=4, **params
        )

    def naive(a, b, c, d):
        return reference.per_row(reference.dense, a @ b.T, c @ d.T, name, temperature=temperature, **params)

    want = _run(naive, hs, ws, ht, wt, upstream)
    for g_, w_ in zip(_run(fused, hs, ws, ht, wt, upstream), want, strict=True):
        torch.testing.assert_close(g_, w_, rtol=1e-9, atol=1e-9)
    single = _run(fused, *(x.float() for x in (hs, ws, ht, wt)), upstream.float())
    assert all(torch.isfinite(x).all() for x in single)
    torch.testing.assert_close(single[0].double(), want[0], rtol=1e-5, atol=1e-5 * want[0].abs().max().item())


# Measured on seeds 0-19 (chunk_size 16, all-ones upstream): values and hidden gradients are
# bit-identical to the dense bf16 path; weight gradients differ by at most 1.95e-3 (2 bf16
# ulps at |g| ~ 0.25-0.5: each chunk's product is rounded to bf16 before the float32 sum).
BF16_ATOL = 1e-2


@pytest.mark.parametrize("seed", range(4))
def test_bf16_close_to_dense(seed):
    hs, ws, ht, wt = [x.bfloat16() for x in _inputs(seed=seed)]
    got = _run(
        lambda *x: losses.fused_linear_divergence(*x, divergence="generalized_jsd", chunk_size=16),
        hs,
        ws,
        ht,
        wt,
        torch.ones(N),
    )
    want = _run(lambda a, b, c, d: losses.generalized_jsd(a @ b.T, c @ d.T), hs, ws, ht, wt, torch.ones(N))
    assert got[1].dtype == torch.bfloat16 and got[2].dtype == torch.bfloat16
    for g_, w_ in zip(got, want, strict=True):
        torch.testing.assert_close(g_.float(), w_.float(), rtol=0, atol=BF16_ATOL)


def test_no_grad_returns_values_only():
    hs, ws, ht, wt = _inputs()
    with torch.no_grad():
        got = losses.fused_linear_divergence(hs, ws, ht, wt, divergence="tvd", chunk_size=4)
    torch.testing.assert_close(got, losses.tvd(hs @ ws.T, ht @ wt.T))
    assert not got.requires_grad


def test_gradcheck_through_fused_path():
    hs, ws, ht, wt = _inputs()
    a, b = hs[:4].clone().requires_grad_(), ws.clone().requires_grad_()
    ht4 = ht[:4]

    def fn(x, w):
        return losses.fused_linear_divergence(x, w, ht4, wt, divergence="generalized_jsd", chunk_size=3)

    assert torch.autograd.gradcheck(fn, (a, b), eps=1e-6, atol=1e-6)


def test_shape_errors_name_the_problem():
    hs, ws, ht, wt = _inputs()
    with pytest.raises(ValueError, match="vocabulary"):
        losses.fused_linear_divergence(hs, ws, ht, wt[:-1])
    with pytest.raises(ValueError, match="rows"):
        losses.fused_linear_divergence(hs, ws, ht[:-1], wt)


def test_default_chunk_size_bounds_the_block():
    cpu = torch.device("cpu")
    rows = default_chunk_size(151936, cpu)
    assert 8 <= rows <= 1024 and rows * 151936 * 4 <= 2**25
    assert default_chunk_size(100, cpu) == 1024
