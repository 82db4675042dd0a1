"""The eval stage: the untrained student measured beside the trained one, and sample answers."""

import json

import pytest

from distil.evaluate import evaluate
from distil.recipe import validate_recipe
from distil.train.stage import train
from tests.conftest import recipe_dict


@pytest.fixture
def trained(tmp_path, dataset):
    recipe = validate_recipe(
        recipe_dict(
            tmp_path, dataset, train={"max_steps": 4}, eval={"sample_answers": 3, "max_new_tokens": 6}
        )
    )
    train(recipe)
    return recipe


def test_the_untrained_student_is_measured_beside_the_trained_one(trained, tmp_path):
    metrics = evaluate(trained)
    untrained = metrics["untrained_student"]
    # the recipe's tiny student before training: the KL pinned in test_train's "before"
    assert untrained["kl_teacher_student"] == pytest.approx(2.334624, rel=1e-5)
    alone = evaluate(trained, student_source="recipe", output=tmp_path / "alone.json")
    assert "untrained_student" not in alone  # it is the student there
    for key in ("kl_teacher_student", "top1_agreement"):
        assert untrained[key] == pytest.approx(alone[key], rel=1e-6)
    assert untrained["perplexity"] == pytest.approx(alone["student"]["perplexity"], rel=1e-6)
    assert untrained["params"] == metrics["student"]["params"]
    assert untrained["model"] == "tiny-student" and metrics["student"]["model"].endswith("student")
    assert metrics["kl_teacher_student"] < untrained["kl_teacher_student"]  # it learned
    assert metrics["teacher"]["perplexity"] == pytest.approx(alone["teacher"]["perplexity"])
    saved = json.loads((trained.run_dir / "eval.json").read_text())
    assert saved["untrained_student"] == pytest.approx(untrained)


def test_every_model_answers_the_first_held_out_prompts(trained):
    metrics = evaluate(trained)
    rows = metrics["sample_answers"]
    assert len(rows) == 3
    for row in rows:
        assert set(row) == {"prompt", "reference", "teacher", "student", "untrained_student"}
        assert row["prompt"].startswith("Reverse: ") and all(
            isinstance(row[role], str) for role in ("teacher", "student", "untrained_student")
        )


def test_the_baseline_and_the_samples_can_be_turned_off(tmp_path, dataset):
    recipe = validate_recipe(
        recipe_dict(tmp_path, dataset, train={"max_steps": 2}, eval={"baseline": False, "sample_answers": 0})
    )
    train(recipe)
    metrics = evaluate(recipe)
    assert "untrained_student" not in metrics and metrics["sample_answers"] == []


def test_task_accuracy_of_the_untrained_student_is_graded_too(trained, tmp_path):
    recipe = trained.model_copy(
        update={"eval": trained.eval.model_copy(update={"tasks": ["reverse", "sort"], "per_task": 2})}
    )
    metrics = evaluate(recipe)
    assert set(metrics["untrained_student"]["accuracy_per_task"]) == {"overall", "reverse", "sort"}
    rows = [json.loads(line) for line in (trained.run_dir / "eval_samples.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {"untrained_student", "untrained_student_correct"} <= set(rows[0])
