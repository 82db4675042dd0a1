"""Recipes: every shipped one validates; overrides; errors name the field and the fix."""

from pathlib import Path

import pytest
import yaml

from distil.errors import RecipeError
from distil.recipe import Recipe, load_recipe, recipe_reference
from tests.conftest import REPO

SHIPPED = sorted(p for p in (REPO / "recipes").rglob("*.yaml") if "accelerate" not in p.parts)
ACCELERATE_CONFIGS = sorted((REPO / "recipes" / "accelerate").glob("*.yaml"))


def test_there_are_shipped_recipes():
    assert SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_recipe_validates(path):
    recipe = load_recipe(path)
    assert isinstance(recipe, Recipe)
    if recipe.synth is not None:  # data.train is what the synth stage will write
        return
    synthesised = {
        f"runs/{load_recipe(p).name}/data/train.parquet" for p in SHIPPED if load_recipe(p).synth is not None
    }
    if recipe.data.train not in synthesised:  # else another shipped recipe's synth writes it
        assert Path(recipe.data.train).exists(), "data paths resolve against the recipe's folder"


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_shipped_accelerate_configs_load_with_accelerate(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    kind = {"ddp": "MULTI_GPU", "fsdp2": "FSDP"}.get(path.stem, "DEEPSPEED")
    assert config.distributed_type == kind and config.num_processes == 8
    if kind == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == int(path.stem[-1])


def _write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


MINIMAL = "teacher: {model: tiny-teacher}\nstudent: {model: tiny-student}\ndata: {train: d.jsonl}\n"


def test_overrides_set_nested_values_with_yaml_types(tmp_path):
    recipe = load_recipe(
        _write(tmp_path, MINIMAL),
        ["train.max_steps=7", "distill.temperature=2.5", "distill.fused=never", "name=x"],
    )
    assert recipe.train.max_steps == 7 and recipe.distill.temperature == 2.5
    assert recipe.distill.fused == "never" and recipe.run_dir == Path("runs/x")


@pytest.mark.parametrize(
    "text,overrides,match",
    [
        ("teacher: [unclosed\n", [], r"not valid YAML at line 2, column 1"),
        ("- a\n- b\n", [], "must hold a YAML mapping"),
        (MINIMAL + "trian: {max_steps: 3}\n", [], r"unknown key trian \(did you mean train\?\)"),
        (
            MINIMAL + "train: {batchsize: 3}\n",
            [],
            r"unknown key train.batchsize \(did you mean batch_size\?\)",
        ),
        ("teacher: {model: a}\ndata: {train: d}\n", [], "student is required"),
        (MINIMAL, ["distill.temperature=0"], r"distill.temperature: Input should be greater than 0"),
        (MINIMAL, ["distill.divergence=kl"], r"distill.divergence: Input should be 'forward_kl'"),
        (MINIMAL, ["distill.kd_weight=0"], "set at least one above 0"),
        (MINIMAL, ["train.max_steps"], "not of the form key.sub=value"),
        (MINIMAL, ["teacher.model.x=1"], "teacher.model is a value, not a section"),
    ],
)
def test_errors_name_the_field_and_fix(tmp_path, text, overrides, match):
    with pytest.raises(RecipeError, match=match):
        load_recipe(_write(tmp_path, text), overrides)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_every_field_is_documented():
    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no docstring"
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                walk(annotation)

    walk(Recipe)


def test_docs_reference_is_current():
    """docs/recipe.md is generated; regenerate with `distil recipe docs > docs/recipe.md`."""
    assert (REPO / "docs" / "recipe.md").read_text() == recipe_reference()


def test_dumped_recipe_loads_back(tmp_path):
    from distil.recipe import dump_recipe

    recipe = load_recipe(_write(tmp_path, MINIMAL))
    again = Recipe.model_validate(yaml.safe_load(dump_recipe(recipe)))
    assert again == recipe
