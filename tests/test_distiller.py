"""distil.Distiller: a recipe or keyword settings plus models and datasets in memory, run
through the CLI's own stages, checkpoints and resume, with callbacks at log, eval and save."""

import json

import datasets
import pytest
import torch
import yaml
from safetensors.torch import load_file

from distil import Distiller
from distil.errors import CheckpointError, DataError, ModelError, RecipeError
from distil.models import build_tiny
from tests.cli_helpers import assert_one_error_line, run_cli
from tests.conftest import recipe_dict, skill_rows, write_jsonl

TRAIN = {
    "max_steps": 8,
    "batch_size": 8,
    "learning_rate": 1e-2,
    "log_every": 2,
    "save_every": 4,
    "eval_every": 4,
    "eval_rows": 4,
}


class Recorder:
    def __init__(self, stop_at: int | None = None) -> None:
        self.events: list[tuple] = []
        self.stop_at = stop_at

    def on_log(self, step, logs):
        self.events.append(("log", step, logs))

    def on_evaluate(self, step, metrics):
        self.events.append(("eval", step, metrics))

    def on_save(self, step, checkpoint):
        self.events.append(("save", step, checkpoint))
        if step == self.stop_at:
            raise KeyboardInterrupt  # the notebook's stop button, right after a checkpoint


@pytest.fixture(scope="module")
def models():
    teacher, tokenizer = build_tiny("tiny-teacher")
    student, _ = build_tiny("tiny-student")
    return teacher, student, tokenizer


def _distiller(tmp_path, models, name="run", callbacks=(), **settings):
    teacher, student, tokenizer = models
    settings.setdefault("train_dataset", datasets.Dataset.from_list(skill_rows()))
    return Distiller(
        teacher=teacher,
        student=student,
        tokenizer=tokenizer,
        output_dir=str(tmp_path / name),
        callbacks=callbacks,
        data={"max_length": 48, "eval_fraction": 0.15},
        train=settings.pop("train", TRAIN),
        **settings,
    )


def _weights(run_dir):
    return load_file(run_dir / "student" / "model.safetensors")


def test_objects_in_memory_train_with_callbacks_at_log_eval_and_save(tmp_path, models):
    student_before = {k: v.clone() for k, v in models[1].state_dict().items()}
    recorder = Recorder()
    distiller = _distiller(tmp_path, models, callbacks=[recorder])
    result = distiller.train()

    assert result.steps == 8 and (tmp_path / "run" / "student" / "config.json").is_file()
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").open()]
    logged = [(e[1], e[2]) for e in recorder.events if e[0] == "log"]
    assert logged == [(r["step"], {k: v for k, v in r.items() if k != "step"}) for r in log]
    evaluated = [(e[1], e[2]) for e in recorder.events if e[0] == "eval"]
    assert evaluated == [
        (r["step"], {k: v for k, v in r.items() if k.startswith("eval_")}) for r in log if "eval_loss" in r
    ]
    assert [step for step, _ in evaluated] == [4, 8]
    saved = [(e[1], e[2]) for e in recorder.events if e[0] == "save"]
    assert [(step, path.name) for step, path in saved] == [(4, "step-000004"), (8, "step-000008")]
    assert all((path / "trainer_state.json").is_file() for _, path in saved)
    for name, tensor in models[1].state_dict().items():  # the caller's student is untouched
        assert torch.equal(tensor, student_before[name]), name
    recipe = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    named = [recipe["teacher"]["model"], recipe["student"]["model"], recipe["data"]["train"]]
    described = json.loads((tmp_path / "run" / "memory_inputs.json").read_text())
    assert sorted(described) == sorted(named)
    assert described[recipe["data"]["train"]]["rows"] == 96


def test_an_interrupted_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, models):
    _distiller(tmp_path, models, "straight").train()
    with pytest.raises(KeyboardInterrupt):
        _distiller(tmp_path, models, "stopped", callbacks=[Recorder(stop_at=4)]).train()
    assert not (tmp_path / "stopped" / "student").exists()
    again = _distiller(tmp_path, models, "stopped")  # new objects' names: the same content
    with pytest.raises(CheckpointError, match="resume"):
        again.train()
    assert again.train(resume=True).steps == 8
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "stopped")
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_changed_weights_are_another_teacher_and_its_checkpoints_are_refused(tmp_path, models):
    _distiller(tmp_path, models, train={**TRAIN, "max_steps": 4}).train()
    teacher, student, tokenizer = models
    changed, _ = build_tiny("tiny-teacher")
    with torch.no_grad():
        next(changed.parameters()).add_(0.01)
    other = Distiller(
        teacher=changed,
        student=student,
        tokenizer=tokenizer,
        train_dataset=datasets.Dataset.from_list(skill_rows()),
        output_dir=str(tmp_path / "run"),
        data={"max_length": 48, "eval_fraction": 0.15},
        train={**TRAIN, "max_steps": 4},
    )
    assert other.recipe.teacher.model != _distiller(tmp_path, models).recipe.teacher.model
    with pytest.raises(CheckpointError, match="teacher.model"):
        other.train(resume=True)


def test_a_memory_name_no_process_holds_is_one_line_on_the_command_line(
    tmp_path, dataset, monkeypatch, capsys
):
    raw = recipe_dict(tmp_path, dataset, teacher={"model": "memory:model-0123456789abcdef"})
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = run_cli(monkeypatch, capsys, "train", str(path))
    assert_one_error_line(
        result, "memory:model-0123456789abcdef names an object passed in memory to distil.Distiller"
    )


def test_keyword_settings_merge_key_by_key_over_a_recipe_file(tmp_path, dataset):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe_dict(tmp_path, dataset)))
    distiller = Distiller(path, train={"max_steps": 3}, seed=5)
    assert (distiller.recipe.train.max_steps, distiller.recipe.train.batch_size) == (3, 8)
    assert distiller.recipe.seed == 5 and distiller.recipe.data.train == str(dataset)
    with pytest.raises(
        RecipeError,
        match=r"unknown key train.max_step \(did you mean "
        r"max_steps\?\)",
    ):
        Distiller(path, train={"max_step": 3})


def test_rows_as_a_list_and_a_stream_as_an_iterable_dataset(tmp_path, models):
    rows = skill_rows(40)
    listed = _distiller(tmp_path, models, train_dataset=rows)
    assert listed.recipe.data.train.startswith("memory:dataset-")
    assert not listed.recipe.data.streaming
    stream = datasets.IterableDataset.from_generator(lambda: iter(rows))
    streamed = _distiller(
        tmp_path,
        models,
        "streamed",
        train_dataset=stream,
        train={**TRAIN, "max_steps": 2, "eval_every": None},
    )
    assert streamed.recipe.data.streaming
    assert streamed.train().steps == 2
    with pytest.raises(DataError, match="IterableDataset, read only as a stream"):
        Distiller(
            teacher=models[0],
            student=models[1],
            tokenizer=models[2],
            train_dataset=stream,
            data={"streaming": False},
        )
    with pytest.raises(DataError, match="must hold row dicts"):
        _distiller(tmp_path, models, train_dataset=["not a row"])


def test_a_model_object_without_its_tokenizer_is_refused(models):
    with pytest.raises(ModelError, match="needs its tokenizer; pass tokenizer="):
        Distiller(teacher=models[0], student="tiny-student", train_dataset="data.jsonl")
    with pytest.raises(ModelError, match="tokenizer= goes with a model passed as an object"):
        Distiller(teacher="tiny-teacher", student="tiny-student", tokenizer=models[2])


def test_run_runs_the_cli_stages_and_skips_them_when_done(tmp_path, models, capsys):
    data = write_jsonl(tmp_path / "rows.jsonl", skill_rows())
    distiller = _distiller(
        tmp_path,
        models,
        train_dataset=data,
        train={**TRAIN, "max_steps": 2, "eval_every": None},
        eval={"max_samples": 8, "sample_answers": 0, "baseline": False},
    )
    assert distiller.run() == []
    stages = tmp_path / "run" / "stages"
    assert sorted(p.stem for p in stages.iterdir()) == ["eval", "report", "train"]
    capsys.readouterr()
    distiller.run()
    assert capsys.readouterr().err.count("done already") == 3


def test_bench_times_a_teacher_passed_in_memory_from_a_saved_copy(tmp_path, models):
    from distil import inmemory
    from distil.bench.run import _teacher_folder
    from distil.models import load_model

    held = inmemory.hold_model(models[0], models[2])
    folder = _teacher_folder(held.name, tmp_path, seed=0)  # the timing process loads a folder
    copy = load_model(folder, "teacher").model
    for name, tensor in models[0].state_dict().items():
        assert torch.equal(copy.state_dict()[name], tensor), name
