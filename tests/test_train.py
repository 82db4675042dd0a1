"""The trainer: token-mean accumulation, fused == dense, learning, checkpoints, resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from distil.errors import CheckpointError
from distil.evaluate import evaluate
from distil.losses import IGNORE_INDEX, Objective, masked_token_mean
from distil.recipe import validate_recipe
from distil.train.loop import next_micro_batches
from distil.train.loss import accumulate_gradients
from distil.train.session import prepare_session
from distil.train.stage import train
from tests.conftest import recipe_dict


def _grads(session):
    return {n: p.grad.clone() for n, p in session.student.model.named_parameters()}


def _session(tmp_path, dataset, **sections):
    return prepare_session(validate_recipe(recipe_dict(tmp_path, dataset, **sections)))


def test_accumulated_micro_batches_equal_one_large_batch(tmp_path, dataset):
    """Uneven micro-batches: each token weighs the same, as in one batch of all rows."""
    objective = {"divergence": "generalized_jsd", "temperature": 2.0, "ce_weight": 0.5, "fused": "never"}
    big = _session(tmp_path, dataset, seed=1, distill=objective, train={"batch_size": 8, "grad_accum": 1})
    small = _session(tmp_path, dataset, seed=1, distill=objective, train={"batch_size": 4, "grad_accum": 2})
    big_batches, small_batches = next_micro_batches(big), next_micro_batches(small)
    counts = [int((b.labels != IGNORE_INDEX).sum()) for b in small_batches]
    assert counts[0] != counts[1], "the test needs micro-batches of different token counts"
    loss_big = accumulate_gradients(big, big_batches)
    loss_small = accumulate_gradients(small, small_batches)
    assert loss_small == pytest.approx(loss_big, rel=1e-5)

    # naive reference: one forward over all rows, masked token mean of the objective
    reference = _session(tmp_path, dataset, seed=1, distill=objective)
    batch = big_batches[0]
    labels = batch.labels[:, 1:]
    student = reference.student.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[
        :, :-1
    ]
    with torch.no_grad():
        teacher = reference.teacher.model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask
        ).logits[:, :-1]
    per_token = Objective("generalized_jsd", 2.0, ce_weight=0.5).per_token(
        student.flatten(0, 1), teacher.flatten(0, 1), labels.flatten()
    )
    loss = masked_token_mean(per_token, labels.flatten() != IGNORE_INDEX)
    loss.backward()
    assert loss.item() == pytest.approx(loss_big, rel=1e-5)
    for name, grad in _grads(reference).items():
        torch.testing.assert_close(_grads(big)[name], grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(_grads(small)[name], grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("divergence", ["forward_kl", "generalized_jsd", "tvd"])
def test_fused_and_dense_training_steps_agree(tmp_path, dataset, divergence):
    results = []
    for fused in ("always", "never"):
        session = _session(
            tmp_path,
            dataset,
            distill={
                "divergence": divergence,
                "fused": fused,
                "temperature": 1.5,
                "ce_weight": 0.3,
                "chunk_size": 16,
            },
        )
        assert session.fused == (fused == "always")
        loss = accumulate_gradients(session, next_micro_batches(session))
        results.append((loss, _grads(session)))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    for name, grad in results[1][1].items():
        torch.testing.assert_close(results[0][1][name], grad, rtol=1e-4, atol=1e-6)


def test_distillation_brings_the_student_closer_to_the_teacher(tmp_path, dataset):
    recipe = validate_recipe(recipe_dict(tmp_path, dataset, train={"max_steps": 30, "learning_rate": 1e-2}))
    before = evaluate(recipe, student_source="recipe", output=tmp_path / "before.json")
    result = train(recipe)
    after = evaluate(recipe)
    assert result.steps == 30 and (recipe.run_dir / "student" / "model.safetensors").is_file()
    assert after["kl_teacher_student"] < 0.85 * before["kl_teacher_student"]
    # pinned figures of this seeded tiny run: a change in the losses, data order, schedule or
    # optimiser moves them. Across instruction sets and thread counts they agree to 3e-7
    # (measured on an AVX2-only CPU, ATEN_CPU_CAPABILITY avx2 / default, 1 and 2 threads:
    # 2.3346236-2.3346240 before, 1.8440258-1.8440261 after), so 1e-5 leaves a wide margin.
    assert before["kl_teacher_student"] == pytest.approx(2.334624, rel=1e-5)
    assert after["kl_teacher_student"] == pytest.approx(1.844026, rel=1e-5)
    assert after["top1_agreement"] > before["top1_agreement"]
    log = [json.loads(line) for line in (recipe.run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(2, 31, 2))
    assert log[-1]["loss"] < log[0]["loss"]
    saved = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert saved["student"]["params"] < saved["teacher"]["params"]


def test_existing_run_needs_resume_and_the_same_recipe(tmp_path, dataset):
    raw = recipe_dict(tmp_path, dataset, train={"max_steps": 4})
    train(validate_recipe(raw))
    with pytest.raises(CheckpointError, match="pass --resume"):
        train(validate_recipe(raw))
    raw["train"]["learning_rate"] = 1e-2
    with pytest.raises(CheckpointError, match="train.learning_rate: 0.003 -> 0.01"):
        train(validate_recipe(raw), resume=True)


@pytest.fixture
def cli():
    """Start `distil` subprocesses; any still running at the end of the test is killed."""
    started: list[subprocess.Popen] = []

    def start(*args):
        process = subprocess.Popen(
            [sys.executable, "-m", "distil.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_sigkill_then_resume_ends_with_identical_weights(tmp_path, dataset, cli):
    recipe = tmp_path / "recipe.yaml"
    raw = recipe_dict(
        tmp_path, dataset, train={"max_steps": 60, "save_every": 5, "grad_accum": 2, "keep_checkpoints": 3}
    )
    recipe.write_text(yaml.safe_dump(raw))
    straight, killed = tmp_path / "straight", tmp_path / "killed"

    process = cli("train", str(recipe), "--out", str(killed))
    first_checkpoint = killed / "checkpoints" / "step-000010" / "trainer_state.json"
    deadline = time.monotonic() + 120
    while not first_checkpoint.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "student").exists(), "the run ended before it could be killed"

    resumed = cli("train", str(recipe), "--out", str(killed), "--resume")
    full = cli("train", str(recipe), "--out", str(straight))
    outputs = [proc.communicate(timeout=900) for proc in (resumed, full)]
    assert resumed.returncode == 0 and full.returncode == 0, outputs
    assert "resuming from step-0000" in outputs[0][1]
    a = load_file(straight / "student" / "model.safetensors")
    b = load_file(killed / "student" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"
    steps = [json.loads(line)["step"] for line in (killed / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(2, 61, 2)), "log lines after the checkpoint were not duplicated"
    assert os.listdir(killed / "checkpoints") == os.listdir(straight / "checkpoints")


def test_a_student_cut_from_the_teacher_trains_and_evaluates(tmp_path, dataset):
    raw = recipe_dict(
        tmp_path, dataset, student={"model": "tiny-teacher", "layers": [0, 3]}, train={"max_steps": 2}
    )
    recipe = validate_recipe(raw)
    train(recipe)
    metrics = evaluate(recipe)
    assert metrics["student"]["params"] < metrics["teacher"]["params"]
    untrained = evaluate(recipe, student_source="recipe", output=tmp_path / "untrained.json")
    assert untrained["student"]["params"] == metrics["student"]["params"]


def test_bad_data_fails_before_any_model_loads(tmp_path, monkeypatch):
    from distil.errors import DataError
    from tests.conftest import write_jsonl

    data = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "a", "response": "b"}, {"prompt": "c"}])
    recipe = validate_recipe(recipe_dict(tmp_path, data))

    def no_models(*args, **kwargs):
        raise AssertionError("a model was loaded before the data was read")

    monkeypatch.setattr("distil.train.session.load_models", no_models)
    monkeypatch.setattr("distil.evaluate.stage.load_models", no_models)
    with pytest.raises(DataError):
        prepare_session(recipe)
    with pytest.raises(DataError):
        evaluate(recipe, student_source="recipe")
