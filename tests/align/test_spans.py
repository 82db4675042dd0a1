"""Span alignment on hand-written offsets and on two real tokenizers of one text."""

import pytest

from distil.align import Span, align_spans, clean_ends, spelled_offsets, token_offsets
from distil.models import DEMO_TEACHER_DIR, byte_tokenizer


def spans_as_text(text, teacher, student, spans):
    """Each span as (teacher pieces, student pieces) of the text, for readable expectations."""

    def pieces(offsets, positions):
        return [text[offsets[i][0] : offsets[i][1]] for i in positions]

    return [(pieces(teacher, s.teacher), pieces(student, s.student)) for s in spans]


def test_one_to_one_one_to_many_and_many_to_one():
    text = " 12 apples"
    teacher = [(0, 3), (3, 10)]  # " 12", " apples"
    student = [(0, 2), (2, 3), (3, 7), (7, 10)]  # " 1", "2", " app", "les"
    spans = align_spans(teacher, student)
    assert spans == [Span(range(0, 1), range(0, 2)), Span(range(1, 2), range(2, 4))]
    assert spans_as_text(text, teacher, student, spans) == [
        ([" 12"], [" 1", "2"]),
        ([" apples"], [" app", "les"]),
    ]
    assert align_spans(student, teacher) == [Span(s.student, s.teacher) for s in spans]
    same = align_spans(teacher, teacher)
    assert same == [Span(range(i, i + 1), range(i, i + 1)) for i in range(2)]


def test_digits_split_differently_merge_until_both_sides_end():
    text = "1234+56"
    teacher = [(0, 3), (3, 4), (4, 5), (5, 7)]  # "123", "4", "+", "56"
    student = [(0, 2), (2, 4), (4, 6), (6, 7)]  # "12", "34", "+5", "6"
    assert spans_as_text(text, teacher, student, align_spans(teacher, student)) == [
        (["123", "4"], ["12", "34"]),
        (["+", "56"], ["+5", "6"]),
    ]


def test_a_token_crossing_a_boundary_merges_the_spans_around_it():
    text = "ab cd ef"
    teacher = [(0, 2), (2, 5), (5, 8)]  # "ab", " cd", " ef"
    student = [(0, 1), (1, 3), (3, 4), (4, 8)]  # "a", "b ", "c", "d ef": crosses 5
    assert spans_as_text(text, teacher, student, align_spans(teacher, student)) == [
        (["ab", " cd", " ef"], ["a", "b ", "c", "d ef"])
    ]


def test_whitespace_runs_and_leading_spaces():
    text = "a  b\n\nc"
    teacher = [(0, 1), (1, 2), (2, 4), (4, 6), (6, 7)]  # "a", " ", " b", "\n\n", "c"
    student = [(0, 1), (1, 3), (3, 4), (4, 5), (5, 7)]  # "a", "  ", "b", "\n", "\nc"
    assert spans_as_text(text, teacher, student, align_spans(teacher, student)) == [
        (["a"], ["a"]),
        ([" ", " b"], ["  ", "b"]),
        (["\n\n", "c"], ["\n", "\nc"]),
    ]


def test_a_character_split_into_byte_tokens_is_no_boundary():
    # "é" is two bytes: the teacher writes it as two byte tokens sharing its offsets
    teacher = [(0, 1), (1, 2), (1, 2), (2, 3)]  # "h", "é"[0], "é"[1], "!"
    student = [(0, 2), (2, 3)]  # "hé", "!"
    assert clean_ends(teacher) == {1: 0, 2: 2, 3: 3}
    assert align_spans(teacher, student) == [Span(range(0, 3), range(0, 1)), Span(range(3, 4), range(1, 2))]
    student_cut_inside = [(0, 1), (1, 2), (1, 2), (2, 3)]
    assert len(align_spans(teacher, student_cut_inside)) == 3


def test_tokens_after_the_last_common_boundary_belong_to_no_span():
    teacher = [(0, 2), (2, 4), (4, 6)]
    student = [(0, 1), (1, 2), (2, 5)]  # cut short: ends inside teacher's last
    assert align_spans(teacher, student) == [Span(range(0, 1), range(0, 2))]
    assert align_spans([], student) == []


@pytest.mark.parametrize("text", ["What is 128+47? 175", " héllo  wörld 日本\n\nok", "Vienna"])
def test_real_tokenizers_cover_the_text_with_spans(text):
    from transformers import AutoTokenizer

    teacher_tokenizer = AutoTokenizer.from_pretrained(DEMO_TEACHER_DIR)
    student_tokenizer = byte_tokenizer()
    teacher_ids, teacher = token_offsets(teacher_tokenizer, text)
    student_ids, student = token_offsets(student_tokenizer, text)
    spans = align_spans(teacher, student)
    assert [i for s in spans for i in s.teacher] == list(range(len(teacher_ids)))
    assert [i for s in spans for i in s.student] == list(range(len(student_ids)))
    for span in spans:  # both sides of a span decode to the same text
        assert teacher_tokenizer.decode([teacher_ids[i] for i in span.teacher]) == student_tokenizer.decode(
            [student_ids[i] for i in span.student]
        )


def test_a_slow_tokenizer_is_refused():
    class Slow:
        is_fast = False

    with pytest.raises(ValueError, match="fast tokenizer"):
        token_offsets(Slow(), "text")


def test_offsets_from_token_texts_that_spell_the_text():
    assert spelled_offsets([" 12", " apples"], " 12 apples") == [(0, 3), (3, 10)]
    assert spelled_offsets(["ü", "", "n"], "ün") == [(0, 1), (1, 1), (1, 2)]
    assert spelled_offsets(["\ufffd", "\ufffd", "n"], "ün") is None  # a character in pieces
    assert spelled_offsets([" 12"], " 12 apples") is None  # they stop short
    assert spelled_offsets([" 12", " apples!"], " 12 apples") is None  # they run past it
    assert spelled_offsets([], "") == []
