"""The command line: help, a whole tiny run, and bad input as one line with exit code 2."""

import subprocess
import sys

import pytest
import yaml

from tests.conftest import recipe_dict, write_jsonl


def distil(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distil.cli", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def test_help_lists_the_commands_and_their_options():
    result = distil("--help")
    assert result.returncode == 0
    for command in ("train", "eval", "run", "report", "recipe"):
        assert command in result.stdout
    train_help = distil("train", "--help").stdout
    assert "--resume" in train_help and "--out" in train_help and "key.sub=value" in train_help


def _recipe(tmp_path, raw) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw) if isinstance(raw, dict) else raw)
    return str(path)


def _mismatched_student(tmp_path) -> str:
    from distil.models import build_tiny

    model, tokenizer = build_tiny("tiny-student")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|tool|>"]})
    model.save_pretrained(tmp_path / "other")
    tokenizer.save_pretrained(tmp_path / "other")
    return str(tmp_path / "other")


BAD_INPUTS = {
    "missing recipe": (lambda tmp, data: str(tmp / "nope.yaml"), "recipe file not found"),
    "malformed yaml": (lambda tmp, data: _recipe(tmp, "teacher: {model: [x\n"), "not valid YAML"),
    "unknown key": (
        lambda tmp, data: _recipe(tmp, {**recipe_dict(tmp, data), "traine": {}}),
        "unknown key traine (did you mean train?)",
    ),
    "missing data": (
        lambda tmp, data: _recipe(tmp, recipe_dict(tmp, tmp / "none.jsonl")),
        "dataset not found",
    ),
    "empty dataset": (
        lambda tmp, data: _recipe(tmp, recipe_dict(tmp, write_jsonl(tmp / "e.jsonl", []))),
        "is empty (no rows)",
    ),
    "vocab mismatch": (
        lambda tmp, data: _recipe(tmp, recipe_dict(tmp, data, student={"model": _mismatched_student(tmp)})),
        "different vocabularies",
    ),
    "missing model": (
        lambda tmp, data: _recipe(tmp, recipe_dict(tmp, data, teacher={"model": str(tmp / "no-model")})),
        "model folder not found",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_clear_line(tmp_path, dataset, case):
    make, message = BAD_INPUTS[case]
    result = distil("train", make(tmp_path, dataset))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "run" / "student").exists()


def test_run_trains_evaluates_then_skips_finished_stages(tmp_path, dataset):
    recipe = _recipe(tmp_path, recipe_dict(tmp_path, dataset, train={"max_steps": 4}))
    first = distil("run", recipe)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "run" / "eval.json").is_file() and (tmp_path / "run" / "student").is_dir()
    second = distil("run", recipe)
    assert second.returncode == 0 and second.stderr.count("done already") == 3
    assert (tmp_path / "run" / "report.html").is_file()
    old = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    third = distil("run", recipe, "train.max_steps=5")
    assert third.returncode == 2 and "train.max_steps: 4 -> 5" in third.stderr
    assert "--restart" in third.stderr and "Traceback" not in third.stderr
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == old
    fourth = distil("run", recipe, "train.max_steps=5", "--restart")
    assert fourth.returncode == 0 and "training from scratch" in fourth.stderr
    (aside,) = (tmp_path / "run" / "previous").iterdir()
    assert sorted(p.name for p in (aside / "checkpoints").iterdir()) == old


@pytest.mark.slow
def test_a_variant_failing_parity_stops_neither_bench_nor_report(tmp_path, dataset):
    import json

    impossible = {
        "formats": ["hf"],
        "prompts_per_task": 1,
        "compared_prompts": 2,
        "max_new_tokens": 4,
        "thresholds": {"half": {"max_abs_logit_diff": 1e-9}},
    }
    bench = {"new_tokens": 2, "batch_sizes": [1], "repeats": 1, "warmup": 0}
    recipe = _recipe(
        tmp_path, recipe_dict(tmp_path, dataset, train={"max_steps": 2}, export=impossible, bench=bench)
    )
    run = tmp_path / "run"
    first = distil("run", recipe)
    assert first.returncode == 3, first.stderr
    last = first.stderr.strip().splitlines()[-1]
    assert last.startswith("error: parity check failed for hf-float16 (max |logit diff|")
    assert "--allow-parity-failure (in a recipe: export.allow_parity_failure: true)" in last
    assert (run / "export" / "failed" / "hf-float16").is_dir()
    assert json.loads((run / "export" / "parity.json").read_text())["variants"][0]["passed"] is False
    assert "student" in json.loads((run / "eval.json").read_text())["efficiency"]  # bench ran
    assert "**hf-float16 failed parity**" in (run / "report.md").read_text()  # so did the report
    allowed = distil("run", recipe, "export.allow_parity_failure=true")  # decides no file:
    assert allowed.returncode == 0 and "export: done already" in allowed.stderr, allowed.stderr
    flag = distil("run", recipe, "--allow-parity-failure")
    assert flag.returncode == 0, flag.stderr
    assert flag.stdout.strip().splitlines()[-1] == (
        f"run finished: {run}; hf-float16 failed parity, set aside in {run / 'export' / 'failed'} (allowed)"
    )


def test_serve_and_audit_options_are_the_fields_of_their_settings_models():
    """Each option, its default and its help are written once, in a settings model."""
    import typer

    from distil.audit.settings import ApiAudit, ModelAudit, TextAudit
    from distil.cli import app
    from distil.commands.options import field_help, option_name
    from distil.server.settings import ServerSettings, StartSettings

    root = typer.main.get_command(app)
    audit = root.commands["audit"].commands
    for command, models, arguments in [
        (root.commands["serve"], [ServerSettings, StartSettings], {"model"}),
        (audit["text"], [TextAudit], {"files"}),
        (audit["model"], [ModelAudit], {"model"}),
        (audit["api"], [ApiAudit], {"url"}),
    ]:
        params = {p.name: p for p in command.params if p.name != "help"}
        fields = {name: info for model in models for name, info in model.model_fields.items()}
        assert set(params) == set(fields) | arguments, command.name
        for name, info in fields.items():
            param = params[name]
            assert field_help(info) in param.help
            if name not in arguments and not info.is_required() and name != "served_name":
                assert option_name(name) in param.opts
                assert param.default == info.get_default(call_default_factory=True), name
