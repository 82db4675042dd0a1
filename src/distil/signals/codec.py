"""Compact per-token encodings of a teacher's top-k: packed ids, quantised log-probabilities.

Ids. A token's k distinct ids, sorted ascending, are Elias-Fano coded into a fixed-size
record of `id_record_bytes(V, k)` bytes (lossless). With l = floor(log2(V / k)) low bits:
the l low bits of every id are stored as they are, and the high parts (id >> l) as a
unary bit array in which id number i sets bit (id_i >> l) + i. That is
k * l + k + ((V - 1) >> l) + 1 bits, about k * (2 + log2(V / k)) bits: 57 bytes for k = 32
of V = 151936, against 128 as int32. Records are fixed-size, so any token range of a shard
is a plain slice, and decoding is a few vectorised numpy operations.

Log-probabilities (in the same ascending-id order):
- float32: exact, 4 bytes;
- float16: 2 bytes; log p keeps 11 significant bits, so the relative error of p is
  below 0.2 % wherever p > e^-8 (about 3e-4);
- uint8: 1 byte, q = round(255 * p^(1/4)), at least 1 where p > 0, decoded as
  p = (q / 255)^4. Fourth-root companding spends the levels where they matter: the
  absolute error of p is at most 0.008 (at p = 1, less below), the relative error at
  most (1 + 0.5 / (255 p^(1/4)))^4 - 1 (2.5 % at p = 0.01, 8 % at 1e-4, 27 % at 1e-6),
  and no stored entry rounds to zero probability (the smallest level is 2.4e-10).

The log tail mass is stored in the same encoding as the log-probabilities: as a log, so a
tiny tail keeps its size instead of rounding to zero (uint8's smallest level, 2.4e-10,
stands for any smaller nonzero tail).
"""

from typing import Literal

import numpy as np

LogprobDtype = Literal["float32", "float16", "uint8"]
LOGPROB_DTYPES: dict[str, type[np.generic]] = {
    "float32": np.float32,
    "float16": np.float16,
    "uint8": np.uint8,
}
_LEVELS = 255.0


def low_bits(vocab_size: int, k: int) -> int:
    """l = floor(log2(V / k)), the Elias-Fano split of an id into stored and unary bits."""
    return max(0, (vocab_size // k).bit_length() - 1)


def id_record_bits(vocab_size: int, k: int) -> int:
    """Bits of one token's packed ids: k low parts of l bits and the unary high parts."""
    bits = low_bits(vocab_size, k)
    return k * bits + k + ((vocab_size - 1) >> bits) + 1


def id_record_bytes(vocab_size: int, k: int) -> int:
    """Bytes of one token's packed ids (`id_record_bits` rounded up to whole bytes)."""
    return (id_record_bits(vocab_size, k) + 7) // 8


def pack_ids(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """Elias-Fano records of ascending, distinct ids. (n, k) ints in [0, V) -> (n, R) uint8."""
    n, k = ids.shape
    bits = low_bits(vocab_size, k)
    ids = ids.astype(np.int64)
    if n and (ids.min() < 0 or ids.max() >= vocab_size or (np.diff(ids, axis=1) <= 0).any()):
        raise ValueError(f"ids must be distinct, ascending per row and in [0, {vocab_size})")
    plane = np.zeros((n, id_record_bits(vocab_size, k)), dtype=np.uint8)
    if bits:
        low = (ids[:, :, None] >> np.arange(bits)) & 1  # (n, k, l), least significant first
        plane[:, : k * bits] = low.reshape(n, k * bits)
    plane[np.arange(n)[:, None], k * bits + (ids >> bits) + np.arange(k)] = 1
    return np.packbits(plane, axis=1, bitorder="little")


def unpack_ids(records: np.ndarray, vocab_size: int, k: int) -> np.ndarray:
    """Inverse of `pack_ids`. (n, R) uint8 -> (n, k) int64, ascending per row."""
    n = records.shape[0]
    bits = low_bits(vocab_size, k)
    plane = np.unpackbits(records, axis=1, count=id_record_bits(vocab_size, k), bitorder="little")
    rows, columns = np.nonzero(plane[:, k * bits :])
    if columns.size != n * k or (np.bincount(rows, minlength=n) != k).any():
        raise ValueError("malformed id record: a token does not hold exactly k ids")
    high = columns.reshape(n, k) - np.arange(k)
    low = np.zeros((n, k), dtype=np.int64)
    if bits:
        low = (plane[:, : k * bits].reshape(n, k, bits).astype(np.int64) << np.arange(bits)).sum(axis=-1)
    return (high << bits) | low


def encode_logprobs(logprobs: np.ndarray, dtype: LogprobDtype) -> np.ndarray:
    """Log-probabilities (any shape, float) in the stored dtype."""
    if dtype == "uint8":
        with np.errstate(over="ignore", invalid="ignore"):
            root = np.exp(logprobs.astype(np.float64) / 4)  # p^(1/4)
        levels = np.clip(np.rint(root * _LEVELS), 1, _LEVELS)
        return np.where(root > 0, levels, 0).astype(np.uint8)
    return logprobs.astype(LOGPROB_DTYPES[dtype])


def decode_logprobs(stored: np.ndarray, dtype: LogprobDtype) -> np.ndarray:
    """Stored log-probabilities back to float32 (-inf for zero probability)."""
    if dtype == "uint8":
        with np.errstate(divide="ignore"):
            return (4 * (np.log(stored.astype(np.float32)) - np.log(np.float32(_LEVELS)))).astype(np.float32)
    return stored.astype(np.float32)


def bytes_per_token(vocab_size: int, k: int, dtype: LogprobDtype) -> int:
    """Stored bytes of one token's signal: packed ids, k log-probabilities, the log tail."""
    return id_record_bytes(vocab_size, k) + (k + 1) * np.dtype(LOGPROB_DTYPES[dtype]).itemsize


def normalise(logprobs: np.ndarray, log_tail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shift each token's log-probabilities and log tail so that they sum to one in probability.

    (n, k), (n,) -> (n, k), (n,). Undoes the drift quantisation leaves (and is a no-op up
    to rounding for exact values).
    """
    log_total = np.logaddexp(np.logaddexp.reduce(logprobs, axis=1), log_tail)  # (n,)
    return ((logprobs - log_total[:, None]).astype(np.float32), (log_tail - log_total).astype(np.float32))
