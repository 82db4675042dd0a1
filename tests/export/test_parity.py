"""Parity metrics against hand-computed values, and threshold verdicts."""

import numpy as np
import pytest

from distil.export.parity import check_thresholds, logit_agreement


def test_logit_agreement_against_hand_values():
    reference = [np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0]]), np.array([[0.0, 0.0, 5.0]])]
    candidate = [np.array([[1.0, 1.5, 0.1], [2.0, 2.5, 1.0]]), np.array([[0.0, 0.2, 4.0]])]
    # argmax: (1, 1) (0, 1) (2, 2) -> 2 of 3 agree; largest |difference|: 2.5 at [1][1]
    figures = logit_agreement(reference, candidate)
    assert figures == {"max_abs_logit_diff": 2.5, "top1_agreement": pytest.approx(2 / 3), "positions": 3}


def test_padded_heads_are_compared_on_their_shared_columns():
    reference = [np.array([[0.0, 1.0, 9.0]])]  # a column the candidate's head lacks
    candidate = [np.array([[0.0, 1.25]])]
    assert logit_agreement(reference, candidate) == {
        "max_abs_logit_diff": 0.25,
        "top1_agreement": 1.0,
        "positions": 1,
    }


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError):
        logit_agreement([], [])
    with pytest.raises(ValueError):
        logit_agreement([np.zeros((2, 3))], [np.zeros((3, 3))])


FIGURES = {"top1_agreement": 0.9, "max_abs_logit_diff": 0.02, "accuracy": 0.80, "accuracy_delta": -0.05}


def test_thresholds_report_every_miss_and_skip_empty_ones():
    limits = {"min_top1_agreement": 0.95, "max_abs_logit_diff": 0.01, "max_accuracy_drop": 0.01}
    assert check_thresholds(FIGURES, limits) == [
        "top-1 agreement 90.00% < 95.00%",
        "max |logit diff| 0.02 > 0.01",
        "accuracy 80.0% is 5.0% below the reference (> 1.0%)",
    ]
    empty = {"min_top1_agreement": None, "max_abs_logit_diff": None, "max_accuracy_drop": None}
    assert check_thresholds(FIGURES, empty) == []


def test_an_accuracy_rise_or_an_exact_bound_never_fails():
    limits = {"max_accuracy_drop": 0.01}
    assert check_thresholds({**FIGURES, "accuracy_delta": 0.2}, limits) == []
    assert check_thresholds({**FIGURES, "accuracy_delta": -0.01}, limits) == []
