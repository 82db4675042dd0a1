"""vLLM as a generation engine (TRL's use_vllm): asked for on-policy samples or a local
teacher's synth answers where vLLM cannot run, it is refused in one line before any work,
naming what this machine lacks and what to use instead. Where it can run, synth uses it (a
teacher with files to load; tests/teachers/test_vllm_engine.py) and so does on-policy
sampling (tests/test_train_onpolicy_vllm.py); a teacher behind teacher.api has no engine to
choose."""

import pytest
import yaml

from distil import generators
from distil.errors import RecipeError
from distil.recipe import validate_recipe
from tests.cli_helpers import assert_one_error_line, run_cli
from tests.conftest import recipe_dict, write_jsonl
from tests.synth.conftest import synth_recipe

ON_POLICY = {"on_policy": {"lmbda": 0.5, "generator": "vllm"}}


def _write(tmp_path, raw: dict):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.fixture
def seeds(tmp_path):
    return write_jsonl(tmp_path / "seeds.jsonl", [{"prompt": "Name a prime number."}])


@pytest.fixture
def no_vllm(monkeypatch):
    """This machine as the tests see it, whatever is installed: no vllm package, no GPU."""
    monkeypatch.setattr(
        generators,
        "vllm_missing",
        lambda: [
            "the vllm package is not installed",
            "there is no CUDA GPU (torch.cuda.is_available() is false)",
        ],
    )


@pytest.mark.parametrize("command", ["train", "run"])
def test_on_policy_vllm_is_refused_in_one_line_before_any_work(
    tmp_path, dataset, monkeypatch, capsys, no_vllm, command
):
    recipe = _write(tmp_path, recipe_dict(tmp_path, dataset, distill=ON_POLICY))
    line = assert_one_error_line(
        run_cli(monkeypatch, capsys, command, recipe),
        "distill.on_policy.generator=vllm needs vLLM on a CUDA GPU",
    )
    assert "the vllm package is not installed" in line and "no CUDA GPU" in line
    assert "set distill.on_policy.generator=hf (transformers' generate)" in line
    assert not (tmp_path / "run").exists()


def test_synth_vllm_is_refused_naming_vllm_serve(tmp_path, seeds, monkeypatch, capsys, no_vllm):
    recipe = _write(tmp_path, synth_recipe(tmp_path, seeds, generator="vllm"))
    line = assert_one_error_line(
        run_cli(monkeypatch, capsys, "synth", recipe), "synth.generator=vllm needs vLLM on a CUDA GPU"
    )
    assert "`vllm serve`" in line and "teacher.api" in line
    assert not (tmp_path / "run" / "data").exists()


def test_with_vllm_and_a_gpu_on_policy_passes(monkeypatch, tmp_path, dataset):
    monkeypatch.setattr(generators, "vllm_missing", lambda: [])
    generators.check_generators(validate_recipe(recipe_dict(tmp_path, dataset, distill=ON_POLICY)))
    # (the sampling itself: tests/test_train_onpolicy_vllm.py)


def test_with_vllm_and_a_gpu_synth_from_a_folder_passes(monkeypatch, tmp_path, seeds):
    monkeypatch.setattr(generators, "vllm_missing", lambda: [])
    raw = synth_recipe(tmp_path, seeds, generator="vllm")
    raw["teacher"] = {"model": "demo"}
    generators.check_generators(validate_recipe(raw))


def test_synth_vllm_refuses_a_model_built_in_process(tmp_path, seeds, monkeypatch, capsys):
    monkeypatch.setattr(generators, "vllm_missing", lambda: [])
    recipe = _write(tmp_path, synth_recipe(tmp_path, seeds, generator="vllm"))
    line = assert_one_error_line(
        run_cli(monkeypatch, capsys, "synth", recipe),
        "synth.generator=vllm loads teacher.model from files, and tiny-teacher is built in this process",
    )
    assert "set synth.generator=hf" in line and "save_pretrained" in line
    assert not (tmp_path / "run").exists()


def test_vllm_off_policy_or_hf_is_not_checked(tmp_path, dataset, monkeypatch):
    monkeypatch.setattr(generators, "vllm_missing", lambda: pytest.fail("vLLM looked for"))
    for distill in (
        {"on_policy": {"lmbda": 0.0, "generator": "vllm"}},
        {"on_policy": {"lmbda": 0.5, "generator": "hf"}},
    ):
        generators.check_generators(validate_recipe(recipe_dict(tmp_path, dataset, distill=distill)))


def test_what_this_machine_lacks_is_read_from_it(monkeypatch):
    import importlib.util

    import torch

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert generators.vllm_missing() == [
        "the vllm package is not installed",
        "there is no CUDA GPU (torch.cuda.is_available() is false)",
    ]


def test_an_api_teacher_has_no_engine_to_choose(tmp_path, seeds):
    raw = synth_recipe(tmp_path, seeds, generator="vllm")
    raw["teacher"] = {"model": "m", "api": {"base_url": "http://127.0.0.1:9/v1"}}
    raw["distill"] = {"kd_weight": 0.0, "ce_weight": 1.0}
    with pytest.raises(
        RecipeError,
        match="synth.generator=vllm picks the engine of a local "
        "teacher; a teacher behind teacher.api generates on its server",
    ):
        validate_recipe(raw)
