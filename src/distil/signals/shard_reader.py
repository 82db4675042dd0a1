"""Reading one shard of a signal store back (the layout is in distil.signals.shard).

A shard is read with positioned reads of just the bytes a sample needs (no memory map,
nothing else held). Opening it checks the header, every tensor's dtype and shape against
the store's encoding, the file's length and the sample index's checksum; reading a sample
checks that sample's checksum. Any damage names the file and the way to recapture it.
"""

import json
import os
import struct
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from distil.signals.codec import LOGPROB_DTYPES, LogprobDtype, decode_logprobs, normalise, unpack_ids
from distil.signals.errors import StoreCorruptedError
from distil.signals.shard import (
    FORMAT,
    TOKEN_TENSORS,
    Encoding,
    SampleSignals,
    TeacherTokens,
    checksum,
    index_checksum,
)

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
        if str(index_checksum(self.offsets, self.hashes, self.checksums, listed)) != metadata.get(
            "index_crc32"
        ):
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
        if checksum(records, stored, tail, *marks, *tokens) != int(self.checksums[row]):
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
