"""Stage fingerprints: a changed field redoes the stages that depend on it, and no other."""

from distil.pipeline import Stage, run_pipeline
from distil.recipe import validate_recipe
from tests.conftest import recipe_dict


def _stages(calls):
    def record(name):
        return lambda recipe: calls.append(name)

    return (
        Stage("train", record("train")),
        Stage("eval", record("eval")),
        Stage("bench", record("bench"), enabled=lambda r: False),
    )


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


def test_a_stage_marker_holds_its_wall_and_cpu_seconds_children_included(tmp_path, dataset):
    import json
    import subprocess
    import sys
    import time

    def spin(seconds: float) -> None:
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass

    child = [
        sys.executable,
        "-c",
        "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass",
    ]
    stages = (
        Stage("train", lambda recipe: time.sleep(0.5)),
        Stage("eval", lambda recipe: (spin(0.3), subprocess.run(child, check=True))),
    )
    recipe = validate_recipe(recipe_dict(tmp_path, dataset))
    run_pipeline(recipe, stages)
    slept, worked = (
        json.loads((recipe.run_dir / "stages" / f"{name}.json").read_text()) for name in ("train", "eval")
    )
    assert slept["seconds"] >= 0.5 and slept["cpu_seconds"] < 0.2
    assert worked["cpu_seconds"] >= 0.7  # its own 0.3 s and its finished child's 0.4 s
