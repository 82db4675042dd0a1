"""distil.tasks.answers: which candidate answers a free-text response names."""

import pytest

from distil.tasks.answers import letters_only, named, names_only, number_only, numbers, words


def test_words_ignore_case_accents_punctuation_and_in_word_apostrophes():
    assert words("The capital is Bogotá, it's 'G'!") == ["the", "capital", "is", "bogota", "its", "g"]
    assert words("twenty-one") == words("Twenty one") == ["twenty", "one"]
    assert words("people’s") == ["peoples"]


def test_named_finds_whole_words_in_order_of_first_mention():
    text = "Mice, not mouses. The plural of mouse is mice."
    assert named(text, ["mouse", "mice", "mouses", "geese"]) == ["mice", "mouses", "mouse"]
    assert named("The housemouse", ["mouse", "house"]) == []  # inside a word is not named


def test_named_prefers_the_longer_candidate_at_a_position():
    assert named("seventy-six", ["seventy", "seventy-six", "six"]) == ["seventy-six"]
    assert named("It is in South America.", ["America", "South America"]) == ["South America"]
    assert named("Mexico City is big", ["Mexico City", "Mexico"]) == ["Mexico City"]


def test_numbers_reads_digit_runs_without_leading_zeros():
    assert numbers("Seventy-six is 76, not 67 or 076.") == ["76", "67"]
    assert numbers("no digits here") == []


@pytest.mark.parametrize(
    ("response", "right"),
    [
        ("The plural of 'mouse' is 'mice'.", True),
        ("mice", True),
        ("MICE!", True),
        ("The plural of mouse is mouses.", False),
        ("mice or mouses", False),
        ("The plural of mouse is mouse.", False),
        ("", False),
    ],
)
def test_names_only_wants_a_right_answer_and_no_wrong_one(response, right):
    assert names_only(response, ["mice"], ["mouses", "mices", "geese"]) is right


def test_names_only_never_counts_an_accepted_answer_as_wrong():
    assert names_only("It is small, or little.", ["small", "little"], ["small", "big"])


@pytest.mark.parametrize(
    ("response", "right"),
    [
        ("76", True),
        ("Seventy-six is 76 in digits.", True),
        ("076", True),
        ("67", False),
        ("76 or 67", False),
        ("seventy-six", False),
        ("7 6", False),
    ],
)
def test_number_only(response, right):
    assert number_only(response, 76) is right


@pytest.mark.parametrize(
    ("response", "right"),
    [
        ("The first letter of the word 'tiger' is 'T'.", True),
        ("t", True),
        ("It's T.", True),  # "it's" is one word, not "it" and "s"
        ("A tiger's first letter is T", True),
        ("The first letter is 'E'.", False),
        ("T, I, G, E, R", False),
        ("T or G", False),
        ("The word tiger.", False),
    ],
)
def test_letters_only(response, right):
    assert letters_only(response, "T") is right
