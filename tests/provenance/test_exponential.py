"""The distortion-free scheme: keyed uniforms (deterministic, keyed, uniform), exp-min draws
distributed as p over keys, the exact gamma tail (against scipy), uniform p-values without
the mark and detection with it. Every key is fixed or drawn from a seeded generator, so no
check here can flake."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from distil.provenance import (
    ExpMinSampler,
    WatermarkError,
    WatermarkKey,
    WatermarkSpec,
    context_seeds,
    exp_min_choice,
    gamma_log10_sf,
    gamma_log_sf,
    is_green,
    keyed_uniforms,
    score_sequences,
    tuple_scores,
)

SPEC = WatermarkSpec(context_width=2, scheme="exp-min")
P = np.array([0.4, 0.2, 0.15, 0.1, 0.08, 0.05, 0.015, 0.005])
KEYS = [WatermarkKey(f"key-{i}") for i in range(20_000)]


def _seeds_over_keys(context: list[int]) -> np.ndarray:
    return np.array([context_seeds(key, np.array([context]))[0] for key in KEYS], dtype=np.uint64)


def test_a_pinned_uniform_does_not_move():
    # integer arithmetic: this value holds on every machine and numpy version
    seed = context_seeds(WatermarkKey("alpha"), np.array([[3, 7]]))
    m = 345227809700178  # the top 52 bits of the (seed, 5) hash
    assert keyed_uniforms(seed, np.array([5]))[0] == (m + 0.5) / 2**52
    assert tuple_scores(seed, np.array([5]))[0] == -math.log((2**52 - m - 0.5) / 2**52)
    again = context_seeds(WatermarkKey(b"alpha"), np.array([[3, 7]], dtype=np.int32))
    assert keyed_uniforms(again, np.array([5]))[0] == keyed_uniforms(seed, np.array([5]))[0]


def test_uniforms_are_keyed_and_differ_from_the_green_lists():
    contexts = np.random.default_rng(0).integers(0, 512, size=(5000, 2))
    tokens = np.random.default_rng(1).integers(0, 512, size=5000)
    seeds = context_seeds(WatermarkKey("alpha"), contexts)
    a = keyed_uniforms(seeds, tokens)
    b = keyed_uniforms(context_seeds(WatermarkKey("beta"), contexts), tokens)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.05  # sd of the correlation: 1 / sqrt(5000) = 0.014
    assert a.min() > 0 and a.max() < 1
    green = is_green(seeds, tokens, 0.25)  # the same key's green tokens: r is not below 0.25 there
    assert abs(a[green].mean() - 0.5) < 0.03  # sd of that mean: 0.29 / sqrt(1250) = 0.008


def test_uniforms_are_uniform_over_keys_and_over_contexts():
    over_keys = keyed_uniforms(_seeds_over_keys([3, 7])[:5000], np.full(5000, 11))
    contexts = np.random.default_rng(2).integers(0, 50_000, size=(5000, 2))
    tokens = np.random.default_rng(3).integers(0, 50_000, size=5000)
    over_contexts = keyed_uniforms(context_seeds(WatermarkKey("alpha"), contexts), tokens)
    for r in (over_keys, over_contexts):
        assert stats.kstest(r, "uniform").pvalue > 1e-3
    scores = tuple_scores(context_seeds(WatermarkKey("alpha"), contexts), tokens)
    assert stats.kstest(scores, "expon").pvalue > 1e-3  # -log(1 - r) ~ Exp(1)


def _assert_frequencies_are(chosen: np.ndarray, p: np.ndarray) -> None:
    n = len(chosen)
    counts = np.bincount(chosen, minlength=len(p))
    sd = np.sqrt(n * p * (1 - p))
    assert np.all(np.abs(counts - n * p) <= 4.5 * sd), (counts, n * p)
    assert stats.chisquare(counts[p > 0], n * p[p > 0]).pvalue > 1e-4


def test_exp_min_draws_from_p_over_keys():
    chosen = exp_min_choice(_seeds_over_keys([3, 7]), np.log(np.tile(P, (len(KEYS), 1))))
    _assert_frequencies_are(chosen, P)


def test_exp_min_draws_from_p_over_contexts_under_one_key():
    contexts = np.random.default_rng(4).integers(0, 512, size=(20_000, 2))
    seeds = context_seeds(WatermarkKey("alpha"), contexts)
    _assert_frequencies_are(exp_min_choice(seeds, np.log(np.tile(P, (len(seeds), 1)))), P)


def test_a_token_outside_the_distribution_is_never_drawn():
    p = np.array([0.5, 0.0, 0.5, 0.0])
    with np.errstate(divide="ignore"):
        chosen = exp_min_choice(_seeds_over_keys([1, 2])[:2000], np.log(np.tile(p, (2000, 1))))
    assert set(chosen.tolist()) == {0, 2}


def test_the_torch_sampler_is_the_pure_draw_and_reads_the_last_tokens():
    key = WatermarkKey("alpha")
    scores = torch.randn(6, 40, generator=torch.Generator().manual_seed(0))
    scores[:, 30:] = -torch.inf  # e.g. cut by top-p
    ids = torch.randint(0, 40, (6, 9), generator=torch.Generator().manual_seed(1))
    chosen = ExpMinSampler(key, SPEC)(ids, scores)
    seeds = context_seeds(key, ids[:, -2:].numpy())
    expected = exp_min_choice(seeds, torch.log_softmax(scores.double(), -1).numpy())
    assert chosen.tolist() == expected.tolist() and chosen.max() < 30
    with pytest.raises(WatermarkError, match="a context needs 2 tokens"):
        ExpMinSampler(key, SPEC)(ids[:, :1], scores)


@pytest.mark.parametrize(
    ("n", "s"),
    [
        (1, 0.5),
        (1, 3.0),
        (2, 0.1),
        (5, 1e-3),
        (10, 10.5),
        (10, 30.0),
        (100, 60.0),
        (100, 160.0),
        (1000, 1100.0),
        (1000, 1300.0),
        (100_000, 101_000.0),
        (100_000, 102_000.0),
    ],
)
def test_gamma_tail_is_scipys(n, s):
    assert math.exp(gamma_log_sf(n, s)) == pytest.approx(stats.gamma.sf(s, n), rel=1e-8, abs=1e-300)
    assert gamma_log_sf(n, s) == pytest.approx(stats.gamma.logsf(s, n), rel=1e-9, abs=1e-8)
    assert gamma_log10_sf(n, s) == pytest.approx(gamma_log_sf(n, s) / math.log(10))


@pytest.mark.parametrize(("n", "s"), [(10, 2000.0), (1000, 5000.0), (100_000, 300_000.0)])
def test_gamma_tail_far_below_float_range(n, s):
    # scipy's logsf says -inf here. For s > n - 1 the terms of e^-s sum_{k<n} s^k / k! fall
    # from the last by at least (n - 1) / s each step down: the sum lies between its last term
    # and that term over 1 - (n - 1) / s.
    assert stats.gamma.logsf(s, n) == -math.inf
    last = (n - 1) * math.log(s) - math.lgamma(n) - s
    assert last <= gamma_log_sf(n, s) <= last - math.log1p(-(n - 1) / s)


def test_gamma_tail_closed_forms_and_edges():
    assert gamma_log_sf(1, 1e4) == -1e4  # Exp(1): e^-s
    assert gamma_log_sf(2, 5000.0) == pytest.approx(-5000 + math.log(5001), rel=1e-14)
    assert gamma_log_sf(0, 0.0) == 0.0 and gamma_log_sf(0, 1.0) == -math.inf
    assert gamma_log_sf(7, 0.0) == 0.0


def test_p_values_without_the_mark_are_uniform_over_random_keys():
    text = np.random.default_rng(5).integers(0, 512, size=300).tolist()
    rng = np.random.default_rng(6)
    p = np.array([score_sequences(WatermarkKey.random(rng), SPEC, [text]).p_value for _ in range(300)])
    assert stats.kstest(p, "uniform").pvalue > 1e-3
    assert (p <= 0.05).mean() <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 300)


def _marked_text(key: WatermarkKey, length: int, vocab: int = 64) -> list[int]:
    """A toy model's text drawn by exp-min: each step's distribution from a generator seeded
    by the position and the last tokens, as a language model's depends on its whole prefix."""
    ids = [1, 2]
    for _ in range(length):
        logits = np.random.default_rng([len(ids), *ids[-2:]]).normal(0, 1.5, vocab)
        log_p = logits - np.logaddexp.reduce(logits)
        ids.append(int(exp_min_choice(context_seeds(key, np.array([ids[-2:]])), log_p[None])[0]))
    return ids


def test_marked_text_is_detected_under_its_key_only_and_counted_once():
    key = WatermarkKey("teacher-secret")
    text = _marked_text(key, 200)
    marked = score_sequences(key, SPEC, [text])
    assert marked.log10_p < -10 and marked.total_score > 1.5 * marked.kept
    assert score_sequences(WatermarkKey("another"), SPEC, [text]).p_value > 1e-3
    repeated = score_sequences(key, SPEC, [text * 3])
    assert repeated.tokens > 2 * marked.tokens and repeated.kept <= marked.kept + 4
    assert repeated.log10_p == pytest.approx(marked.log10_p, abs=2)


def test_the_scheme_is_checked():
    with pytest.raises(WatermarkError, match="must be one of kgw, exp-min"):
        WatermarkSpec(scheme="gumbel")
