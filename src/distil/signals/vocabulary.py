"""The teacher's vocabulary beside a store of its own tokens (teacher_vocabulary.json).

A store captured for a student of another tokenizer (fingerprint `teacher_tokens: true`)
holds ids of the teacher's vocabulary; training maps them to the student's by their strings
(distil.align.vocabulary_map), so the strings travel with the store:

    {"tokens": ["<|pad|>", "<|end|>", ...], "specials": [...], "eos_token_id": 1,
     "spelling": "byte_level"}
"""

import json
from pathlib import Path
from typing import Any

from distil.align import Vocabulary
from distil.fsutil import atomic_write_json
from distil.signals.errors import SignalsError, StoreCorruptedError

VOCABULARY_FILE = "teacher_vocabulary.json"


def write_teacher_vocabulary(store: Path, tokenizer: Any) -> None:
    """Write the tokenizer's vocabulary into `store`; refuse a store that holds another one."""
    vocabulary = Vocabulary.of(tokenizer).to_json()
    path = store / VOCABULARY_FILE
    if path.is_file() and json.loads(path.read_text(encoding="utf-8")) != vocabulary:
        raise SignalsError(f"{store} holds another teacher vocabulary; set capture.output to a "
                           "new folder, or delete that store to capture it again")
    store.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, vocabulary)


def read_teacher_vocabulary(store: Path) -> Vocabulary:
    """The vocabulary written beside `store`'s shards."""
    path = store / VOCABULARY_FILE
    if not path.is_file():
        raise SignalsError(f"{store} has no {VOCABULARY_FILE}: it was not captured on the "
                           "teacher's own tokens; capture it again with cross_tokenizer.method set")
    try:
        return Vocabulary.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise StoreCorruptedError(f"{path} is damaged ({err}); delete the store {store} and "
                                  "capture it again") from None
