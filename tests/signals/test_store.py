"""The store: round trip, random access, streaming in bounded memory, damage named by file."""

import json
import tracemalloc

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from distil.losses import teacher_top_k
from distil.signals import (
    FingerprintMismatchError,
    SampleSignals,
    SignalsError,
    SignalStore,
    SignalWriter,
    StoreCorruptedError,
    input_hash,
)

VOCAB = 500


def _fingerprint(k=8, dtype="float32", **extra):
    return {
        "format": "distil-signals",
        "format_version": 1,
        "vocab_size": VOCAB,
        "top_k": k,
        "logprob_dtype": dtype,
        "temperature": 1.0,
        "teacher": {"model": "t"},
        **extra,
    }


def _samples(count, k, seed=0, max_tokens=30):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(count):
        n = int(torch.randint(1, max_tokens, (1,), generator=g))
        top = teacher_top_k(torch.randn(n, VOCAB, generator=g) * 3, k)
        samples.append(
            SampleSignals(
                f"row-{i}", input_hash([i, n]), top.ids.numpy(), top.logprobs.numpy(), top.log_tail.numpy()
            )
        )
    return samples


def _write(path, samples, shard_tokens=100, **fingerprint):
    with SignalWriter(path, _fingerprint(**fingerprint), shard_tokens) as writer:
        for sample in samples:
            writer.add(sample)
    return writer


def _by_id(sample):
    order = np.argsort(sample.ids, axis=1)
    return (np.take_along_axis(sample.ids, order, 1), np.take_along_axis(sample.logprobs, order, 1))


@pytest.mark.parametrize("dtype,tolerance", [("float32", 1e-6), ("float16", 2e-3), ("uint8", 8e-3)])
def test_round_trip_by_id_and_by_streaming(tmp_path, dtype, tolerance):
    samples = _samples(40, 8)
    _write(tmp_path, samples, dtype=dtype)
    with SignalStore(tmp_path) as store:
        assert len(store) == 40 and len(store.shards) > 3
        assert store.num_tokens == sum(s.num_tokens for s in samples)
        for sample in reversed(samples):  # random access, across shards
            got = store.get(sample.sample_id)
            ids, logprobs = _by_id(sample)
            np.testing.assert_array_equal(got.ids, ids)
            assert got.input_hash == sample.input_hash
            np.testing.assert_allclose(np.exp(got.logprobs), np.exp(logprobs), atol=tolerance)
            np.testing.assert_allclose(np.exp(got.log_tail), np.exp(sample.log_tail), atol=tolerance)
        streamed = [s.sample_id for s in store]
        assert sorted(streamed) == sorted(s.sample_id for s in samples)
        assert "row-3" in store and "row-99" not in store
        with pytest.raises(KeyError):
            store.get("row-99")


def test_shards_are_plain_safetensors_files(tmp_path):
    _write(tmp_path, _samples(5, 4), k=4)
    tensors = load_file(sorted(tmp_path.glob("shard-*.safetensors"))[0])
    assert set(tensors) == {"ids", "logprobs", "log_tail", "offsets", "input_hash", "checksum"}
    assert tensors["logprobs"].shape[1] == 4 and tensors["offsets"][0] == 0


def _streaming_peak(path, samples):
    _write(path, samples, shard_tokens=200, k=32)
    with SignalStore(path, max_open_shards=2) as store:
        tracemalloc.start()
        for _ in store:
            pass
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, sum(p.stat().st_size for p in path.glob("shard-*"))


def test_streaming_memory_does_not_grow_with_the_store(tmp_path):
    samples = _samples(240, 32, max_tokens=20)
    small_peak, small_bytes = _streaming_peak(tmp_path / "small", samples[:60])
    large_peak, large_bytes = _streaming_peak(tmp_path / "large", samples)
    assert large_bytes > 3.5 * small_bytes
    assert large_peak < 1.3 * small_peak, (small_peak, large_peak)


def test_a_killed_writer_leaves_complete_shards_and_resumes_without_duplicates(tmp_path):
    samples = _samples(30, 8)
    writer = SignalWriter(tmp_path, _fingerprint(), shard_tokens=100)
    for sample in samples[:20]:
        writer.add(sample)  # no close: the queued samples are lost, as in a kill
    (tmp_path / ".shard-000009.safetensors.abc.tmp").write_bytes(b"half a shard")
    with SignalStore(tmp_path) as store:
        kept = set(store.sample_ids())
    assert 0 < len(kept) < 20
    resumed = SignalWriter(tmp_path, _fingerprint(), shard_tokens=100)
    assert resumed.resumed_samples == len(kept)
    assert not list(tmp_path.glob(".*.tmp"))
    with resumed:
        for sample in samples:
            if sample.sample_id not in resumed:
                resumed.add(sample)
    with SignalStore(tmp_path) as store:
        ids = list(store.sample_ids())
    assert sorted(ids) == sorted(s.sample_id for s in samples) and len(set(ids)) == len(ids)


def test_adding_a_stored_sample_twice_is_refused(tmp_path):
    samples = _samples(3, 8)
    _write(tmp_path, samples)
    with SignalWriter(tmp_path, _fingerprint(), 100) as writer, pytest.raises(ValueError, match="already"):
        writer.add(samples[0])


def test_resuming_under_another_fingerprint_is_refused(tmp_path):
    _write(tmp_path, _samples(3, 8))
    with pytest.raises(FingerprintMismatchError, match=r"top_k: store has 8, expected 4.*capture.output"):
        SignalWriter(tmp_path, _fingerprint(k=4), 100)


def _damage(path, position, data=None):
    raw = bytearray(path.read_bytes())
    if data is None:
        path.write_bytes(raw[:position])
    else:
        raw[position : position + len(data)] = data
        path.write_bytes(raw)


def _header_end(path):
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda p: _damage(p, p.stat().st_size - 7), "it is truncated"),
        (lambda p: _damage(p, 5), "truncated"),
        (lambda p: _damage(p, 8, b"#"), "header is not valid JSON"),
        (lambda p: _damage(p, 12, b"#"), "damaged"),
        (lambda p: p.write_bytes(p.read_bytes() + b"\0"), "longer than its header says"),
    ],
)
def test_truncated_or_damaged_shard_is_named_when_opened(tmp_path, damage, message):
    _write(tmp_path, _samples(20, 8))
    victim = sorted(tmp_path.glob("shard-*"))[1]
    damage(victim)
    with pytest.raises(StoreCorruptedError, match=message) as caught:
        SignalStore(tmp_path)
    assert str(victim) in str(caught.value) and "distil capture" in str(caught.value)


def test_a_flipped_byte_in_the_data_is_caught_by_the_sample_checksum(tmp_path):
    samples = _samples(10, 8)
    _write(tmp_path, samples, shard_tokens=10_000)
    shard = next(tmp_path.glob("shard-*"))
    with SignalStore(tmp_path) as store:
        reader = store._reader(0)
        _, _, offset = reader._tensors["logprobs"]
        row = 3
        position = offset + int(reader.offsets[row]) * 8 * 4  # first logprob of sample `row`
    raw = bytearray(shard.read_bytes())
    raw[position] ^= 0x01
    shard.write_bytes(raw)
    with SignalStore(tmp_path) as store:
        store.get(samples[0].sample_id)  # other samples stay readable
        with pytest.raises(StoreCorruptedError, match=f"{shard}.*sample 'row-{row}' fails its checksum"):
            store.get(f"row-{row}")


def test_a_damaged_index_is_caught(tmp_path):
    _write(tmp_path, _samples(10, 8), shard_tokens=10_000)
    shard = next(tmp_path.glob("shard-*"))
    header = json.loads(shard.read_bytes()[8 : _header_end(shard)])
    _, end = header["offsets"]["data_offsets"]
    _damage(shard, _header_end(shard) + end - 8, (10**6).to_bytes(8, "little"))
    with pytest.raises(StoreCorruptedError, match="sample index fails its checksum"):
        SignalStore(tmp_path)


def test_missing_store_and_damaged_fingerprint(tmp_path):
    with pytest.raises(SignalsError, match="no signal store at .*distil capture"):
        SignalStore(tmp_path / "nothing")
    _write(tmp_path, _samples(2, 8))
    (tmp_path / "fingerprint.json").write_text("{not json")
    with pytest.raises(StoreCorruptedError, match="fingerprint.json is damaged"):
        SignalStore(tmp_path)


def test_one_sample_in_two_shards_is_refused(tmp_path):
    samples = _samples(4, 8)
    _write(tmp_path, samples[:2])
    other = tmp_path / "other"
    _write(other, samples[1:3])
    next(other.glob("shard-*")).rename(tmp_path / "shard-000050.safetensors")
    with pytest.raises(SignalsError, match="'row-1' is stored twice"):
        SignalStore(tmp_path)


def test_no_single_bit_flip_goes_unnoticed(tmp_path):
    """Flip one bit anywhere in a shard: opening or reading fails, or nothing changed."""
    samples = _samples(4, 4, max_tokens=6)
    _write(tmp_path, samples, k=4, dtype="float16", shard_tokens=10_000)
    shard = next(tmp_path.glob("shard-*"))
    pristine = shard.read_bytes()
    with SignalStore(tmp_path) as store:
        expected = [store.get(s.sample_id) for s in samples]
    for position in range(0, len(pristine), 3):
        damaged = bytearray(pristine)
        damaged[position] ^= 1 << (position % 8)
        shard.write_bytes(damaged)
        try:
            with SignalStore(tmp_path) as store:
                got = [store.get(s.sample_id) for s in samples]
        except StoreCorruptedError:
            continue
        for a, b in zip(got, expected, strict=True):
            assert a.sample_id == b.sample_id and a.input_hash == b.input_hash, position
            np.testing.assert_array_equal(a.ids, b.ids)
            np.testing.assert_array_equal(a.logprobs, b.logprobs)
            np.testing.assert_array_equal(a.log_tail, b.log_tail)
