"""Signals from generation logprobs: what is stored, and the errors that name the fix."""

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distil.data import Example
from distil.losses import IGNORE_INDEX
from distil.signals import SignalsError
from distil.signals.generation import GenerationLogprobsSource, read_token_logprobs

EOS = 2


def position(token_id: int, alternatives: dict[int, float]) -> dict:
    return {"token_id": token_id, "token": "", "logprob": alternatives[token_id],
            "top": [{"token_id": i, "token": "", "logprob": lp} for i, lp in alternatives.items()]}


def example(response: list[int]) -> Example:
    prompt = [5, 6]
    return Example("s", prompt + response + [EOS], [IGNORE_INDEX] * 2 + response + [EOS])


def test_positions_are_stored_top_first_and_the_end_of_turn_is_certain():
    first = {7: math.log(0.6), 8: math.log(0.3), 9: math.log(0.05)}
    second = {9: math.log(0.9), 7: math.log(0.01), 8: math.log(0.04)}
    source = GenerationLogprobsSource({"s": [position(7, first), position(9, second)]}, 2, EOS)
    (sample,) = source.capture([example([7, 9])])
    assert sample.ids.tolist() == [[7, 8], [9, 8], [EOS, 0]]
    np.testing.assert_allclose(np.exp(sample.logprobs), [[0.6, 0.3], [0.9, 0.04], [1, 0]], atol=1e-6)
    np.testing.assert_allclose(np.exp(sample.log_tail), [0.1, 0.06, 0.0], atol=1e-6)


def test_other_ids_or_too_few_alternatives_are_refused():
    top = {7: math.log(0.6), 8: math.log(0.3)}
    with pytest.raises(SignalsError, match="generated other token ids than its response"):
        GenerationLogprobsSource({"s": [position(8, top)]}, 2, EOS).capture([example([7])])
    with pytest.raises(SignalsError, match="fewer than 3 distinct top logprobs"):
        GenerationLogprobsSource({"s": [position(7, top)]}, 3, EOS).capture([example([7])])
    with pytest.raises(SignalsError, match="has no generation logprobs"):
        GenerationLogprobsSource({}, 2, EOS).capture([example([7])])


def test_a_dataset_without_the_column_names_the_synth_setting(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"id": ["s"], "prompt": ["p"], "response": ["r"]}), path)
    with pytest.raises(SignalsError, match="set synth.sampling.top_logprobs"):
        read_token_logprobs(path)
