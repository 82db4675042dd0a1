"""Read a signal store lazily: stream it shard by shard, or fetch any sample by its id.

    with SignalStore("runs/demo/signals") as store:
        sample = store.get("row-17")          # SampleSignals, checksum-verified
        for sample in store:                  # every sample, one shard open at a time
            ...

Memory does not grow with the store's token count: opening reads only shard headers and
indexes, keeping 16 bytes per sample (a 64-bit hash of its id, its shard and row); a
sample's signals are read from disk when asked for, and at most `max_open_shards` shards
(their file handle and index) are held at once. `num_tokens` and `num_absent` count the
store's positions and those of them marked absent (format version 2).
"""

import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from distil.signals.errors import SignalsError
from distil.signals.fingerprint import encoding_of, read_fingerprint
from distil.signals.shard import SHARD_GLOB, SampleSignals
from distil.signals.shard_reader import ShardReader

SHARD_NAME = re.compile(r"^shard-(\d+)\.safetensors$")


def sample_key(sample_id: str) -> int:
    """64-bit key of a sample id in the store's index."""
    return int.from_bytes(hashlib.blake2b(sample_id.encode(), digest_size=8).digest(), "little")


def shard_paths(store: Path) -> list[Path]:
    """The store's complete shards, in number order (temporary files are not shards)."""
    return sorted(
        (p for p in store.glob(SHARD_GLOB) if SHARD_NAME.match(p.name)),
        key=lambda p: int(SHARD_NAME.match(p.name).group(1)),
    )


class SignalStore:
    """A signal store opened for reading (see the module docstring)."""

    def __init__(self, path: str | Path, max_open_shards: int = 16) -> None:
        self.path = Path(path)
        self.fingerprint: dict[str, Any] = read_fingerprint(self.path)
        self.encoding = encoding_of(self.fingerprint)
        self.shards = shard_paths(self.path)
        self.max_open_shards = max(1, max_open_shards)
        self._open: OrderedDict[int, ShardReader] = OrderedDict()
        self._build_index()

    def _build_index(self) -> None:
        keys, shard_numbers, rows = [], [], []
        self.num_tokens = self.num_absent = 0
        for number in range(len(self.shards)):
            reader = self._reader(number)
            keys.append(np.array([sample_key(s) for s in reader.sample_ids], dtype=np.uint64))
            shard_numbers.append(np.full(len(reader), number, dtype=np.int32))
            rows.append(np.arange(len(reader), dtype=np.int32))
            self.num_tokens += reader.num_tokens
            self.num_absent += reader.count_absent()  # positions without a teacher distribution
        key = np.concatenate(keys) if keys else np.zeros(0, dtype=np.uint64)
        order = np.argsort(key, kind="stable")
        self._keys = key[order]
        self._shard = np.concatenate(shard_numbers)[order] if keys else np.zeros(0, np.int32)
        self._row = np.concatenate(rows)[order] if keys else np.zeros(0, np.int32)
        self._check_unique()

    def _check_unique(self) -> None:
        """Two shards holding one sample mean two captures wrote here at once: refuse."""
        repeated = np.nonzero(self._keys[1:] == self._keys[:-1])[0]
        for i in repeated:
            first, second = (self._locate_at(j) for j in (i, i + 1))
            if first[2] == second[2]:
                raise SignalsError(
                    f"sample {first[2]!r} is stored twice, in {self.shards[first[0]]} and "
                    f"{self.shards[second[0]]}; delete one of the two shards (captures must not "
                    "run at the same time into one store)"
                )

    def _locate_at(self, position: int) -> tuple[int, int, str]:
        shard, row = int(self._shard[position]), int(self._row[position])
        return shard, row, self._reader(shard).sample_ids[row]

    def _reader(self, number: int) -> ShardReader:
        reader = self._open.pop(number, None)
        if reader is None:
            reader = ShardReader(self.shards[number], self.encoding)
            while len(self._open) >= self.max_open_shards:
                self._open.popitem(last=False)[1].close()
        self._open[number] = reader
        return reader

    def _find(self, sample_id: str) -> tuple[int, int] | None:
        key = np.uint64(sample_key(sample_id))
        position = int(np.searchsorted(self._keys, key))
        while position < len(self._keys) and self._keys[position] == key:
            shard, row, found = self._locate_at(position)
            if found == sample_id:
                return shard, row
            position += 1  # another id with the same 64-bit key
        return None

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, sample_id: object) -> bool:
        return isinstance(sample_id, str) and self._find(sample_id) is not None

    def get(self, sample_id: str) -> SampleSignals:
        """The signals of one sample; KeyError when the store does not hold it."""
        found = self._find(sample_id)
        if found is None:
            raise KeyError(sample_id)
        return self._reader(found[0]).read(found[1])

    def sample_ids(self) -> Iterator[str]:
        """Every sample id, shard by shard."""
        for number in range(len(self.shards)):
            yield from self._reader(number).sample_ids

    def __iter__(self) -> Iterator[SampleSignals]:
        for number in range(len(self.shards)):
            for row in range(len(self._reader(number))):
                yield self._reader(number).read(row)  # the shard may have been closed meanwhile

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()

    def __enter__(self) -> "SignalStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
