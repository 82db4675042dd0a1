"""Stage fingerprints: a changed field redoes the stages that depend on it, and no other."""

from distil.pipeline import Stage, run_pipeline
from distil.recipe import validate_recipe
from tests.conftest import recipe_dict


def _stages(calls):
    def record(name):
        return lambda recipe: calls.append(name)

    return (Stage("train", record("train")), Stage("eval", record("eval")),
            Stage("bench", record("bench"), enabled=lambda r: False))


def test_changes_redo_the_stage_and_those_that_read_it(tmp_path, dataset):
    calls: list[str] = []
    raw = recipe_dict(tmp_path, dataset)
    run_pipeline(validate_recipe(raw), _stages(calls))
    run_pipeline(validate_recipe(raw), _stages(calls))
    assert calls == ["train", "eval"]
    raw["eval"]["max_samples"] = 5
    run_pipeline(validate_recipe(raw), _stages(calls))
    assert calls == ["train", "eval", "eval"]
    raw["train"]["max_steps"] = 3
    run_pipeline(validate_recipe(raw), _stages(calls))
    assert calls == ["train", "eval", "eval", "train", "eval"]
    raw["train"]["log_every"] = 7  # decides nothing
    run_pipeline(validate_recipe(raw), _stages(calls))
    assert len(calls) == 5
    run_pipeline(validate_recipe(raw), _stages(calls), force=True)
    assert calls[-2:] == ["train", "eval"]


def test_export_and_bench_take_the_recipe_seed_unless_they_set_their_own(tmp_path, dataset):
    from distil.recipe import with_recipe_seed

    raw = recipe_dict(tmp_path, dataset, seed=5, export={}, bench={"seed": 2})
    recipe = validate_recipe(raw)
    assert with_recipe_seed(recipe.export, recipe.seed).seed == 5
    assert with_recipe_seed(recipe.bench, recipe.seed).seed == 2


def test_force_moves_earlier_outputs_aside_and_deletes_nothing(tmp_path, dataset):
    recipe = validate_recipe(recipe_dict(tmp_path, dataset))

    def write(recipe):
        (recipe.run_dir / "student").mkdir(parents=True, exist_ok=True)
        (recipe.run_dir / "student" / "weights").write_text(str(len(calls)))
        calls.append(1)

    calls: list[int] = []
    stages = (Stage("train", write, outputs=("student",)),)
    run_pipeline(recipe, stages)
    run_pipeline(recipe, stages, force=True)
    (aside,) = (recipe.run_dir / "previous").iterdir()
    assert aside.name.startswith("train-")
    assert (aside / "student" / "weights").read_text() == "0"
    assert (recipe.run_dir / "student" / "weights").read_text() == "1"
