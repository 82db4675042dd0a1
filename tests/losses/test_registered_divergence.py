"""A divergence added from outside the package: squared Hellinger, registered by this module.

Once registered, the recipe accepts its name and the dense, fused, sparse (stored top-k) and
aligned (cross-tokenizer) paths train with it; values are checked against a naive float64
reference written from the definition, H^2(p, q) = 1 - sum_i sqrt(p_i q_i).
"""

import json

import pytest
import torch

from distil import losses
from distil.capture import capture
from distil.losses.cross_tokenizer import aligned_divergence
from distil.recipe import validate_recipe
from distil.train.loop import next_micro_batches
from distil.train.loss import accumulate_gradients
from distil.train.session import prepare_session
from distil.train.stage import train
from tests.conftest import recipe_dict, skill_rows, write_jsonl
from tests.losses import reference
from tests.losses.test_cross_tokenizer import MAP, inputs, library_span_inputs, ref_aligned

NAME = "squared_hellinger"
OBJECTIVE = {"divergence": NAME, "temperature": 1.5, "ce_weight": 0.2}


def squared_hellinger(log_s: torch.Tensor, log_t: torch.Tensor) -> torch.Tensor:
    """0.5 * sum (sqrt p_t - sqrt p_s)^2 per row. (N, K), (N, K) -> (N,)."""
    return 0.5 * ((0.5 * log_t).exp() - (0.5 * log_s).exp()).square().sum(dim=-1)


def naive_hellinger(log_s, log_t) -> torch.Tensor:
    """1 - sum_i sqrt(p_s(i) p_t(i)) over one row, in float64."""
    p, q = torch.exp(torch.as_tensor(log_s).double()), torch.exp(torch.as_tensor(log_t).double())
    return 1 - torch.sqrt(p * q).sum()


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    losses.register_divergence(NAME, squared_hellinger)
    monkeypatch.setitem(reference.OF_LOG_PROBS, NAME, naive_hellinger)
    yield
    losses.unregister_divergence(NAME)


def _logits(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(6, 11, generator=g) * 3, torch.randn(6, 11, generator=g) * 3


@pytest.mark.parametrize("temperature", [0.7, 2.0])
def test_dense_and_fused_match_the_reference(temperature):
    student, teacher = _logits(seed=1)
    want = reference.per_row(reference.dense, student, teacher, NAME, temperature=temperature)
    got = losses.DIVERGENCES[NAME](student, teacher, temperature=temperature)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-7)
    fused = losses.fused_linear_divergence(
        student, torch.eye(11), teacher, torch.eye(11), divergence=NAME, temperature=temperature, chunk_size=4
    )
    torch.testing.assert_close(fused, got)


@pytest.mark.parametrize("k", [1, 4, 11])
def test_sparse_matches_the_reference_with_gradients(k):
    student, teacher = (x.double() for x in _logits(seed=2))
    s_ref, s = student.clone().requires_grad_(), student.clone().requires_grad_()
    want = reference.per_row(reference.sparse, s_ref, teacher, NAME, k=k, temperature=1.3)
    got = losses.sparse_divergence(NAME, s, losses.teacher_top_k(teacher, k, 1.3), temperature=1.3)
    want.sum().backward()
    got.sum().backward()
    torch.testing.assert_close(got, want.detach(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(s.grad, s_ref.grad, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("teacher_k", [None, 3])
def test_aligned_matches_the_reference(teacher_k):
    student, s_targets, teacher, t_targets = inputs(seed=1)
    span_inputs = library_span_inputs(student, s_targets, teacher, t_targets, 1.5, teacher_k)
    got = aligned_divergence(NAME, *span_inputs, torch.tensor(MAP))
    want = ref_aligned(NAME, {}, student, s_targets, teacher, t_targets, 1.5, teacher_k)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


# --- tiny training runs ---------------------------------------------------------------------


def _first_step_reference(raw: dict, k: int | None = None) -> float:
    """kd * T^2 * H^2 + ce * CE, mean over the first step's response tokens, in float64 from the
    live models' logits; over the teacher's top-k and one tail bucket when k is given."""
    recipe = validate_recipe(raw)
    session = prepare_session(recipe)
    (batch,) = next_micro_batches(session)
    ids, mask = batch.input_ids, batch.attention_mask
    with torch.no_grad():
        teacher = session.teacher.model(input_ids=ids, attention_mask=mask).logits.double()
        student = session.student.model(input_ids=ids, attention_mask=mask).logits.double()
    labels = batch.labels[:, 1:]
    keep = labels != -100
    d = recipe.distill
    total = 0.0
    for t_row, s_row, target in zip(teacher[:, :-1][keep], student[:, :-1][keep], labels[keep], strict=True):
        if k is None:
            kd = reference.dense(NAME, s_row, t_row, d.temperature)
        else:
            kd = reference.sparse(NAME, s_row, t_row, k=k, temperature=d.temperature)
        total += d.kd_weight * d.temperature**2 * float(kd)
        total += d.ce_weight * float(reference.cross_entropy(s_row, int(target)))
    return total / int(keep.sum())


def _first_step(recipe) -> float:
    session = prepare_session(recipe)
    return accumulate_gradients(session, next_micro_batches(session))


def _logged_losses(recipe) -> list[float]:
    lines = (recipe.run_dir / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


@pytest.mark.parametrize("fused", ["never", "always"])
def test_a_tiny_run_from_a_live_teacher(tmp_path, dataset, fused):
    raw = recipe_dict(
        tmp_path,
        dataset,
        distill={**OBJECTIVE, "fused": fused},
        train={"max_steps": 3, "log_every": 1, "save_every": 3},
    )
    recipe = validate_recipe(raw)
    want = _first_step_reference(raw)
    assert _first_step(recipe) == pytest.approx(want, rel=1e-5)
    # the aligned (cross-tokenizer) path with one tokenizer on both sides: the same, up to
    # the 1e-6 floor both buckets get
    aligned = validate_recipe(
        {**raw, "cross_tokenizer": {"method": "aligned"}, "distill": {**raw["distill"], "fused": "never"}}
    )
    assert _first_step(aligned) == pytest.approx(want, rel=1e-5)
    result = train(recipe)
    logged = _logged_losses(recipe)
    assert result.steps == 3 and len(logged) == 3
    assert logged[0] == pytest.approx(want, rel=1e-5)
    assert all(0 < loss < 10 for loss in logged)


def test_a_tiny_run_from_a_store(tmp_path):
    dataset = write_jsonl(tmp_path / "data.jsonl", skill_rows(40))
    raw = recipe_dict(
        tmp_path,
        dataset,
        distill=OBJECTIVE,
        capture={"top_k": 16, "logprob_dtype": "float32", "batch_size": 16},
        train={"max_steps": 3, "log_every": 1, "save_every": 3},
    )
    capture(validate_recipe(raw))
    recipe = validate_recipe({**raw, "signals": {"path": "capture"}})
    want = _first_step_reference(raw, k=16)
    assert _first_step(recipe) == pytest.approx(want, rel=1e-5)
    result = train(recipe)
    logged = _logged_losses(recipe)
    assert result.steps == 3 and logged[0] == pytest.approx(want, rel=1e-5)
