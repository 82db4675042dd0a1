"""One shard of a signal store: a safetensors file of whole samples, with checksums.

    shard-000000.safetensors
        ids         (T, R)    uint8    Elias-Fano packed top-k ids of every token (codec.py)
        logprobs    (T, k)    float32 | float16 | uint8, in the ids' ascending order
        log_tail    (T,)      as logprobs, log of the mass outside the top-k
        offsets     (S + 1,)  int64    sample s owns tokens offsets[s]:offsets[s + 1]
        input_hash  (S,)      uint64   hash of the sample's token ids (catches misalignment)
        checksum    (S,)      uint32   CRC-32 of the sample's ids, logprobs and log_tail bytes
        __metadata__: format, format_version, sample_ids (JSON list), index_crc32
    and, in a store of the teacher's own tokens (`teacher_tokens`, for cross-tokenizer
    distillation; the checksum then covers them too):
        target_ids      (T,)     int32    the teacher's token at each position (what it predicts)
        target_logprob  (T,)     float32  log p_t of that token (at the stored temperature)
        char_offsets    (T, 2)   int32    its characters in the response text; (-1, -1) for
                                          the end-of-turn token
    and, in a store of format version 2 (a source that may lack a position's distribution;
    the checksum covers it, after log_tail):
        absent          (T,)     uint8    1 where the teacher gave no distribution: that
                                          token's ids are 0..k-1 and its k entries and tail
                                          all hold probability 0

Shards are written in one piece with the standard safetensors writer and renamed into
place, so a shard on disk is always complete. They are read back by
distil.signals.shard_reader, with positioned reads of just the bytes a sample needs; the
header, the index and every sample's checksum are verified, and any damage names the file.
"""

import hashlib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save

from distil.fsutil import atomic_write_bytes
from distil.signals.codec import LogprobDtype, encode_logprobs, id_record_bytes, pack_ids

FORMAT = "distil-signals"
FORMAT_VERSION = 2
"""The newest version, written by a capture whose source may lack positions; version 1 (no
`absent` tensor: every position present) is written otherwise, and read as before."""
VERSIONS = (1, 2)
SHARD_GLOB = "shard-*.safetensors"
TOKEN_TENSORS = ("target_ids", "target_logprob", "char_offsets")


@dataclass(frozen=True)
class Encoding:
    """What decoding a shard needs: the vocabulary size, k and the log-probability dtype."""

    vocab_size: int
    top_k: int
    logprob_dtype: LogprobDtype
    teacher_tokens: bool = False
    """The store records the teacher's own tokens per position (target_ids, ...)."""
    absent: bool = False
    """The store marks positions without a teacher distribution (format version 2)."""

    @property
    def version(self) -> int:
        """The format version of the store's shards."""
        return 2 if self.absent else 1

    @property
    def record_bytes(self) -> int:
        """Bytes of one token's packed ids."""
        return id_record_bytes(self.vocab_size, self.top_k)


@dataclass
class SampleSignals:
    """The teacher's top-k at every response position of one sample.

    ids (n, k) int64, logprobs (n, k) float32 (log p_t at the stored temperature, aligned
    with ids), log_tail (n,) float32 (log of the mass outside the top-k, -inf if none).
    Read back from a store, ids are ascending per token and every token sums to one.
    """

    sample_id: str
    input_hash: int
    ids: np.ndarray
    logprobs: np.ndarray
    log_tail: np.ndarray
    tokens: "TeacherTokens | None" = None
    """The teacher's own tokens, in a store with `teacher_tokens` (else None)."""
    absent: np.ndarray | None = None
    """(n,) bool: True where the teacher gave no distribution (its row then holds ids 0..k-1
    at probability 0, tail included); None when every position is present."""

    @property
    def num_tokens(self) -> int:
        return int(self.ids.shape[0])

    @property
    def num_absent(self) -> int:
        return 0 if self.absent is None else int(np.count_nonzero(self.absent))


@dataclass
class TeacherTokens:
    """The teacher's tokens of a sample's response: target_ids (n,) int, target_logprob (n,)
    float32, char_offsets (n, 2) int ((-1, -1) for the end-of-turn token)."""

    target_ids: np.ndarray
    target_logprob: np.ndarray
    char_offsets: np.ndarray

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The three arrays in their stored dtypes."""
        return (
            np.ascontiguousarray(self.target_ids, dtype=np.int32),
            np.ascontiguousarray(self.target_logprob, dtype=np.float32),
            np.ascontiguousarray(self.char_offsets, dtype=np.int32).reshape(-1, 2),
        )


def input_hash(input_ids: Sequence[int]) -> int:
    """A 64-bit hash of a sample's token ids, stored to catch data or tokenizer drift."""
    digest = hashlib.blake2b(np.asarray(input_ids, dtype=np.int64).tobytes(), digest_size=8)
    return int.from_bytes(digest.digest(), "little")


@dataclass
class EncodedSample:
    """A sample in its stored form, ready to be written into a shard."""

    sample_id: str
    input_hash: int
    ids: np.ndarray  # (n, R) uint8
    logprobs: np.ndarray  # (n, k) stored dtype
    log_tail: np.ndarray  # (n,) stored dtype
    checksum: int
    absent: tuple[np.ndarray, ...] = ()  # (n,) uint8 in a version-2 store, else none
    tokens: tuple[np.ndarray, ...] = ()  # target_ids, target_logprob, char_offsets, or none


def encode_sample(sample: SampleSignals, encoding: Encoding) -> EncodedSample:
    """Sort each token's entries by id, pack the ids, quantise, checksum."""
    ids = np.asarray(sample.ids, dtype=np.int64)
    n = ids.shape[0]
    if (
        ids.shape != (n, encoding.top_k)
        or np.shape(sample.logprobs) != ids.shape
        or np.shape(sample.log_tail) != (n,)
    ):
        raise ValueError(
            f"sample {sample.sample_id}: expected ids and logprobs of shape "
            f"(n, {encoding.top_k}) and log_tail (n,), got {ids.shape}, "
            f"{np.shape(sample.logprobs)}, {np.shape(sample.log_tail)}"
        )
    absent, values, log_tail = _absent_rows(sample, encoding)
    ids = np.where(absent[:, None], np.arange(encoding.top_k), ids)
    order = np.argsort(ids, axis=1, kind="stable")
    records = pack_ids(np.take_along_axis(ids, order, 1), encoding.vocab_size)
    logprobs = encode_logprobs(np.take_along_axis(values, order, 1), encoding.logprob_dtype)
    log_tail = encode_logprobs(log_tail, encoding.logprob_dtype)
    marks = (absent.astype(np.uint8),) if encoding.absent else ()
    tokens: tuple[np.ndarray, ...] = ()
    if encoding.teacher_tokens:
        if sample.tokens is None:
            raise ValueError(
                f"sample {sample.sample_id}: this store records the teacher's tokens, and the sample has none"
            )
        tokens = sample.tokens.arrays()
        if any(array.shape[0] != n for array in tokens):
            raise ValueError(
                f"sample {sample.sample_id}: teacher tokens for "
                f"{[a.shape[0] for a in tokens]} positions, expected {n}"
            )
    return EncodedSample(
        sample.sample_id,
        sample.input_hash,
        records,
        logprobs,
        log_tail,
        checksum(records, logprobs, log_tail, *marks, *tokens),
        marks,
        tokens,
    )


def _absent_rows(sample: SampleSignals, encoding: Encoding) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The absent mask (n,) and the log-probabilities (n, k) and tails (n,) to store: -inf
    (probability 0) throughout an absent row, whatever the source held there."""
    n = sample.num_tokens
    absent = np.zeros(n, dtype=bool) if sample.absent is None else np.asarray(sample.absent, bool)
    if absent.shape != (n,):
        raise ValueError(f"sample {sample.sample_id}: absent marks of shape {absent.shape}, expected ({n},)")
    if absent.any() and not encoding.absent:
        raise ValueError(
            f"sample {sample.sample_id}: {int(absent.sum())} positions are absent, "
            "and this store (format version 1) cannot mark them"
        )
    values = np.where(absent[:, None], -np.inf, np.asarray(sample.logprobs, dtype=np.float32))
    return absent, values, np.where(absent, -np.inf, np.asarray(sample.log_tail, np.float32))


def checksum(*arrays: np.ndarray) -> int:
    crc = 0
    for array in arrays:
        crc = zlib.crc32(np.ascontiguousarray(array).tobytes(), crc)
    return crc


def index_checksum(offsets: np.ndarray, hashes: np.ndarray, checksums: np.ndarray, sample_ids: str) -> int:
    return zlib.crc32(sample_ids.encode(), checksum(offsets, hashes, checksums))


def write_shard(path: Path, samples: list[EncodedSample], encoding: Encoding) -> int:
    """Write `samples` as one shard at `path`, atomically; return its size in bytes."""
    k = encoding.top_k
    lengths = [s.ids.shape[0] for s in samples]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    hashes = np.array([s.input_hash for s in samples], dtype=np.uint64)
    checksums = np.array([s.checksum for s in samples], dtype=np.uint32)
    sample_ids = json.dumps([s.sample_id for s in samples])
    tensors = {
        "ids": np.concatenate([s.ids for s in samples]).reshape(-1, encoding.record_bytes),
        "logprobs": np.concatenate([s.logprobs for s in samples]).reshape(-1, k),
        "log_tail": np.concatenate([s.log_tail for s in samples]),
        "offsets": offsets,
        "input_hash": hashes,
        "checksum": checksums,
    }
    if encoding.absent:
        tensors["absent"] = np.concatenate([s.absent[0] for s in samples])
    if encoding.teacher_tokens:
        for name, column in zip(TOKEN_TENSORS, zip(*(s.tokens for s in samples), strict=True), strict=True):
            tensors[name] = np.concatenate(column)
    metadata = {
        "format": FORMAT,
        "format_version": str(encoding.version),
        "sample_ids": sample_ids,
        "index_crc32": str(index_checksum(offsets, hashes, checksums, sample_ids)),
    }
    data = save(tensors, metadata=metadata)
    atomic_write_bytes(path, data)
    return len(data)
