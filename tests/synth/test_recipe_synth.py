"""The synth: and teacher.api: recipe sections: defaults, validation, documentation."""

from pathlib import Path

import pytest

from distil.errors import RecipeError
from distil.recipe import Recipe, load_recipe, section_model, validate_recipe
from distil.recipe.api import ApiSection
from distil.recipe.synth import SynthSection

BASE = {"teacher": {"model": "tiny-teacher"}, "student": {"model": "tiny-student"}}
SYNTH = {"prompts": {"tasks": ["all"], "per_task": 4}}
API = {"base_url": "http://127.0.0.1:8000/v1/", "api_key_env": None}


def test_synth_output_is_the_default_training_data(tmp_path):
    recipe = validate_recipe({**BASE, "output_dir": str(tmp_path / "run"), "synth": SYNTH})
    assert recipe.data.train == str(tmp_path / "run" / "data" / "train.parquet")
    explicit = validate_recipe({**BASE, "synth": SYNTH, "data": {"train": "x.jsonl"}})
    assert explicit.data.train == "x.jsonl"


def test_relative_paths_resolve_against_the_recipe(tmp_path):
    (tmp_path / "prompts.txt").write_text("a\n")
    path = tmp_path / "r.yaml"
    path.write_text(
        "teacher: {model: tiny-teacher}\nstudent: {model: tiny-student}\n"
        "synth: {prompts: {file: prompts.txt}}\n"
    )
    assert load_recipe(path).synth.prompts.file == str(tmp_path / "prompts.txt")


@pytest.mark.parametrize(
    "raw,match",
    [
        (BASE, "data.train is required .* unless a synth: section generates it"),
        ({**BASE, "synth": {"prompts": {}}}, "synth needs prompts: set synth.prompts.file and/or"),
        ({**BASE, "synth": {"prompts": {"tasks": ["nope"]}}}, r"unknown task families \['nope'\]"),
        (
            {**BASE, "synth": {**SYNTH, "samples_per_prompt": 2, "sampling": {"temperature": 0}}},
            "would repeat one greedy response",
        ),
        (
            {**BASE, "synth": {**SYNTH, "filters": {"refusal_patterns": ["(unclosed"]}}},
            "is not a valid regular expression",
        ),
        (
            {**BASE, "synth": {**SYNTH, "dedup": {"minhash_treshold": 0.9}}},
            r"unknown key synth.dedup.minhash_treshold \(did you mean minhash_threshold\?\)",
        ),
        (
            {**BASE, "teacher": {"model": "m", "api": API}, "synth": SYNTH},
            r"^recipe: teacher.api: a teacher behind an API gives no full logits.* set distill.kd_weight=0 "
            r"and distill.ce_weight=1 to train on the teacher's text \(sequence-level KD\)$",
        ),
        (
            {**BASE, "teacher": {"model": "m", "api": {"base_url": "localhost:8000"}}},
            "teacher.api.base_url: must start with http",
        ),
    ],
)
def test_invalid_synth_and_api_settings(raw, match):
    with pytest.raises(RecipeError, match=match):
        validate_recipe(raw)


def test_a_key_in_place_of_its_variable_name_is_refused_without_being_echoed():
    secret = "sk-proj-abcdef0123456789"
    raw = {**BASE, "data": {"train": "x"}, "teacher": {"model": "m", "api": {**API, "api_key_env": secret}}}
    with pytest.raises(RecipeError, match="must name an environment variable") as caught:
        validate_recipe(raw)
    assert secret not in str(caught.value)


def test_an_api_teacher_trains_on_text():
    recipe = validate_recipe(
        {
            **BASE,
            "teacher": {"model": "m", "api": API},
            "synth": SYNTH,
            "distill": {"kd_weight": 0, "ce_weight": 1},
        }
    )
    assert recipe.teacher.api.base_url == "http://127.0.0.1:8000/v1" and recipe.teacher.api.concurrency == 8


def test_every_new_field_is_documented_and_in_the_reference():
    from distil.recipe import recipe_reference

    reference = recipe_reference()

    def walk(model, prefix):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no docstring"
            assert f"| `{prefix}{name}` |" in reference, f"{prefix}{name} missing from the reference"
            nested = section_model(field.annotation)
            if nested is not None:
                walk(nested, f"{prefix}{name}.")

    walk(SynthSection, "synth.")
    walk(ApiSection, "teacher.api.")
    assert section_model(Recipe.model_fields["synth"].annotation) is SynthSection


def test_shipped_synth_recipes_validate():
    recipes = (Path(__file__).parents[2] / "recipes").rglob("*.yaml")
    shipped = [p for p in recipes if "synth:" in p.read_text()]
    assert shipped
    for path in shipped:
        recipe = load_recipe(path)
        assert recipe.synth is not None and recipe.data.train.endswith("data/train.parquet")
        if recipe.synth.prompts.file:
            assert Path(recipe.synth.prompts.file).exists()
