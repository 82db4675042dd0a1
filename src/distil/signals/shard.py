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
place, so a shard on disk is always complete. They are read with positioned reads of just
the bytes a sample needs (no memory map, nothing else held); the header, the index and
every sample's checksum are verified, and any damage names the file.
"""

import hashlib
import json
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from safetensors.numpy import save

from distil.fsutil import atomic_write_bytes
from distil.signals.codec import (
    LOGPROB_DTYPES,
    LogprobDtype,
    decode_logprobs,
    encode_logprobs,
    id_record_bytes,
    normalise,
    pack_ids,
    unpack_ids,
)
from distil.signals.errors import StoreCorruptedError

FORMAT = "distil-signals"
FORMAT_VERSION = 2
"""The newest version, written by a capture whose source may lack positions; version 1 (no
`absent` tensor: every position present) is written otherwise, and read as before."""
VERSIONS = (1, 2)
SHARD_GLOB = "shard-*.safetensors"
_DTYPES = {
    "U8": np.uint8,
    "U32": np.uint32,
    "U64": np.uint64,
    "I32": np.int32,
    "I64": np.int64,
    "F16": np.float16,
    "F32": np.float32,
}
_MAX_HEADER = 1 << 30
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
        _crc(records, logprobs, log_tail, *marks, *tokens),
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


def _crc(*arrays: np.ndarray) -> int:
    crc = 0
    for array in arrays:
        crc = zlib.crc32(np.ascontiguousarray(array).tobytes(), crc)
    return crc


def _index_crc(offsets: np.ndarray, hashes: np.ndarray, checksums: np.ndarray, sample_ids: str) -> int:
    return zlib.crc32(sample_ids.encode(), _crc(offsets, hashes, checksums))


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
        "index_crc32": str(_index_crc(offsets, hashes, checksums, sample_ids)),
    }
    data = save(tensors, metadata=metadata)
    atomic_write_bytes(path, data)
    return len(data)


class ShardReader:
    """An open shard: its index in memory, samples read on demand with positioned reads."""

    def __init__(self, path: Path, encoding: Encoding) -> None:
        self.path, self.encoding = path, encoding
        self._fd = os.open(path, os.O_RDONLY)
        try:
            self._open()
        except BaseException:
            os.close(self._fd)
            raise

    def _open(self) -> None:
        header, self._data_start = _read_header(self._fd, self.path)
        metadata = header.pop("__metadata__", None)
        if not isinstance(metadata, dict):
            self._damaged("its header has no metadata")
        if metadata.get("format") != FORMAT:
            self._damaged("it is not a distil-signals shard (no format marker)")
        if metadata.get("format_version") != str(self.encoding.version):
            self._damaged(
                f"format version {metadata.get('format_version')} is not the store's {self.encoding.version}"
            )
        self._tensors = self._check_tensors(header)
        self.offsets = self._read_all("offsets")
        self.hashes = self._read_all("input_hash")
        self.checksums = self._read_all("checksum")
        listed = metadata.get("sample_ids", "")
        if str(_index_crc(self.offsets, self.hashes, self.checksums, listed)) != metadata.get("index_crc32"):
            self._damaged("its sample index fails its checksum")
        self.sample_ids = json.loads(listed)
        tokens = self._tensors["log_tail"][1][0]
        if (
            len(self.sample_ids) + 1 != len(self.offsets)
            or self.offsets[0] != 0
            or self.offsets[-1] != tokens
            or (np.diff(self.offsets) < 0).any()
        ):
            self._damaged("its sample offsets do not match its token count")

    def _check_tensors(self, header: dict[str, Any]) -> dict[str, tuple[Any, list[int], int]]:
        """name -> (numpy dtype, shape, absolute byte offset), after checking every shape."""
        enc = self.encoding
        expected = {
            "ids": np.uint8,
            "logprobs": LOGPROB_DTYPES[enc.logprob_dtype],
            "log_tail": LOGPROB_DTYPES[enc.logprob_dtype],
            "offsets": np.int64,
            "input_hash": np.uint64,
            "checksum": np.uint32,
        }
        if enc.teacher_tokens:
            expected.update({"target_ids": np.int32, "target_logprob": np.float32, "char_offsets": np.int32})
        if enc.absent:
            expected["absent"] = np.uint8
        if set(header) != set(expected):
            self._damaged(f"it holds tensors {sorted(header)}, not {sorted(expected)}")
        found, end = {}, 0
        for name, spec in header.items():
            try:
                dtype, shape = _DTYPES.get(spec["dtype"]), [int(d) for d in spec["shape"]]
                begin, stop = (int(x) for x in spec["data_offsets"])
            except (KeyError, TypeError, ValueError):
                self._damaged(f"the header entry of tensor {name} is malformed")
            if dtype is not expected[name] or int(np.prod(shape)) * np.dtype(dtype).itemsize != stop - begin:
                self._damaged(
                    f"tensor {name} has dtype {spec['dtype']} and shape {shape}, "
                    "which do not fit the store's encoding"
                )
            found[name] = (dtype, shape, self._data_start + begin)
            end = max(end, stop)
        tokens, samples = found["log_tail"][1][0], found["checksum"][1][0]
        if (
            found["ids"][1] != [tokens, enc.record_bytes]
            or found["logprobs"][1] != [tokens, enc.top_k]
            or found["offsets"][1] != [samples + 1]
            or found["input_hash"][1] != [samples]
            or (enc.absent and found["absent"][1] != [tokens])
            or (
                enc.teacher_tokens
                and (
                    found["target_ids"][1] != [tokens]
                    or found["target_logprob"][1] != [tokens]
                    or found["char_offsets"][1] != [tokens, 2]
                )
            )
        ):
            self._damaged("its tensor shapes disagree with each other or with the store's k")
        size = os.fstat(self._fd).st_size
        if size != self._data_start + end:
            what = "truncated" if size < self._data_start + end else "longer than its header says"
            self._damaged(f"it is {what} ({size} bytes, expected {self._data_start + end})")
        return found

    def _read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        dtype, shape, offset = self._tensors[name]
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
        count = (stop - start) * row_bytes
        raw = os.pread(self._fd, count, offset + start * row_bytes)
        if len(raw) != count:
            self._damaged(f"it ended while reading {name}")
        return np.frombuffer(raw, dtype=dtype).reshape(stop - start, *shape[1:])

    def _read_all(self, name: str) -> np.ndarray:
        return self._read_rows(name, 0, self._tensors[name][1][0])

    def __len__(self) -> int:
        return len(self.sample_ids)

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    def read(self, row: int) -> SampleSignals:
        """Sample number `row` of this shard, checksum-verified and decoded."""
        start, stop = int(self.offsets[row]), int(self.offsets[row + 1])
        records = self._read_rows("ids", start, stop)
        stored = self._read_rows("logprobs", start, stop)
        tail = self._read_rows("log_tail", start, stop)
        enc = self.encoding
        marks = (self._read_rows("absent", start, stop),) if enc.absent else ()
        tokens = tuple(self._read_rows(name, start, stop) for name in TOKEN_TENSORS if enc.teacher_tokens)
        sample_id = self.sample_ids[row]
        if _crc(records, stored, tail, *marks, *tokens) != int(self.checksums[row]):
            self._damaged(f"sample {sample_id!r} fails its checksum")
        absent = marks[0].astype(bool) if marks and marks[0].any() else None
        logprobs, log_tail = _decoded(stored, tail, enc.logprob_dtype, absent)
        return SampleSignals(
            sample_id,
            int(self.hashes[row]),
            unpack_ids(records, enc.vocab_size, enc.top_k),
            logprobs,
            log_tail,
            TeacherTokens(*tokens) if tokens else None,
            absent,
        )

    def count_absent(self) -> int:
        """Positions of this shard marked absent (0 in a version-1 store)."""
        return int(np.count_nonzero(self._read_all("absent"))) if self.encoding.absent else 0

    def close(self) -> None:
        os.close(self._fd)

    def _damaged(self, problem: str) -> NoReturn:
        raise StoreCorruptedError(
            f"signal shard {self.path} is damaged: {problem}; delete it "
            "and rerun `distil capture` to recapture its samples"
        )


def _decoded(
    stored: np.ndarray, tail: np.ndarray, dtype: LogprobDtype, absent: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Decoded, renormalised log-probabilities (n, k) and tails (n,); an absent row stays at
    probability 0 (-inf) throughout, never renormalised into a distribution."""
    logprobs, log_tail = decode_logprobs(stored, dtype), decode_logprobs(tail, dtype)
    if absent is None:
        return normalise(logprobs, log_tail)
    present = ~absent
    logprobs[present], log_tail[present] = normalise(logprobs[present], log_tail[present])
    return logprobs, log_tail


def _read_header(fd: int, path: Path) -> tuple[dict[str, Any], int]:
    raw = os.pread(fd, 8, 0)
    problem = None
    if len(raw) < 8:
        problem = "it is truncated (shorter than a safetensors header)"
    else:
        (length,) = struct.unpack("<Q", raw)
        text = os.pread(fd, length, 8) if length <= _MAX_HEADER else b""
        if length > _MAX_HEADER or len(text) != length:
            problem = "it is truncated or its header length is invalid"
        else:
            try:
                header = json.loads(text)
                if isinstance(header, dict):
                    return header, 8 + length
                problem = "its header is not a JSON object"
            except (json.JSONDecodeError, UnicodeDecodeError):
                problem = "its header is not valid JSON"
    raise StoreCorruptedError(
        f"signal shard {path} is damaged: {problem}; delete it and "
        "rerun `distil capture` to recapture its samples"
    )
