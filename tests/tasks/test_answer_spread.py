"""scripts/measure_answer_spread.py: the measures against hand-computed values, and the batched
answer probabilities against one unpadded forward pass per answer."""

import importlib.util
import math

import pytest
import torch

from distil.models import load_model
from tests.conftest import REPO


def _script():
    spec = importlib.util.spec_from_file_location(
        "measure_answer_spread", REPO / "scripts" / "measure_answer_spread.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_measures_from_the_definitions():
    spread = _script().spread
    even = spread([math.log(0.2)] * 4)  # 0.8 on four answers, evenly
    assert even["valid_mass"] == pytest.approx(0.8)
    assert even["top_share"] == pytest.approx(0.25)
    assert even["effective_share"] == pytest.approx(1.0)
    one = spread([math.log(0.5), -1e4, -1e4], reference=[math.log(0.1)] * 3)
    assert one["top_share"] == pytest.approx(1.0)
    assert one["effective_share"] == pytest.approx(1 / 3)
    assert one["tv_to_reference"] == pytest.approx(2 / 3)  # 0.5 * (2/3 + 1/3 + 1/3)


def test_batched_answers_match_one_pass_each():
    loaded = load_model("demo", "teacher", dtype="float32")
    model, tokenizer = loaded.model, loaded.tokenizer
    prompt, answers = "Name a number between 27 and 33.", ["28", "30", "32", "100"]
    batched = _script().answer_logprobs(model, tokenizer, prompt, answers, "<|end|>")
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    prefix = tokenizer(text, add_special_tokens=False).input_ids
    for answer, got in zip(answers, batched, strict=True):
        tail = tokenizer(answer + "<|end|>", add_special_tokens=False).input_ids
        with torch.no_grad():
            logp = model(torch.tensor([prefix + tail])).logits[0].double().log_softmax(-1)
        want = sum(logp[len(prefix) - 1 + i, t].item() for i, t in enumerate(tail))
        assert got == pytest.approx(want, abs=1e-4)
