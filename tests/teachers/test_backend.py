"""A teacher backend added from outside the package: a rule-based teacher, registered here.

It generates text and nothing else. Through the one factory every stage opens it; synth
writes a training set with it, sequence-level KD trains on that set, and the stages that
read a teacher's logits refuse it in one line naming the capability it lacks.
"""

from collections.abc import Sequence
from typing import Any

import pytest

from distil.errors import DistilError
from distil.recipe import TeacherSection, validate_recipe
from distil.synth.stage import run_synth
from distil.teachers import (
    Capabilities,
    Completion,
    NotSupportedError,
    Prompt,
    Sampling,
    TeacherBackend,
    Usage,
    as_messages,
    open_teacher,
    register_backend,
    unregister_backend,
)
from distil.train import run_training
from tests.conftest import write_jsonl
from tests.synth.conftest import SEEDS, outputs, synth_recipe


class ReversingTeacher:
    """Answers "Reverse the word: X" with X reversed, anything else with "?"."""

    capabilities = Capabilities(logprobs=False, max_top_logprobs=0, can_score=False, token_ids=False)

    def __init__(self, name: str) -> None:
        self.name = name

    def describe(self) -> dict[str, Any]:
        return {"backend": "reversing", "model": self.name, "revision": None, "endpoint": None}

    def offers(self) -> list[str]:
        return [f"teacher {self.name} (reversing): text only"]

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Completion]:
        answers = []
        for prompt in prompts:
            text = as_messages(prompt)[-1]["content"]
            answer = text.split(": ", 1)[1][::-1] if text.startswith("Reverse") else "?"
            answers.append(Completion(answer, None, "stop", Usage(len(text), len(answer))))
        return answers

    def score(self, prompt: Prompt, completion: str, top_logprobs: int) -> list:
        raise NotSupportedError(f"{self.name} cannot score")

    def close(self) -> None:
        """Nothing held."""


@pytest.fixture(autouse=True)
def reversing_backend():
    register_backend(
        TeacherBackend(
            "reversing",
            claims=lambda section: section.model.startswith("reversing:"),
            open=lambda section, options: ReversingTeacher(section.model),
            endpoint=lambda section: "reversing",
        )
    )
    yield
    unregister_backend("reversing")


@pytest.fixture
def seed_file(tmp_path):
    return write_jsonl(tmp_path / "seeds.jsonl", [{"prompt": p} for p in SEEDS])


def _recipe(tmp_path, seed_file, **changes) -> dict:
    raw = synth_recipe(tmp_path, seed_file)
    raw["teacher"] = {"model": "reversing:v1"}
    return {**raw, **changes}


def test_the_factory_opens_a_registered_backend_by_its_section():
    teacher = open_teacher(TeacherSection(model="reversing:v1"))
    assert isinstance(teacher, ReversingTeacher)
    assert teacher.generate(["Reverse the word: lantern"], Sampling())[0].text == "nretnal"


def test_synth_and_sequence_level_kd_run_on_a_text_only_teacher(tmp_path, seed_file):
    recipe = validate_recipe(_recipe(tmp_path, seed_file, distill={"kd_weight": 0.0, "ce_weight": 1.0}))
    run_synth(recipe)
    rows, _, summary = outputs(recipe.run_dir)
    assert {row["response"] for row in rows if row["prompt"].startswith("Reverse")} == {"nretnal"}
    assert summary["teacher"]["backend"] == "reversing"
    result = run_training(recipe)  # kd_weight 0: no teacher distributions needed
    assert result is not None and result.steps == 2


def test_stages_that_read_logits_refuse_it_in_one_line(tmp_path, seed_file):
    recipe = validate_recipe(_recipe(tmp_path, seed_file))
    run_synth(recipe)
    with pytest.raises(DistilError) as refused:
        run_training(recipe)  # live logit distillation
    message = str(refused.value)
    assert "needs the teacher's full logits" in message and "reversing:v1 (reversing)" in message
    assert "signals.path: capture" in message and "\n" not in message
    assert not (recipe.run_dir / "student").exists()
