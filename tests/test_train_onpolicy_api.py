"""On-policy distillation through a teacher behind an API (`distil serve` on loopback): the
student's samples are scored by the server, the top-k equal the live teacher's, the loss is
the sparse divergence written from the math, and a resumed run sends nothing twice."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from distil.capture import capture
from distil.errors import RecipeError
from distil.losses import IGNORE_INDEX
from distil.recipe import validate_recipe
from distil.server.testing import running_server
from distil.teachers import LocalTeacher
from distil.teachers.budget import BudgetExhaustedError
from distil.train.loop import next_micro_batches
from distil.train.loss import accumulate_gradients
from distil.train.onpolicy import on_policy_turn
from distil.train.onpolicy_api import journal_path
from distil.train.session import prepare_session
from distil.train.stage import train
from tests.conftest import recipe_dict
from tests.losses import reference

TOP_K = 8


@pytest.fixture(scope="module")
def teacher() -> LocalTeacher:
    return LocalTeacher.load("tiny-teacher", device="cpu")


@pytest.fixture(scope="module")
def server(teacher):
    with running_server(teacher, batch_wait_ms=2) as running:
        yield running


def _raw(folder, server, out, on_policy=None, api=None, distill=None, **sections):
    """A recipe whose teacher is the served tiny teacher: a store for off-policy micro-batches
    (captured through the API), the API's scores for on-policy ones."""
    return recipe_dict(
        folder,
        folder / "data.jsonl",
        output_dir=str(out),
        teacher={
            "model": "tiny-teacher",
            "api": {
                "base_url": server.base_url,
                "api_key_env": None,
                "tokenizer": "tiny-teacher",
                "concurrency": 4,
                "backoff_s": 0.05,
                "backoff_max_s": 0.2,
                **(api or {}),
            },
        },
        capture={"top_k": TOP_K, "logprob_dtype": "float32", "output": str(folder / "store")},
        signals={"path": "capture"},
        distill={
            "on_policy": {
                "lmbda": 1.0,
                "temperature": 0.0,
                "max_new_tokens": 6,
                "top_k": TOP_K,
                **(on_policy or {}),
            },
            **(distill or {}),
        },
        **sections,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory, server):
    """One capture through the API, shared by the tests (read only)."""
    from tests.conftest import skill_rows, write_jsonl

    folder = tmp_path_factory.mktemp("store")
    write_jsonl(folder / "data.jsonl", skill_rows())
    capture(validate_recipe(_raw(folder, server, folder / "captured")))
    return folder


def _recipe(store, tmp_path, server, name="run", **kwargs):
    return validate_recipe(_raw(store, server, tmp_path / name, **kwargs))


def test_an_on_policy_step_through_the_api_equals_the_live_teachers_top_k(store, tmp_path, server, teacher):
    session = prepare_session(_recipe(store, tmp_path, server))
    try:
        batches = next_micro_batches(session)
        loss = accumulate_gradients(session, batches)
    finally:
        session.close()
    batch = batches[0]
    assert not batch.hard_labels and batch.teacher.ids.shape[1] == TOP_K
    mask = batch.labels[:, 1:] != IGNORE_INDEX
    assert int(mask.sum()) == batch.teacher.ids.shape[0] > 0
    with torch.no_grad():
        inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        live = teacher.model(**inputs).logits[:, :-1][mask].double()  # (N, V)
        s = session.student.model(**inputs).logits[:, :-1][mask]  # no optimizer step was taken
    top = torch.log_softmax(live, -1).topk(TOP_K)
    assert torch.equal(batch.teacher.ids, top.indices)
    torch.testing.assert_close(batch.teacher.logprobs.double(), top.values, rtol=0, atol=1e-4)
    tail = 1 - top.values.exp().sum(-1)
    torch.testing.assert_close(batch.teacher.log_tail.double().exp(), tail, rtol=1e-3, atol=1e-6)
    # the loss: forward KL between the top-8 + tail buckets, written from the math
    expected = reference.per_row(reference.sparse, s, live, "forward_kl", k=TOP_K).mean()
    assert loss == pytest.approx(float(expected), rel=1e-3)


def test_samples_are_scored_on_the_teachers_tokens_of_their_text(store, tmp_path, server):
    session = prepare_session(_recipe(store, tmp_path, server))
    try:
        batch = next_micro_batches(session)[0]
    finally:
        session.close()
    tokenizer = session.student.tokenizer
    for row in range(batch.input_ids.shape[0]):
        length = int(batch.attention_mask[row].sum())
        ids = batch.input_ids[row, :length].tolist()
        labels = batch.labels[row, :length].tolist()
        response = [t for t, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]
        ended = response[-1] == tokenizer.eos_token_id
        text = tokenizer.decode(response[:-1] if ended else response)
        assert tokenizer(text, add_special_tokens=False).input_ids == (response[:-1] if ended else response)


def test_a_resumed_api_on_policy_run_ends_with_the_same_weights_and_sends_nothing_twice(
    store, tmp_path, server
):
    on_policy = {"lmbda": 0.5, "temperature": 1.0, "max_new_tokens": 6}
    sections = {"train": {"max_steps": 6, "save_every": 3, "keep_checkpoints": 2}}
    assert any(on_policy_turn(0.5, 0, i) for i in range(3, 6))
    train(_recipe(store, tmp_path, server, on_policy=on_policy, **sections))
    straight = tmp_path / "run"
    journal = journal_path(straight, 0).read_text().splitlines()
    scored = [json.loads(line) for line in journal if '"key"' in line]
    assert scored and all(row["status"] == "ok" for row in scored)
    # killed after its step-3 checkpoint: the checkpoint, the recipe and the journal remain
    killed = tmp_path / "killed"
    shutil.copytree(straight / "checkpoints" / "step-000003", killed / "checkpoints" / "step-000003")
    shutil.copy(straight / "recipe.yaml", killed / "recipe.yaml")
    journal_path(killed, 0).parent.mkdir(parents=True)
    shutil.copy(journal_path(straight, 0), journal_path(killed, 0))
    train(_recipe(store, tmp_path, server, name="killed", on_policy=on_policy, **sections), resume=True)
    a = load_file(straight / "student" / "model.safetensors")
    b = load_file(killed / "student" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    added = journal_path(killed, 0).read_text().splitlines()[len(journal) :]
    assert added and {json.loads(line)["attempt"] for line in added} == {"probe"}  # no scoring


def test_the_budget_caps_what_on_policy_scoring_sends(store, tmp_path, server):
    recipe = _recipe(store, tmp_path, server, api={"budget": {"max_requests": 4}})
    with pytest.raises(BudgetExhaustedError, match="max_requests=4"):
        train(recipe)
    lines = journal_path(recipe.run_dir, 0).read_text().splitlines()
    attempts = [json.loads(line)["attempt"] for line in lines if '"attempt"' in line]
    assert len(attempts) == 4 and "probe" in attempts and set(attempts) != {"probe"}


def test_what_an_api_teacher_cannot_do_on_policy_is_refused(store, tmp_path, server):
    with pytest.raises(RecipeError, match="distill.temperature=2.0: a teacher behind an API"):
        _recipe(store, tmp_path, server, distill={"temperature": 2.0})
    raw = _raw(
        store,
        server,
        tmp_path / "run",
        distill={"kd_weight": 0.0, "ce_weight": 1.0, "hidden": {"weight": 1.0}},
    )
    raw["signals"] = {"path": None}
    raw["distill"]["on_policy"]["lmbda"] = 0.0
    with pytest.raises(RecipeError, match="distill.hidden needs a local teacher's hidden states"):
        validate_recipe(raw)
    with pytest.raises(Exception, match="cannot give what on-policy distillation"):
        prepare_session(_recipe(store, tmp_path, server, on_policy={"top_k": 500}))
