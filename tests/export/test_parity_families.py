"""Parity grades task accuracy on the families the recipe evaluates, and none when it
evaluates none (a free-form student is not judged on demo tasks it never saw)."""

import json

import yaml

from distil.export.stage import export_run
from distil.recipe import ExportSection, dump_recipe, validate_recipe
from distil.tasks import task_names
from tests.conftest import recipe_dict


def test_a_recipes_export_grades_the_families_its_eval_grades(tmp_path):
    data = tmp_path / "d.jsonl"
    graded = validate_recipe(recipe_dict(tmp_path, data, export={}, eval={"tasks": ["reverse"]}))
    assert graded.export.tasks == ["reverse"]
    free_form = validate_recipe(recipe_dict(tmp_path, data, export={}))
    assert free_form.eval.tasks == [] and free_form.export.tasks == []
    chosen = validate_recipe(recipe_dict(tmp_path, data, export={"tasks": ["sort"]}, eval={"tasks": ["all"]}))
    assert chosen.export.tasks == ["sort"]
    assert yaml.safe_load(dump_recipe(graded))["export"]["tasks"] == ["reverse"]  # for `distil export RUN`


def _config(tasks):
    return ExportSection(
        formats=["hf"], tasks=tasks, prompts_per_task=2, compared_prompts=2, max_new_tokens=4
    )


def test_parity_prompts_and_accuracy_come_from_the_named_families(tiny_models, tmp_path):
    export_run(tiny_models["tiny-student"], _config(["reverse", "sort"]), out=tmp_path / "e")
    parity = json.loads((tmp_path / "e" / "parity.json").read_text())
    assert parity["prompts"] == 4
    assert set(parity["reference"]["accuracy_by_task"]) == {"reverse", "sort"}
    assert set(parity["variants"][0]["accuracy_by_task"]) == {"reverse", "sort"}


def test_no_family_evaluated_means_logits_compared_and_nothing_graded(tiny_models, tmp_path):
    result = export_run(tiny_models["tiny-student"], _config([]), out=tmp_path / "e")
    parity = json.loads((tmp_path / "e" / "parity.json").read_text())
    assert parity["prompts"] == 2 * len(task_names())  # logits along default-family prompts
    assert parity["reference"]["accuracy"] is None
    variant = parity["variants"][0]
    assert variant["accuracy"] is None and variant["accuracy_delta"] is None
    assert variant["top1_agreement"] > 0.9 and result.passed
