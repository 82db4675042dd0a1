"""The packaged SmolLM2-135M-Instruct, for real: fetched once a run (tests/conftest.py), it
answers a chat prompt sensibly and gives a 4-layer student of its own layers."""

import pytest
import torch

from distil.models import PACKAGED_MODELS, load_model
from distil.teachers.base import Sampling
from distil.teachers.local import LocalTeacher
from tests.conftest import SMOLLM2

pytestmark = pytest.mark.slow


def test_smollm2_answers_a_chat_prompt_greedily(smollm2_teacher):
    assert smollm2_teacher.revision == f"sha256:{PACKAGED_MODELS[SMOLLM2].gguf_sha256}"
    teacher = LocalTeacher(smollm2_teacher)
    answers = teacher.generate(["What is the capital of France?", "What is 2 + 3?"],
                               Sampling(max_new_tokens=16, temperature=0.0))
    assert "Paris" in answers[0].text, answers[0].text
    assert "5" in answers[1].text, answers[1].text


def test_a_four_layer_student_of_smollm2_loads_from_its_layers(smollm2_teacher):
    student = load_model(SMOLLM2, "student", layers=[0, 10, 20, 29])
    assert student.model.config.num_hidden_layers == 4
    for kept, source in enumerate([0, 10, 20, 29]):
        assert torch.equal(student.model.model.layers[kept].self_attn.q_proj.weight,
                           smollm2_teacher.model.model.layers[source].self_attn.q_proj.weight)
    ids = student.tokenizer("Hello there", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = student.model(ids).logits  # (1, T, V)
    assert logits.shape[-1] == len(smollm2_teacher.tokenizer) and torch.isfinite(logits).all()
