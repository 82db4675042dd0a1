"""Write a signal store: samples are buffered and written a whole shard at a time.

    with SignalWriter(path, fingerprint, shard_tokens=262144) as writer:
        for sample in captured:
            if sample.sample_id not in writer:
                writer.add(sample)

A shard appears in one rename once complete, so a killed capture leaves only complete
shards (and perhaps a dot-named temporary file, removed on the next open). Opening an
existing store with the same fingerprint resumes it: `sample_id in writer` is true for
every sample it already holds, so a resumed capture skips them and no sample is stored
twice.
"""

from pathlib import Path
from typing import Any

from distil.signals.fingerprint import (
    FINGERPRINT_FILE,
    check_resumable,
    encoding_of,
    read_fingerprint,
    write_fingerprint,
)
from distil.signals.reader import SHARD_NAME, SignalStore, shard_paths
from distil.signals.shard import EncodedSample, SampleSignals, encode_sample, write_shard


class SignalWriter:
    """Adds samples to a store, one shard per `shard_tokens` tokens (see the module docstring)."""

    def __init__(self, path: str | Path, fingerprint: dict[str, Any], shard_tokens: int) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        for leftover in self.path.glob(".shard-*.tmp"):
            leftover.unlink(missing_ok=True)
        if (self.path / FINGERPRINT_FILE).is_file():
            check_resumable(self.path, read_fingerprint(self.path), fingerprint)
        else:
            write_fingerprint(self.path, fingerprint)
        self.encoding = encoding_of(fingerprint)
        self.shard_tokens = shard_tokens
        with SignalStore(self.path) as existing:
            self._done = set(existing.sample_ids())
            self.resumed_samples = len(existing)
        shards = shard_paths(self.path)
        self._next_shard = int(SHARD_NAME.match(shards[-1].name).group(1)) + 1 if shards else 0
        self._buffer: list[EncodedSample] = []
        self._buffered_tokens = 0
        self.bytes_written = 0

    def __contains__(self, sample_id: object) -> bool:
        return sample_id in self._done

    def add(self, sample: SampleSignals) -> None:
        """Queue one sample; a shard is written whenever `shard_tokens` tokens are queued."""
        if sample.sample_id in self._done:
            raise ValueError(f"sample {sample.sample_id!r} is already in {self.path}")
        self._buffer.append(encode_sample(sample, self.encoding))
        self._done.add(sample.sample_id)
        self._buffered_tokens += sample.num_tokens
        if self._buffered_tokens >= self.shard_tokens:
            self.flush()

    def flush(self) -> None:
        """Write the queued samples as one shard (nothing when none are queued)."""
        if not self._buffer:
            return
        path = self.path / f"shard-{self._next_shard:06d}.safetensors"
        self.bytes_written += write_shard(path, self._buffer, self.encoding)
        self._next_shard += 1
        self._buffer, self._buffered_tokens = [], 0

    def __enter__(self) -> "SignalWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()  # queued samples are complete: keep them, also when stopped early
