"""Scoring: de-duplication, exact tails (against scipy), uniform p-values without the mark,
and detection with it."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from distil.provenance import (
    KGWBias,
    WatermarkKey,
    WatermarkSpec,
    binomial_log10_sf,
    binomial_sf,
    clopper_pearson,
    score_sequences,
    unique_tuples,
)
from distil.provenance.score import windows

SPEC = WatermarkSpec(gamma=0.25, delta=2.0, context_width=2)


@pytest.mark.parametrize(
    ("k", "n", "p"),
    [
        (0, 5, 0.25),
        (1, 1, 0.5),
        (3, 10, 0.25),
        (40, 100, 0.25),
        (100, 100, 0.25),
        (13, 20, 0.1),
        (2600, 10000, 0.25),
        (5, 7, 0.9),
        (8, 7, 0.3),
    ],
)
def test_binomial_tail_is_scipys(k, n, p):
    assert binomial_sf(k, n, p) == pytest.approx(stats.binom.sf(k - 1, n, p), rel=1e-10, abs=1e-300)


def test_binomial_tail_far_below_float_range():
    log10 = binomial_log10_sf(900, 1000, 0.25)
    # the tail lies between its first term and that term over 1 - r, r the largest ratio of
    # consecutive terms, (n - k) / (k + 1) * p / (1 - p); scipy's logsf says -inf here
    first = (
        math.lgamma(1001) - math.lgamma(901) - math.lgamma(101) + 900 * math.log(0.25) + 100 * math.log(0.75)
    ) / math.log(10)
    ratio = 100 / 901 / 3
    assert first < log10 < first - math.log10(1 - ratio)


def test_clopper_pearson_is_scipys_beta_quantiles():
    low, high = clopper_pearson(3, 1000)
    assert low == pytest.approx(stats.beta.ppf(0.025, 3, 998), rel=1e-9)
    assert high == pytest.approx(stats.beta.ppf(0.975, 4, 997), rel=1e-9)
    assert clopper_pearson(0, 1000) == (0.0, pytest.approx(stats.beta.ppf(0.975, 1, 1000), rel=1e-9))


def test_windows_and_dedup():
    contexts, tokens = windows([5, 6, 7, 5, 6, 7, 5, 6, 8], 2)
    assert contexts.tolist()[:2] == [[5, 6], [6, 7]] and tokens.tolist()[:2] == [7, 5]
    kept_contexts, kept_tokens = unique_tuples(contexts, tokens)
    # (5,6)->7, (6,7)->5, (7,5)->6 repeat; (5,6)->8 is new
    assert list(zip(map(tuple, kept_contexts.tolist()), kept_tokens.tolist(), strict=True)) == [
        ((5, 6), 7),
        ((6, 7), 5),
        ((7, 5), 6),
        ((5, 6), 8),
    ]


def test_windows_from_a_start_keep_the_prompt_as_context_only():
    ids = [1, 2, 3, 4, 5]
    contexts, tokens = windows(ids, 2, start=3)  # a 3-token prompt, then 4 and 5
    assert contexts.tolist() == [[2, 3], [3, 4]] and tokens.tolist() == [4, 5]
    assert windows(ids, 2, start=1)[1].tolist() == windows(ids, 2)[1].tolist() == [3, 4, 5]
    assert windows(ids, 2, start=5)[1].tolist() == []  # nothing after the prompt


def test_a_repeated_text_is_scored_once():
    text = list(np.random.default_rng(1).integers(0, 512, size=50))
    once = score_sequences(WatermarkKey("k"), SPEC, [text])
    ten = score_sequences(WatermarkKey("k"), SPEC, [text] * 10)
    assert ten.tokens == 10 * once.tokens and (ten.kept, ten.green) == (once.kept, once.green)


def test_p_values_on_unmarked_text_are_uniform_over_keys():
    rng = np.random.default_rng(2)
    texts = [rng.integers(0, 64, size=200) for _ in range(5)]  # repeats tuples: dedup matters
    p = [score_sequences(WatermarkKey(f"null-{i}"), SPEC, texts) for i in range(300)]
    # a discrete test: its p-value is uniform only up to its atoms; use the randomised p-value
    # P(X > g) + U * P(X = g), exactly uniform under the null
    u = rng.random(len(p))
    randomised = [
        binomial_sf(s.green + 1, s.kept, s.gamma)
        + u[i] * (binomial_sf(s.green, s.kept, s.gamma) - binomial_sf(s.green + 1, s.kept, s.gamma))
        for i, s in enumerate(p)
    ]
    assert stats.kstest(randomised, "uniform").pvalue > 0.01
    assert np.mean([s.p_value <= 0.05 for s in p]) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 300)


def test_text_sampled_under_the_bias_is_detected_and_other_keys_are_not():
    key = WatermarkKey("marker")
    bias = KGWBias(key, SPEC, 64)
    generator = torch.Generator().manual_seed(0)
    ids = [1, 2]
    for _ in range(150):  # a flat "model": the bias alone decides what is likely
        probs = torch.softmax(bias(torch.tensor([ids[-2:]]))[0], dim=-1)
        ids.append(int(torch.multinomial(probs, 1, generator=generator)))
    assert score_sequences(key, SPEC, [ids]).p_value < 1e-6
    assert score_sequences(WatermarkKey("someone-else"), SPEC, [ids]).p_value > 1e-3
