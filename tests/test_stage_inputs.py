"""What decides each stage, declared once: every declared field is real, a field outside a
stage's inputs never redoes it, and training resumes (or refuses, keeping its checkpoints)
by the same declaration."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from distil.errors import CheckpointError
from distil.pipeline import default_stages, stage_fingerprint
from distil.recipe import Recipe, load_recipe, section_model, validate_recipe
from distil.recipe.inputs import decides, declared, lookup
from distil.train import run_training
from tests.conftest import REPO, recipe_dict

DEMO = REPO / "recipes" / "demo.yaml"


def _leaves(model: type, prefix: str = "") -> set[str]:
    """Every field of the recipe schema, sections spelled out to their leaves."""
    keys = set()
    for name, field in model.model_fields.items():
        section = section_model(field.annotation)
        keys.add(prefix + name)
        if section is not None:
            keys |= _leaves(section, f"{prefix}{name}.")
    return keys


def test_every_declared_input_is_a_recipe_field_and_every_stage_has_one():
    schema = _leaves(Recipe)
    table = declared()
    assert {stage.name for stage in default_stages()} == set(table)
    for name, inputs in table.items():
        assert set(inputs.reads) <= set(table), name
        for field in (*inputs.fields, *inputs.not_deciding):
            assert field in schema, f"{name} declares {field}, which no recipe section has"


def _demo_leaves() -> list[tuple[str, object]]:
    """(dotted key, value) of every leaf of the demo recipe as loaded."""
    out: list[tuple[str, object]] = []

    def walk(prefix, node):
        if isinstance(node, dict) and node:
            for key, child in node.items():
                walk(f"{prefix}{key}.", child)
        else:
            out.append((prefix[:-1], node))

    walk("", load_recipe(DEMO).model_dump(mode="json"))
    return out


def _other_value(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 if value else 0.25
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return value[:-1] if value else None
    return None


def _changed(key: str, value) -> Recipe | None:
    """The demo recipe with one field overridden, or None when no valid change is at hand."""
    for candidate in (
        _other_value(value),
        1,
        2,
        0.5,
        None,
        "auto",
        "never",
        "float32",
        [0],
        "plain",
        "reverse_kl",
        "no",
        "bfloat16",
        "local",
        ["sorting"],
        ["END"],
        ["onnx"],
    ):
        if candidate == value:
            continue
        try:
            changed = load_recipe(DEMO, [f"{key}={json.dumps(candidate)}"])
        except Exception:
            continue
        if lookup(changed.model_dump(mode="json"), key) != value:  # "no" is False: no change
            return changed
    return None


@pytest.mark.parametrize("key,value", _demo_leaves(), ids=[k for k, _ in _demo_leaves()])
def test_a_field_redoes_exactly_the_stages_that_depend_on_it(key, value):
    base = load_recipe(DEMO)
    changed = _changed(key, value)
    if changed is None:
        pytest.skip(f"no other valid value of {key} to try")
    for stage in declared():
        depends = decides(stage, key)
        moved = stage_fingerprint(base, stage) != stage_fingerprint(changed, stage)
        if not depends:
            assert not moved, f"changing {key} would redo {stage}, which does not depend on it"
        else:
            assert moved, f"{stage} depends on {key} but would not be redone when it changes"


def test_changes_that_decide_nothing_keep_every_stage():
    base = load_recipe(DEMO)
    for override in (
        "compare=true",
        "bench.repeats=5",
        "export.opset=19",
        "capture.batch_size=3",
        "train.save_every=7",
        "train.log_every=3",
        "eval.batch_size=4",
        "distill.on_policy.vllm_gpu_memory_utilization=0.5",
    ):
        changed = load_recipe(DEMO, [override])
        assert stage_fingerprint(base, "train") == stage_fingerprint(changed, "train"), override


def _interrupted_copy(finished, target):
    """A copy of a finished run as a run killed right after its first checkpoint."""
    shutil.copytree(finished, target)
    checkpoints = sorted((target / "checkpoints").iterdir())
    for later in checkpoints[1:]:
        shutil.rmtree(later)
    for name in ("student", "train_summary.json"):
        path = target / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return checkpoints[0].name


def test_resume_after_fields_that_decide_nothing_ends_with_the_same_weights(tmp_path, dataset):
    raw = recipe_dict(tmp_path, dataset, train={"max_steps": 8, "save_every": 4, "keep_checkpoints": 3})
    run_training(validate_recipe(raw), resume=True)
    straight = load_file(tmp_path / "run" / "student" / "model.safetensors")
    for name, changes in (("compare", {"compare": True}), ("bench", {"bench": {"repeats": 5}})):
        out = tmp_path / f"resumed-{name}"
        first = _interrupted_copy(tmp_path / "run", out)
        resumed = run_training(validate_recipe({**raw, **changes, "output_dir": str(out)}), resume=True)
        assert resumed.steps == 8 and first == "step-000004"
        weights = load_file(out / "student" / "model.safetensors")
        for key, tensor in straight.items():
            assert torch.equal(tensor, weights[key]), f"{key} differs after resuming ({name})"


def test_a_changed_learning_rate_is_refused_and_the_checkpoints_stay(tmp_path, dataset):
    raw = recipe_dict(tmp_path, dataset, train={"max_steps": 8, "save_every": 4})
    run_training(validate_recipe(raw), resume=True)
    run = tmp_path / "run"
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    raw["train"]["learning_rate"] = 1e-2
    with pytest.raises(CheckpointError) as caught:
        run_training(validate_recipe(raw), resume=True)
    assert "train.learning_rate: 0.003 -> 0.01" in str(caught.value)
    assert "--restart" in str(caught.value) and "--out" in str(caught.value)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    assert (run / "student" / "model.safetensors").is_file()
    run_training(validate_recipe(raw), resume=True, restart=True)
    (aside,) = (run / "previous").iterdir()
    assert sorted(p.name for p in (aside / "checkpoints").iterdir()) == before


def test_restart_means_one_thing_for_train_and_run(tmp_path, dataset, monkeypatch, capsys):
    """`distil train --restart`, like `distil run --restart`, resumes checkpoints written under
    the same inputs (it used to set them aside and train from step 0) and sets aside only
    those written under other inputs."""
    import yaml

    from tests.cli_helpers import run_cli

    raw = recipe_dict(tmp_path, dataset, train={"max_steps": 8, "save_every": 4, "keep_checkpoints": 3})
    run_training(validate_recipe(raw))
    straight = load_file(tmp_path / "run" / "student" / "model.safetensors")
    out = tmp_path / "interrupted"
    first = _interrupted_copy(tmp_path / "run", out)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({**raw, "output_dir": str(out)}))
    resumed = run_cli(monkeypatch, capsys, "train", str(recipe), "--restart")
    assert resumed.returncode == 0 and f"resuming from {first}" in resumed.stderr
    assert not (out / "previous").exists()
    weights = load_file(out / "student" / "model.safetensors")
    assert all(torch.equal(tensor, weights[key]) for key, tensor in straight.items())
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    changed = run_cli(monkeypatch, capsys, "train", str(recipe), "train.learning_rate=0.01", "--restart")
    assert changed.returncode == 0 and "training from scratch" in changed.stderr
    (aside,) = (out / "previous").iterdir()
    assert sorted(p.name for p in (aside / "checkpoints").iterdir()) == before


def test_a_copied_run_folder_is_the_same_run(tmp_path):
    """data.train defaults to RUN/data/train.parquet after synth: a run copied or moved
    elsewhere keeps every stage's fingerprint, so nothing is redone."""
    here = load_recipe(DEMO, [f"output_dir={tmp_path / 'a'}"])
    there = load_recipe(DEMO, [f"output_dir={tmp_path / 'elsewhere' / 'b'}"])
    assert here.data.train != there.data.train
    for stage in declared():
        assert stage_fingerprint(here, stage) == stage_fingerprint(there, stage), stage


def _as_older_distil(checkpoint, dropped: str) -> None:
    """Rewrite a checkpoint's record as a distil that did not know the field `dropped` wrote it."""
    from distil.recipe.inputs import inputs_fingerprint

    path = checkpoint / "trainer_state.json"
    state = json.loads(path.read_text())
    del state["inputs"][dropped]
    state["fingerprint"] = inputs_fingerprint(state["inputs"])
    path.write_text(json.dumps(state))


def test_checkpoints_of_an_older_distil_resume_when_the_new_field_is_at_its_default(tmp_path, dataset):
    raw = recipe_dict(tmp_path, dataset, train={"max_steps": 8, "save_every": 4, "keep_checkpoints": 3})
    run_training(validate_recipe(raw))
    straight = load_file(tmp_path / "run" / "student" / "model.safetensors")
    out = tmp_path / "older"
    first = _interrupted_copy(tmp_path / "run", out)
    _as_older_distil(out / "checkpoints" / first, "train.lr_scheduler")
    changed = {**raw, "output_dir": str(out), "train": {**raw["train"], "lr_scheduler": "linear"}}
    with pytest.raises(CheckpointError, match=r"train.lr_scheduler: None -> 'linear'"):
        run_training(validate_recipe(changed), resume=True)
    resumed = run_training(validate_recipe({**raw, "output_dir": str(out)}), resume=True)
    assert resumed.steps == 8
    weights = load_file(out / "student" / "model.safetensors")
    assert all(torch.equal(tensor, weights[key]) for key, tensor in straight.items())
    newest = json.loads((out / "checkpoints" / "step-000008" / "trainer_state.json").read_text())
    assert newest["inputs"]["train.lr_scheduler"] == "cosine"  # recorded as this distil knows it


def test_a_stage_marker_of_an_older_distil_is_done_when_the_new_field_is_at_its_default(tmp_path):
    from distil.pipeline.run import _is_done
    from distil.recipe.inputs import input_values, inputs_fingerprint

    values = input_values(load_recipe(DEMO), "train")
    older = {k: v for k, v in values.items() if k != "distill.on_policy.generator"}
    marker = tmp_path / "train.json"
    marker.write_text(json.dumps({"fingerprint": inputs_fingerprint(older), "inputs": older}))
    assert _is_done(marker, values)
    assert not _is_done(marker, {**values, "distill.on_policy.generator": "vllm"})
    assert not _is_done(marker, {**values, "train.learning_rate": 1.0})
    # a marker that kept the hash alone is done only under the very same inputs
    marker.write_text(json.dumps({"fingerprint": inputs_fingerprint(older)}))
    assert not _is_done(marker, values)
    marker.write_text(json.dumps({"fingerprint": inputs_fingerprint(values)}))
    assert _is_done(marker, values)
