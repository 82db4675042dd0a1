"""--resume CHECKPOINT: training goes on from a chosen checkpoint, not only the newest; what
came after it is moved aside (never deleted), the log is cut to its step, and the run ends
with the weights of an uninterrupted one."""

import json
from functools import partial

import pytest
import torch
import yaml
from safetensors.torch import load_file

from distil.cli import resume_arguments
from distil.errors import CheckpointError
from distil.pipeline.run import Stage, run_pipeline
from distil.recipe import validate_recipe
from distil.train import run_training
from tests.cli_helpers import assert_one_error_line, run_cli
from tests.conftest import recipe_dict

TRAIN = {"max_steps": 12, "save_every": 4, "keep_checkpoints": 3, "log_every": 2, "learning_rate": 1e-2}
TIMING = ("tokens_per_s", "elapsed_s")


def _raw(tmp_path, dataset, name: str, **train) -> dict:
    return recipe_dict(tmp_path, dataset, output_dir=str(tmp_path / name), train={**TRAIN, **train})


def _weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "student" / "model.safetensors")


def _log(run_dir) -> list[dict]:
    lines = (run_dir / "train_log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def test_resuming_the_older_of_two_checkpoints_ends_as_an_uninterrupted_run(tmp_path, dataset):
    straight = validate_recipe(_raw(tmp_path, dataset, "straight", eval_every=4, eval_rows=4))
    run_training(straight)
    # a run trained without the held-out loss, rewound to step 4 and resumed with it
    rewound = validate_recipe(_raw(tmp_path, dataset, "rewound"))
    run_training(rewound)
    before = _log(rewound.run_dir)
    chosen = rewound.run_dir / "checkpoints" / "step-000004"
    again = validate_recipe(_raw(tmp_path, dataset, "rewound", eval_every=4, eval_rows=4))
    run_training(again, resume=chosen)

    a, b = _weights(straight.run_dir), _weights(rewound.run_dir)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    log = _log(rewound.run_dir)
    assert log[:2] == before[:2]  # steps 2 and 4 kept as they were
    assert log[2:] == _log(straight.run_dir)[2:]  # the rest, held-out figures included
    assert [r["step"] for r in log if "eval_ce" in r] == [8, 12]
    (aside,) = (rewound.run_dir / "previous").iterdir()
    assert sorted(p.name for p in (aside / "checkpoints").iterdir()) == ["step-000008", "step-000012"]
    assert (aside / "student" / "model.safetensors").is_file()
    assert (aside / "train_summary.json").is_file()
    assert _log(aside) == before  # the whole earlier log, kept
    assert sorted(p.name for p in (rewound.run_dir / "checkpoints").iterdir()) == [
        "step-000004",
        "step-000008",
        "step-000012",
    ]


def test_a_checkpoint_that_is_not_one_of_the_run_s_is_refused(tmp_path, dataset):
    one = validate_recipe(_raw(tmp_path, dataset, "one", max_steps=4))
    other = validate_recipe(_raw(tmp_path, dataset, "other", max_steps=4))
    run_training(one)
    run_training(other)
    with pytest.raises(
        CheckpointError,
        match="not a checkpoint of the run folder .*pass --out .*/one to resume the run it belongs to",
    ):
        run_training(other, resume=one.run_dir / "checkpoints" / "step-000004")
    with pytest.raises(CheckpointError, match="not a complete checkpoint .* this run's: step-000004"):
        run_training(other, resume=other.run_dir / "checkpoints" / "step-000099")
    with pytest.raises(CheckpointError, match="pass one of them"):
        run_training(other, resume=other.run_dir / "checkpoints" / "step-000004", restart=True)
    changed = validate_recipe(_raw(tmp_path, dataset, "other", max_steps=4, learning_rate=1e-3))
    with pytest.raises(CheckpointError, match="train.learning_rate: 0.01 -> 0.001"):
        run_training(changed, resume=other.run_dir / "checkpoints" / "step-000004")
    assert not (other.run_dir / "previous").exists()  # nothing moved on a refusal


def test_a_bare_resume_is_the_newest_and_a_checkpoint_after_it_is_its_value():
    assert resume_arguments(["train", "r.yaml", "--resume"]) == ["train", "r.yaml", "--resume=newest"]
    assert resume_arguments(["train", "--resume", "r.yaml", "train.max_steps=5"]) == [
        "train",
        "--resume=newest",
        "r.yaml",
        "train.max_steps=5",
    ]
    assert resume_arguments(["train", "r.yaml", "--resume", "runs/x/checkpoints/step-000040/"]) == [
        "train",
        "r.yaml",
        "--resume",
        "runs/x/checkpoints/step-000040/",
    ]
    assert resume_arguments(["run", "--resume"]) == ["run", "--resume=newest"]
    assert resume_arguments(["eval", "--resume"]) == ["eval", "--resume"]


def test_the_train_command_resumes_a_chosen_checkpoint(tmp_path, dataset, monkeypatch, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(_raw(tmp_path, dataset, "run", max_steps=8)))
    assert run_cli(monkeypatch, capsys, "train", str(recipe)).returncode == 0
    chosen = tmp_path / "run" / "checkpoints" / "step-000004"
    result = run_cli(monkeypatch, capsys, "train", str(recipe), "--resume", str(chosen))
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stderr.split())
    assert "resuming step-000004: step-000008 and what they led to moved to" in said
    assert "resuming from step-000004 (step 4 of 8)" in said
    bare = run_cli(monkeypatch, capsys, "train", str(recipe), "--resume", "train.log_every=4")
    assert bare.returncode == 0 and "student written to" in bare.stdout
    wrong = run_cli(
        monkeypatch,
        capsys,
        "train",
        str(recipe),
        "--resume",
        str(tmp_path / "run" / "checkpoints" / "step-000005"),
    )
    assert_one_error_line(wrong, "not a complete checkpoint")


def test_run_resume_redoes_training_from_the_checkpoint_and_the_stages_after_it(tmp_path, dataset):
    recipe = validate_recipe(_raw(tmp_path, dataset, "run", max_steps=8))
    evaluated = []

    def fake_eval(recipe):
        evaluated.append(recipe.run_dir)
        (recipe.run_dir / "eval.json").write_text("{}")

    def stages(resume=True):
        return (
            Stage("train", partial(run_training, resume=resume), outputs=("checkpoints",)),
            Stage("eval", fake_eval, outputs=("eval.json",)),
        )

    run_pipeline(recipe, stages=stages())
    run_pipeline(recipe, stages=stages())
    assert len(evaluated) == 1  # the second run skipped both
    chosen = recipe.run_dir / "checkpoints" / "step-000004"
    run_pipeline(recipe, stages=stages(chosen), resume_from=chosen)
    assert len(evaluated) == 2 and (recipe.run_dir / "student").is_dir()
    aside = sorted(p.name for p in (recipe.run_dir / "previous").iterdir())
    assert [name.split("-")[0] for name in aside] == ["eval", "train"]
    with pytest.raises(CheckpointError, match="pass one"):
        run_pipeline(recipe, stages=stages(chosen), resume_from=chosen, force=True)
