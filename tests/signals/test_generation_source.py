"""Signals from generation logprobs: what is stored, and the errors that name the fix."""

import math
from decimal import Decimal, getcontext

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distil.data import Example
from distil.losses import IGNORE_INDEX
from distil.signals import SignalsError
from distil.signals.generation import TAIL_FLOOR, GenerationLogprobsSource, read_token_logprobs

EOS = 2


def position(token_id: int, alternatives: dict[int, float]) -> dict:
    return {
        "token_id": token_id,
        "token": "",
        "logprob": alternatives[token_id],
        "top": [{"token_id": i, "token": "", "logprob": lp} for i, lp in alternatives.items()],
    }


def example(response: list[int]) -> Example:
    prompt = [5, 6]
    return Example("s", prompt + response + [EOS], [IGNORE_INDEX] * 2 + response + [EOS])


def exact_tail(logprobs: list[float]) -> Decimal:
    """1 - sum(exp(logprob)) at 50 significant digits, straight from the definition."""
    getcontext().prec = 50
    return 1 - sum(Decimal(lp).exp() for lp in logprobs)


def test_every_position_keeps_what_the_teacher_returned_end_of_turn_included():
    first = {7: math.log(0.6), 8: math.log(0.3), 9: math.log(0.05)}
    second = {9: math.log(0.9), 7: math.log(0.01), 8: math.log(0.04)}
    end = {EOS: math.log(0.8), 7: math.log(0.15), 9: math.log(0.01)}
    source = GenerationLogprobsSource({"s": [position(7, first), position(9, second), position(EOS, end)]}, 2)
    (sample,) = source.capture([example([7, 9])])
    assert sample.ids.tolist() == [[7, 8], [9, 8], [EOS, 7]]
    np.testing.assert_allclose(np.exp(sample.logprobs), [[0.6, 0.3], [0.9, 0.04], [0.8, 0.15]], rtol=1e-6)
    np.testing.assert_allclose(np.exp(sample.log_tail), [0.1, 0.06, 0.05], rtol=1e-6)


def test_positions_without_logprobs_are_stored_absent_never_invented():
    first = {7: math.log(0.6), 8: math.log(0.3)}
    third = {9: math.log(0.5), 8: math.log(0.25)}
    bare = {"token_id": 9, "token": "", "logprob": -0.5, "top": []}  # its token, no alternatives
    # no end-of-turn position (hosted chat APIs report none), position 1 without alternatives
    source = GenerationLogprobsSource({"s": [position(7, first), bare, position(9, third)]}, 2)
    (sample,) = source.capture([example([7, 9, 9])])
    assert sample.absent.tolist() == [False, True, False, True] and sample.num_absent == 2
    np.testing.assert_allclose(np.exp(sample.logprobs[[0, 2]]), [[0.6, 0.3], [0.5, 0.25]], rtol=1e-6)
    np.testing.assert_allclose(np.exp(sample.log_tail[[0, 2]]), [0.1, 0.25], rtol=1e-6)
    assert np.isneginf(sample.logprobs[[1, 3]]).all() and np.isneginf(sample.log_tail[[1, 3]]).all()


def test_every_position_present_is_no_absent_mark():
    top = {7: math.log(0.6), 8: math.log(0.3)}
    (sample,) = GenerationLogprobsSource(
        {"s": [position(7, top), position(EOS, top | {EOS: -1})]}, 2
    ).capture([example([7])])
    assert sample.absent is None


def test_a_tiny_tail_is_kept_to_its_size():
    # the top token's probability rounds to 1.0 in float64: 1 - sum would lose the tail
    top = {7: -1e-17, 8: math.log(1e-18)}
    source = GenerationLogprobsSource({"s": [position(7, top), position(EOS, top | {EOS: -1e-17})]}, 2)
    (sample,) = source.capture([example([7])])
    expected = exact_tail(list(top.values()))
    assert expected > 0
    assert sample.log_tail[0] == pytest.approx(math.log(expected), rel=1e-6)


def test_returned_probabilities_that_round_past_one_leave_the_floor_not_zero():
    rounded = {7: math.log(0.7), 8: math.log(0.3000001)}  # rounded by the server: sum > 1
    certain = {7: 0.0, 8: math.log(1e-9)}  # logprob 0: the server rounded p = 1 - eps to 1
    source = GenerationLogprobsSource(
        {
            "s": [
                position(7, rounded),
                position(7, certain),
                position(EOS, {EOS: math.log(0.5), 8: math.log(0.5)}),
            ]
        },
        2,
    )
    (sample,) = source.capture([example([7, 7])])
    assert exact_tail(list(rounded.values())) < 0 and exact_tail(list(certain.values())) < 0
    np.testing.assert_allclose(sample.log_tail[:2], math.log(TAIL_FLOOR), rtol=1e-6)
    assert np.isfinite(sample.log_tail).all() and np.isfinite(sample.logprobs).all()


def test_after_a_sampled_token_that_re_tokenising_does_not_give_positions_are_absent():
    # the teacher sampled 8 where its answer re-tokenised gives 7 (" Hel"+"lo" vs " Hello"):
    # position 1 still saw the training prefix [7]; 2 and 3 saw another one
    first, second = {7: math.log(0.6), 8: math.log(0.3)}, {7: math.log(0.5), 8: math.log(0.4)}
    third = {9: math.log(0.9), 8: math.log(0.05)}
    teacher = [position(7, first), position(8, second), position(9, third), position(EOS, third | {EOS: -1})]
    matching = [position(7, first), position(9, third)]
    row, other = example([7, 7, 9]), Example("t", [5, 6, 7, 9], [IGNORE_INDEX] * 2 + [7, 9])
    source = GenerationLogprobsSource({"s": teacher, "t": matching}, 2)
    sample, clean = source.capture([row, other])
    assert sample.absent.tolist() == [False, False, True, True]
    np.testing.assert_allclose(np.exp(sample.logprobs[:2]), [[0.6, 0.3], [0.5, 0.4]], rtol=1e-6)
    assert np.isneginf(sample.logprobs[2:]).all() and np.isneginf(sample.log_tail[2:]).all()
    assert clean.absent is None
    assert (source.diverged_rows, source.diverged_positions) == (1, 2)


def test_other_ids_from_the_first_token_in_every_row_or_unmapped_ids_are_refused():
    top = {7: math.log(0.6), 8: math.log(0.3)}
    with pytest.raises(SignalsError, match="from the first token on, in every row"):
        GenerationLogprobsSource({"s": [position(8, top)]}, 2).capture([example([7])])
    unmapped = [position(7, top) | {"token_id": None}]
    with pytest.raises(SignalsError, match="came back without ids"):
        GenerationLogprobsSource({"s": unmapped}, 2).capture([example([7])])


def test_too_few_alternatives_or_no_logprobs_are_refused():
    top = {7: math.log(0.6), 8: math.log(0.3)}
    with pytest.raises(SignalsError, match="position 0 has fewer than 3 distinct top logprobs"):
        GenerationLogprobsSource({"s": [position(7, top), position(EOS, {EOS: 0.0})]}, 3).capture(
            [example([7])]
        )
    with pytest.raises(SignalsError, match="has no generation logprobs"):
        GenerationLogprobsSource({}, 2).capture([example([7])])


def test_a_dataset_without_the_column_names_the_synth_setting(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"id": ["s"], "prompt": ["p"], "response": ["r"]}), path)
    with pytest.raises(SignalsError, match="set synth.sampling.top_logprobs"):
        read_token_logprobs(path)
