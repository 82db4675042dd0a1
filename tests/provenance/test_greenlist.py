"""Green lists: deterministic, keyed, independent across keys, a gamma share of the vocabulary."""

import numpy as np
import pytest
import torch

from distil.provenance import (
    KGWBias,
    WatermarkError,
    WatermarkKey,
    WatermarkSpec,
    context_seeds,
    green_mask,
    is_green,
)

SPEC = WatermarkSpec(gamma=0.25, delta=2.0, context_width=2)
CONTEXTS = np.random.default_rng(0).integers(0, 512, size=(64, 2))


def test_same_key_same_lists_on_a_fresh_object():
    first = green_mask(WatermarkKey("alpha"), SPEC, CONTEXTS, 512)
    again = green_mask(WatermarkKey("alpha"), SPEC, CONTEXTS.copy(), 512)
    assert np.array_equal(first, again)


def test_lists_depend_on_the_context():
    masks = green_mask(WatermarkKey("alpha"), SPEC, CONTEXTS, 512)
    assert len({row.tobytes() for row in masks}) == len({tuple(c) for c in CONTEXTS})


def test_a_pinned_seed_does_not_move():
    # the hash is integer arithmetic: this value holds on every machine and numpy version
    seed = context_seeds(WatermarkKey("alpha"), np.array([[3, 7]]))[0]
    assert seed == context_seeds(WatermarkKey(b"alpha"), np.array([[3, 7]], dtype=np.int32))[0]
    assert is_green(np.array([seed]), np.array([5]), 0.5).shape == (1,)


def test_another_key_gives_an_independent_list():
    a = green_mask(WatermarkKey("alpha"), SPEC, CONTEXTS, 512)
    b = green_mask(WatermarkKey("beta"), SPEC, CONTEXTS, 512)
    both = (a & b).mean()
    # independent lists overlap on gamma^2 of the tokens: 64 * 512 cells, sd ~ 0.0012
    assert abs(a.mean() - 0.25) < 0.01 and abs(b.mean() - 0.25) < 0.01
    assert abs(both - 0.25**2) < 0.006
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.02


def test_each_token_is_green_with_probability_gamma_over_keys():
    keys = [WatermarkKey(f"key-{i}") for i in range(400)]
    context = np.array([[10, 11]])
    hits = np.array([green_mask(k, SPEC, context, 8)[0] for k in keys])  # (400, 8)
    # each token: Binomial(400, 0.25), sd 0.022
    assert np.all(np.abs(hits.mean(axis=0) - 0.25) < 0.1)


def test_the_key_never_shows_in_its_repr():
    key = WatermarkKey("s3cret-value")
    assert "s3cret" not in repr(key) and "s3cret" not in str(key)
    assert "s3cret" not in repr(KGWBias(key, SPEC, 16))


def test_key_from_env(monkeypatch):
    monkeypatch.setenv("WM_KEY_TEST", "abc\n")
    assert np.array_equal(
        green_mask(WatermarkKey.from_env("WM_KEY_TEST"), SPEC, CONTEXTS, 64),
        green_mask(WatermarkKey("abc"), SPEC, CONTEXTS, 64),
    )
    monkeypatch.delenv("WM_KEY_TEST")
    with pytest.raises(WatermarkError, match="WM_KEY_TEST is not set"):
        WatermarkKey.from_env("WM_KEY_TEST")
    monkeypatch.setenv("WM_KEY_TEST", "  ")
    with pytest.raises(WatermarkError, match="empty"):
        WatermarkKey.from_env("WM_KEY_TEST")


@pytest.mark.parametrize("values", [dict(gamma=0), dict(gamma=1), dict(delta=-1), dict(context_width=0)])
def test_bad_settings_are_refused(values):
    with pytest.raises(WatermarkError):
        WatermarkSpec(**values)


def test_bias_is_delta_on_green_from_the_last_tokens():
    key = WatermarkKey("alpha")
    ids = torch.tensor([[1, 2, 3, 4], [9, 9, 3, 4]])
    bias = KGWBias(key, SPEC, 32)(ids)
    assert bias.shape == (2, 32) and set(bias.unique().tolist()) <= {0.0, 2.0}
    assert torch.equal(bias[0], bias[1])  # same last two tokens, same list
    expected = green_mask(key, SPEC, np.array([[3, 4]]), 32)[0]
    assert torch.equal(bias[0] > 0, torch.from_numpy(expected))
