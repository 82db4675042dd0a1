"""Absent positions in the store (format version 2): marked, read back as such, checksummed;
stores of version 1, written before, read as before."""

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from distil.signals import (
    FingerprintMismatchError,
    SampleSignals,
    SignalsError,
    SignalStore,
    SignalWriter,
    StoreCorruptedError,
)
from distil.signals.fingerprint import build_fingerprint

VOCAB, K = 50, 3
OLD_STORE = Path(__file__).parent / "data" / "store-v1"  # written by distil at commit c0e7d5d


def _fingerprint(dtype: str, absent_positions: bool = True) -> dict:
    return build_fingerprint(
        {"teacher": {"model": "t"}, "temperature": 1.0},
        vocab_size=VOCAB,
        top_k=K,
        logprob_dtype=dtype,
        source="generation",
        logprob_mode="generated-top-logprobs",
        provenance={},
        absent_positions=absent_positions,
    )


def _sample(absent: list[bool] | None) -> SampleSignals:
    ids = np.array([[4, 9, 2], [7, 1, 0], [3, 5, 8], [11, 12, 13]])
    p = np.array([[0.5, 0.25, 0.125], [0.6, 0.3, 0.05], [0.7, 0.1, 0.1], [0.4, 0.4, 0.1]])
    mask = None if absent is None else np.array(absent)
    # what a source leaves at an absent row is never stored: here, made-up numbers
    return SampleSignals(
        "row-0",
        17,
        ids,
        np.log(p).astype(np.float32),
        np.log(1 - p.sum(axis=1)).astype(np.float32),
        absent=mask,
    )


@pytest.mark.parametrize("dtype", ["float32", "float16", "uint8"])
def test_absent_positions_read_back_as_absent_with_no_probability(tmp_path, dtype):
    with SignalWriter(tmp_path, _fingerprint(dtype), 1000) as writer:
        writer.add(_sample([False, True, False, True]))
    assert json.loads((tmp_path / "fingerprint.json").read_text())["format_version"] == 2
    (shard,) = tmp_path.glob("shard-*.safetensors")
    assert load_file(shard)["absent"].tolist() == [0, 1, 0, 1]
    with SignalStore(tmp_path) as store:
        assert (store.num_tokens, store.num_absent) == (4, 2)
        got = store.get("row-0")
    assert got.absent.tolist() == [False, True, False, True] and got.num_absent == 2
    assert got.ids[[1, 3]].tolist() == [[0, 1, 2], [0, 1, 2]]
    assert np.isneginf(got.logprobs[[1, 3]]).all() and np.isneginf(got.log_tail[[1, 3]]).all()
    assert got.ids[[0, 2]].tolist() == [[2, 4, 9], [3, 5, 8]]
    total = np.exp(got.logprobs[[0, 2]]).sum(axis=1) + np.exp(got.log_tail[[0, 2]])
    np.testing.assert_allclose(total, 1.0, rtol=1e-6)  # present rows: distributions
    np.testing.assert_allclose(np.exp(got.logprobs[0]), [0.125, 0.5, 0.25], atol=8e-3)


def test_a_version_2_store_without_absent_positions_reads_every_position_present(tmp_path):
    with SignalWriter(tmp_path, _fingerprint("float32"), 1000) as writer:
        writer.add(_sample(None))
    with SignalStore(tmp_path) as store:
        got = store.get("row-0")
        assert store.num_absent == 0 and got.absent is None and np.isfinite(got.logprobs).all()


def test_a_store_written_before_reads_as_before(tmp_path):
    assert json.loads((OLD_STORE / "fingerprint.json").read_text())["format_version"] == 1
    with SignalStore(OLD_STORE) as store:
        got = store.get("row-0")
        assert (store.num_tokens, store.num_absent) == (2, 0)
    assert got.absent is None and got.ids.tolist() == [[2, 4, 9], [0, 1, 7]]
    np.testing.assert_allclose(np.exp(got.logprobs), [[0.125, 0.5, 0.25], [0.05, 0.3, 0.6]], rtol=1e-6)


def test_a_version_1_store_cannot_take_absent_positions(tmp_path):
    with (
        SignalWriter(tmp_path, _fingerprint("float32", absent_positions=False), 1000) as writer,
        pytest.raises(ValueError, match="2 positions are absent.*format version 1"),
    ):
        writer.add(_sample([True, False, True, False]))
    assert not list(tmp_path.glob("shard-*"))


def test_an_unknown_version_is_refused_with_what_to_do(tmp_path):
    with SignalWriter(tmp_path, _fingerprint("float32"), 1000) as writer:
        writer.add(_sample([False, True, False, False]))
    fingerprint = json.loads((tmp_path / "fingerprint.json").read_text())
    (tmp_path / "fingerprint.json").write_text(json.dumps({**fingerprint, "format_version": 3}))
    with pytest.raises(
        SignalsError,
        match="format version 3, this distil reads versions 1, 2; read it with the distil that wrote it",
    ):
        SignalStore(tmp_path)


def test_a_shard_of_another_version_than_its_store_is_damaged(tmp_path):
    with SignalWriter(tmp_path, _fingerprint("float32"), 1000) as writer:
        writer.add(_sample([False, True, False, False]))
    fingerprint = json.loads((tmp_path / "fingerprint.json").read_text())
    (tmp_path / "fingerprint.json").write_text(json.dumps({**fingerprint, "format_version": 1}))
    with pytest.raises(StoreCorruptedError, match="format version 2 is not the store's 1"):
        SignalStore(tmp_path)


def test_a_flipped_absent_mark_fails_the_sample_checksum(tmp_path):
    with SignalWriter(tmp_path, _fingerprint("float32"), 1000) as writer:
        writer.add(_sample([False, True, False, False]))
    (shard,) = tmp_path.glob("shard-*.safetensors")
    raw = bytearray(shard.read_bytes())
    header_length = int.from_bytes(raw[:8], "little")
    begin, _ = json.loads(raw[8 : 8 + header_length])["absent"]["data_offsets"]
    raw[8 + header_length + begin + 2] ^= 1  # position 2: present -> absent
    shard.write_bytes(bytes(raw))
    with (
        SignalStore(tmp_path) as store,
        pytest.raises(StoreCorruptedError, match="'row-0' fails its checksum"),
    ):
        store.get("row-0")


def test_a_capture_does_not_add_absent_positions_to_a_version_1_store(tmp_path):
    with SignalWriter(tmp_path, _fingerprint("float32", absent_positions=False), 1000) as writer:
        writer.add(_sample(None))
    with pytest.raises(
        FingerprintMismatchError,
        match="format_version: store has 1, expected 2.*set capture.output to a new folder",
    ):
        SignalWriter(tmp_path, _fingerprint("float32"), 1000)
    with SignalStore(tmp_path) as store:  # and it still reads
        assert store.get("row-0").absent is None
