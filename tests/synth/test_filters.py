"""Response filters: each reason, in order, and nothing dropped that should be kept."""

import pytest

from distil.recipe.synth import FiltersSection
from distil.synth.filters import judge, judge_instruction
from distil.teachers import Completion, Usage


def completion(text: str, finish: str = "stop", tokens: int = 5) -> Completion:
    return Completion(text, None, finish, Usage(3, tokens))


@pytest.mark.parametrize(
    "text,finish,tokens,reason",
    [
        ("  \n", "stop", 1, "empty"),
        ("cut mid-sen", "length", 5, "truncated"),
        ("[withheld]", "content_filter", 5, "content_filter"),
        ("I'm sorry, but I can't help with that.", "stop", 9, "refusal"),
        ("As an AI language model, I think so.", "stop", 9, "refusal"),
        ("I cannot assist with this request.", "stop", 7, "refusal"),
        ("ok", "stop", 1, "too_short"),
        ("x" * 50, "stop", 5, "too_long"),
        ("fine answer", "stop", 1, "too_short"),
        ("fine answer", "stop", 99, "too_long"),
        ("The answer is 42.", "stop", 6, None),
        ("Sorry to hear that; here is how to fix it.", "stop", 9, None),
    ],
)
def test_reasons(text, finish, tokens, reason):
    filters = FiltersSection(min_chars=3, max_chars=45, min_tokens=2, max_tokens=50)
    verdict = judge(completion(text, finish, tokens), filters, max_new_tokens=16)
    assert (verdict.reason if verdict else None) == reason


def test_filters_can_be_turned_off():
    filters = FiltersSection(drop_empty=False, drop_truncated=False, refusal_patterns=[], min_chars=0)
    for text, finish in [("", "stop"), ("cut", "length"), ("I'm sorry, I can't help", "stop")]:
        assert judge(completion(text, finish), filters, 16) is None


def test_instructions_from_expansion():
    filters = FiltersSection()
    assert judge_instruction("", "", "stop", filters).reason == "empty"
    assert judge_instruction("Write a poem ab", "Write a poem ab", "length", filters).reason == "truncated"
    assert judge_instruction("Write a poem\nabout", "Write a poem", "length", filters) is None
    assert judge_instruction("I'm sorry, no", "I'm sorry, no", "stop", filters).reason == "refusal"
