"""The teacher-signal store: a teacher's top-k distributions captured once, read many times.

A store is a folder of safetensors shards keyed by sample id plus a fingerprint file; the
format is documented in docs/signals-format.md.

    with SignalWriter(path, fingerprint, shard_tokens=262144) as writer:   # capture side
        writer.add(SampleSignals(sample_id, input_hash(ids), top_ids, logprobs, log_tail))
    with SignalStore(path) as store:                                        # training side
        sample = store.get(sample_id)

`distil capture` (distil.capture) fills a store from a teacher; training with a recipe's
`signals:` section reads one instead of running the teacher.
"""

from distil.signals.codec import bytes_per_token
from distil.signals.errors import FingerprintMismatchError, SignalsError, StoreCorruptedError
from distil.signals.fingerprint import (
    FINGERPRINT_FILE,
    build_fingerprint,
    differences,
    read_fingerprint,
    recipe_identity,
)
from distil.signals.reader import SignalStore
from distil.signals.shard import Encoding, SampleSignals, input_hash
from distil.signals.writer import SignalWriter

__all__ = [
    "FINGERPRINT_FILE",
    "Encoding",
    "FingerprintMismatchError",
    "SampleSignals",
    "SignalStore",
    "SignalWriter",
    "SignalsError",
    "StoreCorruptedError",
    "build_fingerprint",
    "bytes_per_token",
    "differences",
    "input_hash",
    "read_fingerprint",
    "recipe_identity",
]
