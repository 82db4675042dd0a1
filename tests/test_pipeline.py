"""Stage fingerprints: a changed section reruns its stage and the ones after, not before."""

from distil.pipeline import Stage, run_pipeline
from distil.recipe import validate_recipe
from tests.conftest import recipe_dict


def _stages(calls):
    def record(name):
        return lambda recipe: calls.append(name)

    return (Stage("first", record("first"), inputs=("train.max_steps",)),
            Stage("second", record("second"), inputs=("eval",)),
            Stage("skipped", record("skipped"), inputs=(), enabled=lambda r: False))


def test_changes_rerun_the_stage_and_everything_after(tmp_path, dataset):
    calls: list[str] = []
    raw = recipe_dict(tmp_path, dataset)
    run_pipeline(validate_recipe(raw), _stages(calls))
    run_pipeline(validate_recipe(raw), _stages(calls))
    assert calls == ["first", "second"]
    raw["eval"]["max_samples"] = 5
    run_pipeline(validate_recipe(raw), _stages(calls))
    assert calls == ["first", "second", "second"]
    raw["train"]["max_steps"] = 3
    run_pipeline(validate_recipe(raw), _stages(calls))
    assert calls == ["first", "second", "second", "first", "second"]
    run_pipeline(validate_recipe(raw), _stages(calls), force=True)
    assert calls[-2:] == ["first", "second"]


def test_export_and_bench_take_the_recipe_seed_unless_they_set_their_own(tmp_path, dataset):
    from distil.recipe_edge import with_recipe_seed

    raw = recipe_dict(tmp_path, dataset, seed=5, export={}, bench={"seed": 2})
    recipe = validate_recipe(raw)
    assert with_recipe_seed(recipe.export, recipe.seed).seed == 5
    assert with_recipe_seed(recipe.bench, recipe.seed).seed == 2
