"""Reading a short answer out of a free-text response, for graders of chatty models.

An instruct model answers "What is the plural of mouse?" with "The plural of mouse is mice."
rather than "mice". These functions find which candidate answers a response *names*: whole
words, case- and accent-insensitive, punctuation and hyphens ignored ("twenty-one" and
"Twenty one" are the same words). A grader built on them accepts a response that names the
right answer and no wrong one, so a response listing several candidates fails.

    named("The plural of mouse is mice.", ["mice", "mouses", "mouse"])  # ['mouse', 'mice']
    numbers("Seventy-six is 76, not 67.")                               # ['76', '67']
"""

import functools
import re
import unicodedata
from collections.abc import Iterable

_WORD = re.compile(r"[a-z0-9]+")
_IN_WORD_APOSTROPHE = re.compile(r"(?<=[a-z])['’](?=[a-z])")
"""An apostrophe between letters joins them ("it's" is one word, not "it" and "s"); one
beside a space or punctuation is a quote ("'G'" is the word "g")."""


def words(text: str) -> list[str]:
    """The lower-cased runs of letters and digits in `text`, in order, accents dropped
    ("Bogotá" is "bogota") and apostrophes inside a word removed ("it's" is "its")."""
    plain = unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode()
    return _WORD.findall(_IN_WORD_APOSTROPHE.sub("", plain))


def named(text: str, candidates: Iterable[str]) -> list[str]:
    """The candidates that `text` names as whole words, in order of first mention, each once.

    A candidate of several words matches them in a row; where candidates overlap, the longer
    one wins at a position ("twenty-one" is named, not "twenty")."""
    by_first_word: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for candidate in candidates:
        if key := _candidate_words(candidate):
            by_first_word.setdefault(key[0], []).append((key, candidate))
    for options in by_first_word.values():
        options.sort(key=lambda option: -len(option[0]))
    seen: dict[str, None] = {}
    tokens = words(text)
    position = 0
    while position < len(tokens):
        for key, candidate in by_first_word.get(tokens[position], []):
            if tuple(tokens[position : position + len(key)]) == key:
                seen.setdefault(candidate)
                position += len(key) - 1
                break
        position += 1
    return list(seen)


@functools.lru_cache(maxsize=4096)
def _candidate_words(candidate: str) -> tuple[str, ...]:
    return tuple(words(candidate))


def numbers(text: str) -> list[str]:
    """The whole numbers written in digits in `text`, in order of first mention, each once,
    without leading zeros ("007" is "7")."""
    found = (str(int(token)) for token in words(text) if token.isdigit())
    return list(dict.fromkeys(found))


def names_only(response: str, accepted: Iterable[str], others: Iterable[str]) -> bool:
    """Whether `response` names one of the `accepted` answers and none of the `others`."""
    right = set(accepted)
    wrong = set(others) - right
    said = set(named(response, [*right, *wrong]))
    return bool(said & right) and not said & wrong


def number_only(response: str, answer: int) -> bool:
    """Whether the only number `response` writes in digits is `answer` ("Forty-two is 42."
    answers 42; "42, or 24" does not)."""
    return set(numbers(response)) == {str(answer)}


def letters_only(response: str, answer: str) -> bool:
    """Whether the only letter `response` names as a word of its own is `answer` ("The first
    letter of 'green' is G."). "a" and "i" never count: they are words too, so a family that
    grades with this must not ask for them."""
    said = {w for w in words(response) if len(w) == 1 and w.isalpha()} - {"a", "i"}
    return said == {answer.lower()}
