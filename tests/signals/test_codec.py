"""Packed ids and quantised log-probabilities: lossless where promised, bounded error elsewhere."""

import numpy as np
import pytest

from distil.signals import codec


def _sorted_ids(n, k, vocab, seed):
    rng = np.random.default_rng(seed)
    return np.sort(np.stack([rng.choice(vocab, size=k, replace=False) for _ in range(n)]), axis=1)


@pytest.mark.parametrize(
    "vocab,k",
    [
        (2, 1),
        (261, 1),
        (261, 8),
        (261, 261),
        (1000, 999),
        (32000, 32),
        (151936, 1),
        (151936, 32),
        (151936, 128),
        (2**20, 7),
    ],
)
def test_ids_round_trip(vocab, k):
    ids = _sorted_ids(13, k, vocab, seed=k)
    ids[0] = np.arange(k)  # the smallest ids
    ids[1] = np.arange(vocab - k, vocab)  # the largest ids
    records = codec.pack_ids(ids, vocab)
    assert records.shape == (13, codec.id_record_bytes(vocab, k)) and records.dtype == np.uint8
    np.testing.assert_array_equal(codec.unpack_ids(records, vocab, k), ids)


def test_record_size_is_close_to_the_information_bound():
    # k * (2 + log2(V / k)) bits, against 32 bits per id as int32
    assert codec.id_record_bytes(151936, 32) == 57
    assert codec.id_record_bytes(151936, 1) == 3
    assert codec.bytes_per_token(151936, 32, "uint8") == 57 + 32 + 1
    assert codec.bytes_per_token(151936, 32, "float16") == 57 + 64 + 2
    assert codec.bytes_per_token(151936, 32, "float32") == 57 + 128 + 4


@pytest.mark.parametrize("bad", [[[3, 3]], [[4, 2]], [[0, 10]], [[-1, 2]]])
def test_pack_refuses_ids_that_are_not_distinct_ascending_in_range(bad):
    with pytest.raises(ValueError, match="distinct, ascending"):
        codec.pack_ids(np.array(bad), 10)


def test_unpack_detects_a_damaged_record():
    records = codec.pack_ids(_sorted_ids(4, 8, 1000, seed=1), 1000)
    records[2, -1] ^= 0x10  # a flipped bit in the unary high part
    with pytest.raises(ValueError, match="malformed id record"):
        codec.unpack_ids(records, 1000, 8)


def _distributions(n, vocab, k, seed):
    rng = np.random.default_rng(seed)
    logits = -1.1 * np.log(np.arange(1, vocab + 1)) + rng.normal(0, 1.5, (n, vocab))
    logits /= rng.choice([0.3, 1.0, 1.5], size=(n, 1))
    log_p = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    top = np.sort(log_p, axis=1)[:, ::-1][:, :k]
    return top.astype(np.float32), np.log1p(-np.exp(top).sum(1)).astype(np.float32)


def _relative_bound(dtype, p):
    """The error each encoding documents (codec.py), as a relative error of p."""
    if dtype == "float32":
        return np.full_like(p, 1e-6)
    if dtype == "float16":
        return np.where(p > np.exp(-8), 2e-3, 1.0)
    return (1 + 0.5 / (255 * p**0.25)) ** 4 - 1 + 1e-4  # half a level of p^(1/4), to the 4th


@pytest.mark.parametrize("dtype,max_abs", [("float32", 1e-7), ("float16", 2e-3), ("uint8", 8e-3)])
def test_logprob_encodings_stay_within_their_documented_error(dtype, max_abs):
    logprobs, _ = _distributions(200, 5000, 32, seed=0)
    decoded = codec.decode_logprobs(codec.encode_logprobs(logprobs, dtype), dtype)
    p, q = np.exp(logprobs.astype(np.float64)), np.exp(decoded.astype(np.float64))
    assert np.abs(p - q).max() <= max_abs
    big = p > 1e-6
    assert (np.abs(q - p)[big] / p[big] <= _relative_bound(dtype, p[big])).all()
    assert (q > 0).all(), "no stored entry may round to zero probability"


def test_uint8_keeps_tiny_probabilities_nonzero_and_zero_at_zero():
    stored = codec.encode_logprobs(np.array([-40.0, -np.inf, 0.0], dtype=np.float32), "uint8")
    assert stored.tolist() == [1, 0, 255]
    decoded = codec.decode_logprobs(stored, "uint8")
    assert np.isfinite(decoded[0]) and np.isneginf(decoded[1]) and decoded[2] == 0


def test_normalise_makes_each_token_sum_to_one():
    logprobs, log_tail = _distributions(50, 3000, 8, seed=2)
    decoded = codec.decode_logprobs(codec.encode_logprobs(logprobs, "uint8"), "uint8")
    fixed, tail = codec.normalise(decoded, log_tail)
    total = np.exp(fixed.astype(np.float64)).sum(1) + np.exp(tail.astype(np.float64))
    np.testing.assert_allclose(total, 1.0, rtol=1e-6)
