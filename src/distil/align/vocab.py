"""The map between two vocabularies: each teacher token whose string the student also has.

Tokenizers write the same text differently: byte-level BPE (GPT-2, Llama 3, Qwen) spells
each byte as a printable character, a space as 'Ġ'; sentencepiece (Llama 2, Gemma, T5)
writes a space as '▁' and unknown bytes as '<0xNN>'. A token is matched in two passes:

1. exact: the same string in both vocabularies, when both use the same spelling;
2. normalised: the same bytes of text once each token is decoded from its own spelling
   (`token_bytes`), for the tokens the first pass left.

A vocabulary of decoded text (`text`: the token strings an API returns, " 4" where
byte-level BPE writes "Ġ4", kept by a store captured through an API) meets any spelling in
the second pass; a string holding U+FFFD (a piece of a character the API could not show)
stands for unknown bytes and maps to nothing, and a string that reads as one of the
student's special tokens is that token. Special tokens match by string, and the
end-of-sequence tokens always match each other.
The map is one-to-one: a student token is the image of at most one teacher token (the
exact match first, then the lowest teacher id), so the mapped probabilities of one side
never add up onto one token of the other.
"""

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import torch
from torch import Tensor

Spelling = Literal["byte_level", "sentencepiece", "plain", "text"]
"""How a vocabulary writes its tokens; `text` is decoded text (an API's token strings)."""


@lru_cache(maxsize=1)
def _byte_level_alphabet() -> dict[str, int]:
    """The printable character byte-level BPE writes for each byte -> that byte."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


def spelling(tokenizer: Any) -> Spelling:
    """How a tokenizer spells its tokens, read from its decoder (or its vocabulary)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        decoder = json.dumps(json.loads(backend.to_str()).get("decoder"))
        if "ByteLevel" in decoder:
            return "byte_level"
        if "Metaspace" in decoder or "\u2581" in decoder:
            return "sentencepiece"
    return "sentencepiece" if any("\u2581" in t for t in tokenizer.get_vocab()) else "plain"


def token_bytes(token: str, how: Spelling) -> bytes | None:
    """The text bytes a token stands for, decoded from its tokenizer's spelling; None when
    they are unknown (decoded text showing U+FFFD for a piece of a character)."""
    if how == "text":
        return None if "\ufffd" in token else token.encode()
    if how == "byte_level":
        alphabet = _byte_level_alphabet()
        if all(ch in alphabet for ch in token):
            return bytes(alphabet[ch] for ch in token)
    elif how == "sentencepiece":
        if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
            try:
                return bytes([int(token[3:5], 16)])
            except ValueError:
                pass
        return token.replace("\u2581", " ").encode()
    return token.encode()


@dataclass(frozen=True)
class Vocabulary:
    """What the map needs of a tokenizer: token -> id, its special tokens, its end-of-sequence
    id and its spelling. Built from a tokenizer (`of`), or read back from a signal store."""

    tokens: dict[str, int]
    specials: frozenset[str]
    eos_token_id: int | None
    spelling: Spelling

    @classmethod
    def of(cls, tokenizer: Any) -> "Vocabulary":
        if isinstance(tokenizer, Vocabulary):
            return tokenizer
        return cls(
            dict(tokenizer.get_vocab()),
            frozenset(getattr(tokenizer, "all_special_tokens", [])),
            tokenizer.eos_token_id,
            spelling(tokenizer),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form: tokens listed by id (None for unused ids)."""
        listed: list[str | None] = [None] * (max(self.tokens.values()) + 1)
        for token, i in self.tokens.items():
            listed[i] = token
        return {
            "tokens": listed,
            "specials": sorted(self.specials),
            "eos_token_id": self.eos_token_id,
            "spelling": self.spelling,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Vocabulary":
        tokens = {token: i for i, token in enumerate(data["tokens"]) if token is not None}
        return cls(tokens, frozenset(data["specials"]), data["eos_token_id"], data["spelling"])


@dataclass(frozen=True)
class VocabularyMap:
    """teacher_to_student (V_t,) int64: the student id of each teacher id, -1 where none."""

    teacher_to_student: Tensor
    exact: int
    """Teacher tokens matched by their string."""
    normalised: int
    """Teacher tokens matched only after decoding both spellings."""

    @property
    def mapped(self) -> int:
        return self.exact + self.normalised


def vocabulary_map(teacher: Any, student: Any, teacher_width: int | None = None) -> VocabularyMap:
    """Map the teacher tokenizer's tokens onto the student's (module docstring).

    Each side is a tokenizer or a `Vocabulary`. `teacher_width` is the teacher's logit width
    (its head may have more rows than its tokenizer has tokens; those rows map to nothing).
    """
    teacher, student = Vocabulary.of(teacher), Vocabulary.of(student)
    teacher_vocab, student_vocab = teacher.tokens, student.tokens
    width = max(teacher_width or 0, max(teacher_vocab.values()) + 1)
    mapping = torch.full((width,), -1, dtype=torch.long)
    taken: set[int] = set()

    def match(teacher_id: int, student_id: int | None) -> bool:
        if student_id is None or student_id in taken or mapping[teacher_id] >= 0:
            return False
        mapping[teacher_id] = student_id
        taken.add(student_id)
        return True

    exact = 0
    if teacher.eos_token_id is not None and student.eos_token_id is not None:
        exact += match(teacher.eos_token_id, student.eos_token_id)
    ordered = sorted(teacher_vocab.items(), key=lambda item: item[1])
    exact += sum(
        match(i, student_vocab.get(token)) for token, i in ordered if _same_string(token, teacher, student)
    )
    by_bytes: dict[bytes, int] = {}
    for token, i in sorted(student_vocab.items(), key=lambda item: item[1]):
        text = token_bytes(token, student.spelling)
        if token not in student.specials and text is not None:
            by_bytes.setdefault(text, i)
    normalised = sum(
        match(i, by_bytes.get(text))
        for token, i in ordered
        if token not in teacher.specials and (text := token_bytes(token, teacher.spelling)) is not None
    )
    return VocabularyMap(mapping, exact, normalised)


def _same_string(token: str, teacher: Vocabulary, student: Vocabulary) -> bool:
    """Whether the teacher's `token` may match the student's token of the same string: both
    spell alike, it is a teacher special token, or decoded text reading as a student special
    token (an API writes a special token as its own text)."""
    return (
        teacher.spelling == student.spelling
        or token in teacher.specials
        or (teacher.spelling == "text" and token in student.specials)
    )
