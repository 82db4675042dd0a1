"""audit.md reads for someone who is no statistician: what was tested, the verdict in words
and odds, what it shows and what it does not; then the figures."""

import math

import pytest

from distil.audit.verdict import one_in, verdict_markdown


def _result(mode: str, log10_p: float, flagged: bool, **extra) -> dict:
    score = {"tokens": 5000, "kept": 1200, "green": 420, "gamma": 0.25, "log10_p": log10_p}
    null = {
        "keys": 1000,
        "empirical_p": 1 / 1001,
        "rate_at": {"0.01": 0.009, "0.001": 0.001},
        "median_p": 0.5,
        "min_p": 2e-4,
    }
    return {
        "mode": mode,
        "score": score,
        "null": null,
        "alpha": 1e-3,
        "flagged": flagged,
        "source": "runs/x/student",
        "key_env": "DISTIL_WATERMARK_KEY",
        "settings": {"scheme": "kgw", "gamma": 0.25, "context_width": 2},
        **extra,
    }


@pytest.mark.parametrize(
    ("log10_p", "words"),
    [
        (-3.0, "about 1 in 1,000"),
        (math.log10(1 / 128.8), "about 1 in 130"),
        (-8.5, "about 1 in 320,000,000"),
        (-42.3, "about 1 in 10^42"),
        (-0.1, "better than even"),
    ],
)
def test_a_p_value_is_told_as_odds(log10_p, words):
    assert one_in(log10_p) == words


def test_a_flagged_model_says_what_was_tested_what_it_shows_and_what_it_does_not():
    text = verdict_markdown(_result("model", -8.5, True, top_k=4))
    sections = [
        "## What was tested",
        "## The verdict",
        "## What it shows and what it does not",
        "## The figures",
    ]
    assert [text.index(s) for s in sections] == sorted(text.index(s) for s in sections)
    assert "**Watermark detected.**" in text
    assert "5,000 scored tokens gave 1,200 distinct pieces of evidence" in text
    assert "Here 420 are (35.0%)" in text and "about 25%" in text
    assert "p = 3.16e-9 (about 1 in 320,000,000)" in text
    assert "flagged 0.9% at 0.01 and 0.1% at 0.001; none of them gave" in text
    assert "about 1 in 1,000 of the innocent ones are flagged" in text
    assert "does not show how much of the training came from the teacher" in text
    assert "must carry no watermark" in text  # the open-model audit's own condition
    assert "| predictions per position | top-4 |" in text


def test_an_unflagged_api_audit_does_not_claim_innocence():
    text = verdict_markdown(
        _result("api", math.log10(0.2), False, sampling={"temperature": 1.0, "max_tokens": 48})
    )
    assert "**No watermark detected.**" in text
    assert "p = 0.2000 (about 1 in 5)" in text
    assert "does not show that this model behind the API never learnt from the teacher" in text
    assert "exp-min mark is absent from greedy" in text
    assert "| sampling | temperature 1, at most 48 tokens per answer |" in text
    assert "Watermark detected." not in text
