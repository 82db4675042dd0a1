"""The teacher's vocabulary beside a store of its own tokens (teacher_vocabulary.json).

A store captured for a student of another tokenizer (fingerprint `teacher_tokens: true`)
holds ids of the teacher's vocabulary; training maps them to the student's by their strings
(distil.align.vocabulary_map), so the strings travel with the store:

    {"tokens": ["<|pad|>", "<|end|>", ...], "specials": [...], "eos_token_id": 1,
     "spelling": "byte_level"}

A store captured through an API knows no ids, only the token strings the API returned
(" 4", "<|end|>"): its vocabulary is those strings (`TokenStrings`, spelling `text`), each
given the next id the first time it is seen, the end-of-turn token first.
"""

import json
from pathlib import Path
from typing import Any

from distil.align import Vocabulary
from distil.align.vocab import Spelling
from distil.fsutil import atomic_write_json
from distil.signals.errors import SignalsError, StoreCorruptedError

VOCABULARY_FILE = "teacher_vocabulary.json"
TOKEN_STRINGS = 1 << 18
"""Most distinct token strings a store of strings can name (ids 0 .. 2^18 - 1): as many as
the largest vocabularies in use have tokens (262,144)."""


def write_teacher_vocabulary(store: Path, tokenizer: Any) -> None:
    """Write the tokenizer's vocabulary into `store`; refuse a store that holds another one."""
    vocabulary = Vocabulary.of(tokenizer).to_json()
    path = store / VOCABULARY_FILE
    if path.is_file() and json.loads(path.read_text(encoding="utf-8")) != vocabulary:
        raise SignalsError(
            f"{store} holds another teacher vocabulary; set capture.output to a "
            "new folder, or delete that store to capture it again"
        )
    store.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, vocabulary)


def read_teacher_vocabulary(store: Path) -> Vocabulary:
    """The vocabulary written beside `store`'s shards."""
    path = store / VOCABULARY_FILE
    if not path.is_file():
        raise SignalsError(
            f"{store} has no {VOCABULARY_FILE}: it was not captured on the "
            "teacher's own tokens; capture it again with cross_tokenizer.method set"
        )
    try:
        return Vocabulary.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise StoreCorruptedError(
            f"{path} is damaged ({err}); delete the store {store} and capture it again"
        ) from None


class TokenStrings:
    """The teacher vocabulary of a store captured through an API: an id per token string.

    Ids are given in the order strings are first seen (the end-of-turn token, when known,
    is 0) and never change: reopening a store continues its list. `save` writes the list
    before the shards that use its new ids are written, so a store never holds an id its
    vocabulary file lacks.
    """

    spelling: Spelling = "text"

    def __init__(self, store: Path, end_of_turn: str | None) -> None:
        self.store, self.end_of_turn = store, end_of_turn
        self.tokens: dict[str, int] = {} if end_of_turn is None else {end_of_turn: 0}
        self._saved = 0
        if (store / VOCABULARY_FILE).is_file():
            stored = read_teacher_vocabulary(store)
            if not self._continues(stored):
                raise SignalsError(
                    f"{store} holds another teacher vocabulary; set capture.output "
                    "to a new folder, or delete that store to capture it again"
                )
            self.tokens = dict(stored.tokens)
            self._saved = len(self.tokens)

    def _continues(self, stored: Vocabulary) -> bool:
        """Whether `stored` is a list of strings this one can go on from."""
        wanted = self.vocabulary()
        ids = sorted(stored.tokens.values())
        return (
            stored.spelling == self.spelling
            and stored.specials == wanted.specials
            and stored.eos_token_id == wanted.eos_token_id
            and ids == list(range(len(ids)))
            and all(stored.tokens.get(token) == i for token, i in self.tokens.items())
        )

    def id_of(self, token: str) -> int:
        """The id of `token`, a new one the first time it is seen."""
        found = self.tokens.get(token)
        if found is None:
            if len(self.tokens) >= TOKEN_STRINGS:
                raise SignalsError(
                    f"the teacher returned more than {TOKEN_STRINGS:,} distinct token "
                    f"strings into {self.store}, more than any vocabulary holds; "
                    "check that teacher.api serves one model"
                )
            found = self.tokens[token] = len(self.tokens)
        return found

    def vocabulary(self) -> Vocabulary:
        """The strings seen so far as a `Vocabulary` (what training maps to the student's)."""
        specials = frozenset() if self.end_of_turn is None else frozenset({self.end_of_turn})
        eos = None if self.end_of_turn is None else self.tokens[self.end_of_turn]
        return Vocabulary(dict(self.tokens), specials, eos, self.spelling)

    def save(self) -> None:
        """Write the strings beside the shards, when new ones were seen since the last save."""
        if len(self.tokens) > self._saved:
            self.store.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.store / VOCABULARY_FILE, self.vocabulary().to_json())
            self._saved = len(self.tokens)
