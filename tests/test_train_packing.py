"""Packing (train.packing): rows end to end with restarting position ids, no attention across
rows, the same loss as the padded batch for every teacher signal, models that would let rows
see each other refused."""

import pytest
import torch

from distil.batching import pack
from distil.capture import capture
from distil.data import Example
from distil.errors import ModelError
from distil.losses import IGNORE_INDEX
from distil.models import build_tiny
from distil.recipe import validate_recipe
from distil.train.loop import next_micro_batches
from distil.train.loss import accumulate_gradients
from distil.train.packing import check_packing, keeps_rows_apart
from distil.train.session import prepare_session
from tests.conftest import recipe_dict


def _example(n: int, prompt: int, first: int = 10) -> Example:
    ids = list(range(first, first + n))
    return Example(f"row{first}", ids, [IGNORE_INDEX] * prompt + ids[prompt:])


def test_rows_are_packed_first_fit_decreasing_with_restarting_positions():
    rows = [_example(3, 1, 10), _example(6, 2, 20), _example(4, 0, 30), _example(2, 1, 40)]
    packed = pack(rows, max_length=8, pad_token_id=0)
    # decreasing length: 6 -> seq 0; 4 -> seq 1; 3 -> seq 1 (4 + 3 <= 8); 2 -> seq 0 (6 + 2)
    assert packed["sequence"].tolist() == [1, 0, 1, 0]
    assert packed["offset"].tolist() == [4, 0, 0, 6]
    assert packed["input_ids"].tolist() == [[20, 21, 22, 23, 24, 25, 40, 41], [30, 31, 32, 33, 10, 11, 12, 0]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5, 0, 1], [0, 1, 2, 3, 0, 1, 2, 0]]
    # each row's first label is ignored (nothing predicts across rows); the rest as the row's
    assert packed["labels"].tolist() == [
        [-100, -100, 22, 23, 24, 25, -100, 41],
        [-100, 31, 32, 33, -100, 11, 12, -100],
    ]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_packed_row_gets_the_logits_it_gets_alone(attention):
    model, _ = build_tiny("tiny-student", seed=0)
    model.set_attn_implementation(attention)
    model.eval()
    generator = torch.Generator().manual_seed(1)
    rows = [
        Example(str(n), torch.randint(5, 200, (n,), generator=generator).tolist(), [0] * n)
        for n in (7, 12, 5, 9)
    ]
    packed = pack(rows, max_length=24, pad_token_id=0)
    assert packed["input_ids"].shape[0] < len(rows)  # some rows do share a sequence
    with torch.no_grad():
        # without a KV cache, as training runs it (transformers reads packed position ids then)
        logits = model(
            input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False
        ).logits
        for number, row in enumerate(rows):
            alone = model(input_ids=torch.tensor([row.input_ids]), use_cache=False).logits[0]
            sequence, offset = int(packed["sequence"][number]), int(packed["offset"][number])
            got = logits[sequence, offset : offset + len(row.input_ids)]
            torch.testing.assert_close(got, alone, rtol=1e-5, atol=1e-5)


class _IgnoresPositions(torch.nn.Module):
    """A model whose forward drops position ids: packed rows would see each other."""

    def __init__(self) -> None:
        super().__init__()
        self.inner, _ = build_tiny("tiny-student", seed=0)
        self.config = self.inner.config

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def forward(self, input_ids, position_ids=None, **kwargs):
        return self.inner(input_ids=input_ids, **kwargs)


def test_a_model_that_lets_packed_rows_see_each_other_is_refused():
    assert keeps_rows_apart(build_tiny("tiny-student", seed=0)[0])
    model = _IgnoresPositions()
    assert not keeps_rows_apart(model)
    assert model.training, "the probe restores the train mode"
    with pytest.raises(ModelError, match="train.packing: the student .* set train.packing=false"):
        check_packing(model, "student")


def _first_step(raw: dict, packing: bool, steps: int = 1) -> tuple[float, dict]:
    raw = {**raw, "train": {**raw["train"], "packing": packing}}
    session = prepare_session(validate_recipe(raw))
    for _ in range(steps - 1):
        accumulate_gradients(session, next_micro_batches(session))
    batches = next_micro_batches(session)
    if packing:
        assert all(b.attention_mask is None and b.position_ids is not None for b in batches)
        assert batches[0].input_ids.shape[0] < len(batches[0].token_index)  # fewer sequences
    loss = accumulate_gradients(session, batches)
    grads = {n: p.grad.clone() for n, p in session.module.named_parameters() if p.grad is not None}
    session.close()
    return loss, grads


def _same_step(raw: dict) -> None:
    unpacked, packed = _first_step(raw, False), _first_step(raw, True)
    assert packed[0] == pytest.approx(unpacked[0], rel=1e-5, abs=1e-6)
    assert packed[1].keys() == unpacked[1].keys() and packed[1]
    for name, grad in unpacked[1].items():
        torch.testing.assert_close(packed[1][name], grad, rtol=1e-3, atol=1e-5, msg=name)


SOURCES = {
    "live, fused": {"distill": {"fused": "always", "ce_weight": 0.3}},
    "live, dense, generalized JSD at T = 2": {
        "distill": {"fused": "never", "divergence": "generalized_jsd", "temperature": 2.0}
    },
    "hard labels": {"distill": {"kd_weight": 0.0, "ce_weight": 1.0}},
    "live, hidden-state term": {"distill": {"hidden": {"weight": 0.5}, "fused": "never"}},
    "cross-tokenizer, live": {
        "teacher": {"model": "demo"},
        "distill": {"fused": "never"},
        "cross_tokenizer": {"method": "aligned"},
    },
    "live, padded to a multiple, two micro-batches": {
        "train": {"pad_multiple": 16, "grad_accum": 2, "batch_size": 5}
    },
}


@pytest.mark.parametrize("source", list(SOURCES))
def test_a_packed_step_has_the_loss_and_gradients_of_the_padded_one(tmp_path, dataset, source):
    _same_step(recipe_dict(tmp_path, dataset, **SOURCES[source]))


@pytest.mark.parametrize("cross", [False, True])
def test_a_packed_step_from_a_store_has_the_padded_one_s_loss(tmp_path, dataset, cross):
    """The store's per-row signals meet the packed positions (same tokenizer, or the teacher's
    own tokens aligned span by span)."""
    extra = {"teacher": {"model": "demo"}, "cross_tokenizer": {"method": "aligned"}} if cross else {}
    raw = recipe_dict(
        tmp_path,
        dataset,
        capture={"top_k": 16, "batch_size": 32},
        distill={"fused": "never", "ce_weight": 0.2},
        **extra,
    )
    capture(validate_recipe(raw))
    _same_step({**raw, "signals": {"path": "capture"}})


def test_packing_changes_no_later_step_either(tmp_path, dataset):
    """Three steps in: the weights the packed run stepped are the padded run's (up to float
    rounding), so its third step's loss is too."""
    raw = recipe_dict(tmp_path, dataset, train={"learning_rate": 1e-2})
    unpacked, packed = _first_step(raw, False, steps=3), _first_step(raw, True, steps=3)
    assert packed[0] == pytest.approx(unpacked[0], rel=1e-4)
