"""Held-out loss during training (train.eval_every): the figures against a float64 reference,
what each teacher signal allows, and weights bit for bit those of a run without it."""

import json

import pytest
import torch
from safetensors.torch import load_file

from distil.capture import capture
from distil.data import encode_pairs
from distil.errors import DataError
from distil.loading import load_splits
from distil.models import load_model
from distil.recipe import validate_recipe
from distil.train.session import prepare_session
from distil.train.stage import train
from tests.conftest import recipe_dict


def _log(recipe) -> list[dict]:
    return [json.loads(line) for line in (recipe.run_dir / "train_log.jsonl").read_text().splitlines()]


def _reference(recipe, rows: int) -> dict[str, float]:
    """eval_ce and eval_kl (T = distill.temperature) of the trained student on the first held-out
    rows: per token, float64, one row at a time, from the saved models' logits."""
    _, held = load_splits(recipe.data, recipe.seed)
    student = load_model(str(recipe.run_dir / "student"), "student")
    teacher = load_model("tiny-teacher", "teacher", seed=recipe.seed)
    examples = encode_pairs(student.tokenizer, held[:rows], recipe.data.template, recipe.data.max_length)
    temperature, ce, kl, tokens = recipe.distill.temperature, 0.0, 0.0, 0
    for example in examples:
        ids = torch.tensor([example.input_ids])
        with torch.no_grad():
            s = student.model(input_ids=ids).logits[0].double()
            t = teacher.model(input_ids=ids).logits[0].double()
        for position, label in enumerate(example.labels[1:]):
            if label == -100:
                continue
            ce -= torch.log_softmax(s[position], -1)[label].item()
            p = torch.softmax(t[position] / temperature, -1)
            q = torch.softmax(s[position] / temperature, -1)
            kl += (p * (p.log() - q.log())).sum().item()
            tokens += 1
    return {"eval_ce": ce / tokens, "eval_kl": kl / tokens}


def test_held_out_figures_are_logged_and_match_a_float64_reference(tmp_path, dataset):
    recipe = validate_recipe(
        recipe_dict(
            tmp_path,
            dataset,
            distill={"temperature": 2.0, "ce_weight": 0.5},
            train={"max_steps": 8, "log_every": 2, "eval_every": 3, "eval_rows": 6, "batch_size": 4},
        )
    )
    train(recipe)
    log = _log(recipe)
    assert [r["step"] for r in log] == [2, 3, 4, 6, 8]  # an eval step is a logged step
    evaluated = [r for r in log if "eval_ce" in r]
    assert [r["step"] for r in evaluated] == [3, 6, 8]  # every 3 steps and the last
    assert all(r.keys() >= {"loss", "eval_ce", "eval_loss", "eval_kl"} for r in evaluated)
    last, reference = evaluated[-1], _reference(recipe, rows=6)
    assert last["eval_ce"] == pytest.approx(reference["eval_ce"], rel=1e-5)
    assert last["eval_kl"] == pytest.approx(reference["eval_kl"], rel=1e-4)
    # the objective: kd_weight * T^2 * KL + ce_weight * CE
    assert last["eval_loss"] == pytest.approx(4 * last["eval_kl"] + 0.5 * last["eval_ce"], rel=1e-4)


def test_evaluating_changes_no_weight(tmp_path, dataset):
    """With LoRA dropout, which draws from the RNG at every training forward: the held-out
    forwards (eval mode, forked RNG) leave the weights bit for bit as without them."""
    weights = []
    for every in (None, 2):
        raw = recipe_dict(
            tmp_path,
            dataset,
            output_dir=str(tmp_path / f"run-{every}"),
            student={"model": "tiny-student", "lora": {"r": 4, "dropout": 0.2}},
            train={"max_steps": 6, "eval_every": every, "eval_rows": 5, "learning_rate": 1e-2},
        )
        recipe = validate_recipe(raw)
        train(recipe)
        weights.append(load_file(recipe.run_dir / "student" / "model.safetensors"))
        assert any("eval_ce" in r for r in _log(recipe)) == (every is not None)
    assert weights[0].keys() == weights[1].keys()
    for name, weight in weights[0].items():
        assert torch.equal(weight, weights[1][name]), name


def _figures(raw) -> set[str]:
    session = prepare_session(validate_recipe(raw))
    assert session.held_out is not None
    figures = session.held_out.evaluate(session.module)
    assert session.module.training, "train mode restored"
    session.close()
    return set(figures)


EVAL = {"eval_every": 5, "eval_rows": 4}


def test_each_signal_logs_what_it_can(tmp_path, dataset):
    assert _figures(recipe_dict(tmp_path, dataset, train=EVAL)) == {"eval_ce", "eval_loss", "eval_kl"}
    assert _figures(recipe_dict(tmp_path, dataset, distill={"kd_weight": 0, "ce_weight": 1}, train=EVAL)) == {
        "eval_ce",
        "eval_loss",
    }
    assert _figures(
        recipe_dict(
            tmp_path,
            dataset,
            teacher={"model": "demo"},
            cross_tokenizer={"method": "aligned"},
            distill={"fused": "never"},
            train=EVAL,
        )
    ) == {"eval_ce", "eval_loss"}


def test_a_store_without_the_held_out_rows_gives_the_cross_entropy_only(tmp_path, dataset, capsys):
    raw = recipe_dict(tmp_path, dataset, capture={"top_k": 16, "batch_size": 32}, train=EVAL)
    capture(validate_recipe(raw))
    assert _figures({**raw, "signals": {"path": "capture"}}) == {"eval_ce"}
    said = " ".join(capsys.readouterr().err.split())
    assert "eval_ce (the store holds no signals of the held-out rows" in said


def test_a_store_that_holds_the_held_out_rows_gives_the_live_figures(tmp_path, dataset):
    """Captured over every row (top-k = the whole vocabulary, float32): the store's eval_kl
    and eval_loss are the live teacher's."""
    everything = recipe_dict(
        tmp_path, dataset, capture={"top_k": 261, "batch_size": 32, "logprob_dtype": "float32"}
    )
    everything["data"]["eval_fraction"] = 0.0
    capture(validate_recipe(everything))
    store = str(tmp_path / "run" / "signals")
    live = validate_recipe(recipe_dict(tmp_path, dataset, distill={"fused": "never"}, train=EVAL))
    stored = validate_recipe(
        recipe_dict(tmp_path, dataset, distill={"fused": "never"}, train=EVAL, signals={"path": store})
    )
    figures = []
    for recipe in (live, stored):
        session = prepare_session(recipe)
        figures.append(session.held_out.evaluate(session.module))
        session.close()
    assert figures[1].keys() == figures[0].keys() == {"eval_ce", "eval_loss", "eval_kl"}
    for name, value in figures[0].items():
        assert figures[1][name] == pytest.approx(value, rel=1e-4, abs=1e-6), name


def test_eval_every_without_held_out_rows_is_refused(tmp_path, dataset):
    raw = recipe_dict(tmp_path, dataset, train=EVAL)
    raw["data"]["eval_fraction"] = 0.0
    with pytest.raises(DataError, match="train.eval_every needs held-out rows"):
        prepare_session(validate_recipe(raw))


def test_eval_kl_averages_over_the_positions_with_a_teacher_distribution():
    from types import SimpleNamespace

    from distil.losses import TopKTeacher
    from distil.train.heldout import _counted

    ids, values = torch.zeros(4, 2, dtype=torch.long), torch.zeros(4, 2)
    marked = TopKTeacher(ids, values, values[:, 0], torch.tensor([True, False, True, False]))
    batch = SimpleNamespace(teacher=marked, token_index=torch.arange(4))
    assert (_counted("eval_kl", batch), _counted("eval_loss", batch)) == (2, 4)
    unmarked = SimpleNamespace(teacher=TopKTeacher(ids, values, values[:, 0]), token_index=torch.arange(4))
    assert _counted("eval_kl", unmarked) == 4
    assert _counted("eval_kl", SimpleNamespace(teacher=None, token_index=torch.arange(4))) == 4
