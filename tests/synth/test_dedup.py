"""Near-duplicate removal: MinHash keeps templated but different prompts; ROUGE-L is exact."""

import itertools
import random

import pytest

from distil.recipe.synth import DedupSection
from distil.synth.dedup import lcs_length, near_duplicates, rouge_duplicates, rouge_l, shingles, words
from distil.synth.prompts import deduplicate, item

BASE = "Explain how a binary search finds an element in a sorted list and why it needs the list sorted"


def test_minhash_drops_rephrasings_and_keeps_different_prompts():
    texts = [
        BASE,
        BASE.lower() + "!",
        BASE.replace("element", "item"),
        "Write a haiku about the sea at night",
        "Reverse the word: abcde",
        "Reverse the word: vwxyz",
    ]
    dropped = near_duplicates(texts, threshold=0.7, ngram=2)  # one word changed: Jaccard 16/20
    assert set(dropped) == {1, 2}
    assert dropped[1] == (0, pytest.approx(1.0)) and dropped[2][0] == 0 and 0.7 <= dropped[2][1] < 0.9


def test_shingles_and_words():
    assert words("Hello, World! x_1") == ["hello", "world", "x_1"]
    assert shingles(["a", "b", "c"], 2) == {"a b", "b c"} and shingles(["a"], 3) == {"a"}
    assert shingles([], 2) == set()


def _naive_lcs(a, b):
    """Longest common subsequence by trying every subsequence of the shorter (tiny inputs)."""
    short, other = (a, b) if len(a) <= len(b) else (b, a)

    def is_subsequence(seq, of):
        it = iter(of)
        return all(token in it for token in seq)

    for size in range(len(short), 0, -1):
        if any(is_subsequence(c, other) for c in itertools.combinations(short, size)):
            return size
    return 0


def test_lcs_matches_a_naive_reference():
    rng = random.Random(0)
    for _ in range(200):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 7))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 7))]
        assert lcs_length(a, b) == _naive_lcs(a, b)


def test_rouge_l_is_the_lcs_f_measure():
    sat, lay = ["the", "cat", "sat", "on", "the", "mat"], ["the", "cat", "lay", "on", "the", "mat"]
    assert rouge_l(sat, lay) == pytest.approx(5 / 6)
    assert rouge_l([], ["a"]) == 0.0 and rouge_l(["a", "b"], ["a", "b"]) == 1.0


def test_rouge_duplicates_and_the_overlap_bound():
    texts = [
        "the cat sat on the mat",
        "the cat lay on the mat",
        "mat the on sat cat the",
        "a completely different sentence here",
    ]
    dropped = rouge_duplicates(texts, threshold=0.7)
    # the shuffled one shares every word (bag overlap 1.0) but its LCS is short: kept
    assert dropped == {1: (0, pytest.approx(5 / 6))}


def test_deduplicate_names_the_kept_prompt():
    items = [
        item(BASE, "file"),
        item(BASE, "file"),
        item(BASE + " please", "self_instruct"),
        item("the cat sat on the mat today", "file"),
        item("the cat sat on a mat today", "file"),
    ]
    kept, rejects = deduplicate(items, DedupSection(minhash_threshold=0.8, rouge_l=0.7))
    assert [k.text for k in kept] == [BASE, "the cat sat on the mat today"]
    reasons = {r.item.text: r.detail for r in rejects}
    assert reasons[BASE].startswith("identical with prompt " + items[0].prompt_id)
    assert "MinHash" in reasons[BASE + " please"] and "ROUGE-L" in reasons["the cat sat on a mat today"]
    off, none = deduplicate(items[2:], DedupSection(minhash_threshold=None))
    assert len(off) == 3 and none == []
