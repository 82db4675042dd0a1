"""The step's GPU settings: bucketed lengths, device-side gathering and loss reads, the
compile and optimizer switches; on CPU none of them changes what a step computes."""

import pytest
import torch

from distil.losses import IGNORE_INDEX, Objective, TopKTeacher, teacher_top_k
from distil.recipe import validate_recipe
from distil.train import step
from distil.train.loop import next_micro_batches
from distil.train.loss import accumulate_gradients
from distil.train.session import prepare_session
from distil.train.step import (
    LossWindow,
    make_optimizer,
    pad_to_multiple,
    response_index,
    response_rows,
    use_compile,
)
from tests.conftest import recipe_dict


def test_compile_is_on_for_cuda_only_by_default(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(step.importlib.util, "find_spec", lambda name: object())
    assert use_compile("auto", cuda) and not use_compile("auto", cpu)
    monkeypatch.setattr(step.importlib.util, "find_spec", lambda name: None)
    assert not use_compile("auto", cuda)  # no Triton: inductor cannot build GPU kernels
    assert use_compile("on", cpu) and not use_compile("off", cuda)


def test_adamw_is_the_default_one_on_cpu():
    optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(3))], 1e-3, 0.0, torch.device("cpu"))
    assert not optimizer.defaults["fused"]


def _batch():
    labels = torch.tensor(
        [[IGNORE_INDEX, IGNORE_INDEX, 5, 6, 7], [IGNORE_INDEX, 3, 4, IGNORE_INDEX, IGNORE_INDEX]]
    )
    mask = (labels != IGNORE_INDEX).long()
    return {"input_ids": torch.arange(10).reshape(2, 5), "attention_mask": mask, "labels": labels}


def test_gathered_rows_are_the_boolean_mask_rows_in_order():
    batch = _batch()
    outputs = torch.randn(2, 5, 3)
    mask = batch["labels"][:, 1:] != IGNORE_INDEX
    index = response_index(batch)
    torch.testing.assert_close(response_rows(outputs, index), outputs[:, :-1][mask], rtol=0, atol=0)
    assert torch.equal(batch["labels"].flatten()[index + 1], batch["labels"][:, 1:][mask])


def test_padding_to_a_multiple_only_adds_masked_positions():
    batch = _batch()
    padded = pad_to_multiple(batch, 4, pad_token_id=0)
    assert padded["input_ids"].shape == (2, 8)
    assert torch.equal(padded["labels"][:, :5], batch["labels"])
    assert (padded["labels"][:, 5:] == IGNORE_INDEX).all() and (padded["attention_mask"][:, 5:] == 0).all()
    assert pad_to_multiple(batch, None, 0) is batch and pad_to_multiple(batch, 5, 0) is batch


def test_loss_window_reads_what_per_step_item_calls_read():
    steps = [[torch.tensor(0.1234567, dtype=torch.float32), torch.tensor(2.5)], [torch.tensor(1 / 3)]]
    window = LossWindow(num_processes=2)
    for losses in steps:
        window.add(losses)
    window.add(0.75)
    want = [sum(x.item() / 2 for x in losses) for losses in steps] + [0.75]
    assert window.read() == want and window.read() == []


def test_a_step_on_padded_batches_equals_the_unpadded_step(tmp_path, dataset):
    """Bucketed lengths (train.pad_multiple) change the shapes, not the loss or gradients
    (fused path; the dense path shares the gathering)."""
    results = []
    for multiple in (None, 16):
        session = prepare_session(
            validate_recipe(
                recipe_dict(
                    tmp_path,
                    dataset,
                    distill={
                        "divergence": "generalized_jsd",
                        "fused": "always",
                        "ce_weight": 0.3,
                        "chunk_size": 16,
                    },
                    train={"pad_multiple": multiple},
                )
            )
        )
        batches = next_micro_batches(session)
        assert multiple is None or batches[0].input_ids.shape[1] % multiple == 0
        loss = accumulate_gradients(session, batches)
        results.append((loss, {n: p.grad for n, p in session.student.model.named_parameters()}))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], grad, rtol=1e-5, atol=1e-7)


def test_the_compiled_chunk_objective_equals_the_eager_one(monkeypatch):
    """train.compile=on compiles the fused path's per-chunk loss, here the stored top-k form
    with cross-entropy (the dense divergence's compiled form is tested in
    tests/losses/test_fused_sum.py): traced through dynamo and AOT autograd (the aot_eager
    backend keeps CPU compile time short), the same values and gradients as eager."""
    monkeypatch.setattr(step, "COMPILE_BACKEND", "aot_eager")
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(12, 40, generator=g), torch.randn(12, 40, generator=g)
    labels = torch.randint(0, 40, (12,), generator=g)
    labels[3] = IGNORE_INDEX
    objective = Objective("generalized_jsd", temperature=1.5, beta=0.3, ce_weight=0.3)
    top_k = teacher_top_k(teacher, 5, 1.5)
    grads = []
    for compiled in (False, True):
        logits = student.clone().requires_grad_()
        values = step.chunk_objective(objective, True, compiled)(logits, top_k, labels)
        values.backward(torch.linspace(0.1, 1.0, 12))
        grads.append((values.detach(), logits.grad))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-7)


def test_the_compiled_chunk_objective_skips_absent_positions_as_the_eager_one(monkeypatch):
    """A store's absent positions (no teacher distribution: probability 0 throughout) through
    the compiled per-chunk loss: finite, the same values and gradients as eager."""
    monkeypatch.setattr(step, "COMPILE_BACKEND", "aot_eager")
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(12, 40, generator=g), torch.randn(12, 40, generator=g)
    labels = torch.randint(0, 40, (12,), generator=g)
    present = torch.arange(12) % 4 != 3
    top = teacher_top_k(teacher, 5, 1.0)
    top_k = TopKTeacher(
        top.ids,
        torch.where(present[:, None], top.logprobs, float("-inf")),
        torch.where(present, top.log_tail, float("-inf")),
        present,
    )
    objective = Objective("reverse_kl", ce_weight=0.2)
    grads = []
    for compiled in (False, True):
        logits = student.clone().requires_grad_()
        values = step.chunk_objective(objective, True, compiled)(logits, top_k, labels)
        values.backward(torch.linspace(0.1, 1.0, 12))
        grads.append((values.detach(), logits.grad))
    assert torch.isfinite(grads[1][1]).all()
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-7)
