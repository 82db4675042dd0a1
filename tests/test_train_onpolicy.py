"""The trainer's on-policy micro-batches (GKD) and hidden-state term, against naive references;
lambda = 0 is off-policy exactly; a run resumed from a checkpoint ends with the same weights."""

import shutil

import pytest
import torch
from safetensors.torch import load_file

from distil.batching import micro_batch_indices
from distil.errors import RecipeError
from distil.losses import IGNORE_INDEX
from distil.recipe import validate_recipe
from distil.train.loop import next_micro_batches
from distil.train.loss import accumulate_gradients
from distil.train.onpolicy import on_policy_turn
from distil.train.session import prepare_session
from distil.train.stage import train
from tests.conftest import recipe_dict
from tests.losses import reference


def _session(tmp_path, dataset, **sections):
    return prepare_session(validate_recipe(recipe_dict(tmp_path, dataset, **sections)))


def _naive_greedy(model, prompt: list[int], new_tokens: int, eos: int, max_length: int) -> list[int]:
    """One token at a time, the whole sequence re-read each time (no cache, no padding)."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(new_tokens):
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            top2 = logits.topk(2).values
            assert top2[0] - top2[1] > 1e-4, "a near-tie: greedy decoding is ill-defined here"
            ids.append(int(logits.argmax()))
            if ids[-1] == eos:
                break
    return ids[:max_length]


def _naive_forward_kl(student_logits, teacher_logits) -> torch.Tensor:
    return torch.stack(
        [
            reference.forward_kl_of(reference.log_softmax(s, 1.0), reference.log_softmax(t, 1.0))
            for s, t in zip(student_logits, teacher_logits, strict=True)
        ]
    )


def test_an_on_policy_micro_batch_is_the_students_answer_scored_by_the_teacher(tmp_path, dataset):
    distill = {
        "ce_weight": 0.5,
        "fused": "never",
        "on_policy": {"lmbda": 1.0, "temperature": 0.0, "max_new_tokens": 6},
    }
    session = _session(tmp_path, dataset, distill=distill)
    rows = micro_batch_indices(0, len(session.examples), 8, seed=0)
    originals = [session.examples[i] for i in rows]
    batches = next_micro_batches(session)
    batch = batches[0]
    assert not batch.hard_labels
    student, teacher = session.student.model, session.teacher.model
    eos = session.student.tokenizer.eos_token_id
    for row, example in enumerate(originals):
        prompt_length = example.labels.index(next(t for t in example.labels if t != IGNORE_INDEX))
        expected = _naive_greedy(student, example.input_ids[:prompt_length], 6, eos, 48)
        length = int(batch.attention_mask[row].sum())
        assert batch.input_ids[row, :length].tolist() == expected
        assert batch.labels[row, :length].tolist() == (
            [IGNORE_INDEX] * prompt_length + expected[prompt_length:]
        )
    loss = accumulate_gradients(session, batches)

    # reference: forward KL(teacher || student) on the sampled tokens, token mean; the hard-label
    # term (ce_weight 0.5) does not apply to the student's own tokens
    labels = batch.labels[:, 1:]
    mask = labels != IGNORE_INDEX
    with torch.no_grad():
        s = student(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        t = teacher(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    expected_loss = _naive_forward_kl(s[:, :-1][mask], t[:, :-1][mask]).mean()
    assert loss == pytest.approx(float(expected_loss), rel=1e-5)


def _train_weights(tmp_path, dataset, name, **distill):
    raw = recipe_dict(
        tmp_path, dataset, output_dir=str(tmp_path / name), distill=distill, train={"max_steps": 2}
    )
    train(validate_recipe(raw))
    return load_file(tmp_path / name / "student" / "model.safetensors")


def test_lambda_zero_reproduces_off_policy_training_exactly(tmp_path, dataset):
    off = _train_weights(tmp_path, dataset, "off")
    zero = _train_weights(
        tmp_path, dataset, "zero", on_policy={"lmbda": 0.0, "temperature": 0.7, "max_new_tokens": 5}
    )
    assert all(torch.equal(off[k], zero[k]) for k in off)
    # (lmbda 1 does change the batches: test_an_on_policy_micro_batch_is_the_students_answer...)


@pytest.mark.parametrize("fused", ["never", "always"])
def test_hidden_term_joins_the_objective_and_trains_the_projection(tmp_path, dataset, fused):
    distill = {
        "ce_weight": 0.5,
        "fused": fused,
        "hidden": {"weight": 0.3, "loss": "mse", "layers": [[1, 2], [2, 4]]},
    }
    session = _session(tmp_path, dataset, distill=distill)
    batches = next_micro_batches(session)
    loss = accumulate_gradients(session, batches)

    ref = _session(tmp_path, dataset, distill=distill)  # same seed: same student and projection
    weights = [p.weight for p in ref.hidden.projections]
    batch = batches[0]
    labels = batch.labels[:, 1:]
    mask = labels != IGNORE_INDEX
    inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    s = ref.student.model(**inputs, output_hidden_states=True)
    with torch.no_grad():
        t = ref.teacher.model(**inputs, output_hidden_states=True)
    s_logits, t_logits = s.logits[:, :-1][mask].double(), t.logits[:, :-1][mask].double()
    kd = _naive_forward_kl(s_logits, t_logits)
    ce = -torch.log_softmax(s_logits, -1).gather(1, labels[mask][:, None])[:, 0]
    hidden = (
        sum(
            (
                (
                    s.hidden_states[si][:, :-1][mask].double() @ w.double().T
                    - t.hidden_states[ti][:, :-1][mask].double()
                )
                ** 2
            ).mean(-1)
            for w, (si, ti) in zip(weights, [(1, 2), (2, 4)], strict=True)
        )
        / 2
    )
    expected = (kd + 0.5 * ce + 0.3 * hidden).mean()
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-5)
    for trained, reference_weight in zip(session.hidden.projections, weights, strict=True):
        assert trained.weight.grad.abs().sum() > 0
        torch.testing.assert_close(trained.weight.grad, reference_weight.grad.float(), rtol=1e-4, atol=1e-6)


def test_resumed_on_policy_hidden_run_ends_with_the_same_weights_and_projection(tmp_path, dataset):
    raw = recipe_dict(
        tmp_path,
        dataset,
        distill={
            "hidden": {"weight": 0.5, "loss": "cosine"},
            "on_policy": {"lmbda": 0.5, "temperature": 1.0, "max_new_tokens": 8},
        },
        train={"max_steps": 6, "save_every": 3, "keep_checkpoints": 2},
    )
    turns = [on_policy_turn(0.5, 0, i) for i in range(3, 6)]
    assert any(turns) and not all(turns), "the resumed steps should mix both kinds"
    train(validate_recipe(raw))
    straight = tmp_path / "run"
    # a run killed after its step-3 checkpoint has that checkpoint and its recipe, nothing more
    killed = tmp_path / "killed"
    shutil.copytree(straight / "checkpoints" / "step-000003", killed / "checkpoints" / "step-000003")
    shutil.copy(straight / "recipe.yaml", killed / "recipe.yaml")
    raw["output_dir"] = str(killed)
    train(validate_recipe(raw), resume=True)
    weights = "accelerate/model.safetensors"  # the trained module: student and projections
    a = load_file(straight / "checkpoints" / "step-000006" / weights)
    b = load_file(killed / "checkpoints" / "step-000006" / weights)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    projections = [k for k in a if k.startswith("hidden.projections.")]
    assert len(projections) == 2  # tiny-student's width 32 -> tiny-teacher's 64, per pair
    first = load_file(straight / "checkpoints" / "step-000003" / weights)
    assert not any(torch.equal(first[k], a[k]) for k in projections), "projection not trained"
    final_a = load_file(straight / "student" / "model.safetensors")
    final_b = load_file(killed / "student" / "model.safetensors")
    assert not any("hidden" in k for k in final_a)  # not part of the exported student
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)


def test_hidden_states_work_with_a_student_cut_from_the_teacher(tmp_path, dataset):
    session = _session(
        tmp_path,
        dataset,
        student={"model": "tiny-teacher", "layers": [0, 3]},
        distill={"hidden": {"weight": 1.0}},
    )
    assert session.hidden.pairs == [(1, 2), (2, 4)]
    assert not list(session.hidden.parameters())  # same width: no projection to learn
    assert accumulate_gradients(session, next_micro_batches(session)) > 0


def test_a_store_with_hidden_states_and_bad_layers_are_refused(tmp_path, dataset):
    raw = recipe_dict(
        tmp_path, dataset, signals={"path": str(tmp_path / "store")}, distill={"hidden": {"weight": 1.0}}
    )
    with pytest.raises(RecipeError, match="a signal store \\(signals.path\\) holds none"):
        validate_recipe(raw)
    raw = recipe_dict(tmp_path, dataset, distill={"hidden": {"weight": 1.0, "layers": [[3, 1]]}})
    with pytest.raises(Exception, match=r"pair \[3, 1\] is out of range: student states are 0..2"):
        prepare_session(validate_recipe(raw))


def test_a_teacher_of_another_tokenizer_is_not_combined_with_hidden_or_on_policy(tmp_path, dataset):
    for distill in ({"hidden": {"weight": 1.0}}, {"on_policy": {"lmbda": 0.5}}):
        raw = recipe_dict(tmp_path, dataset, distill=distill, cross_tokenizer={"method": "aligned"})
        with pytest.raises(RecipeError, match="not combined with distill.hidden or distill.on_policy"):
            validate_recipe(raw)


def test_samples_ignore_what_the_students_generation_config_says():
    """GKD samples the student's own distribution: a repetition penalty, n-gram ban, min-p,
    minimum length or banned words in the student's generation_config change nothing."""
    from transformers import GenerationConfig

    from distil.data import Example
    from distil.models import build_tiny
    from distil.recipe.onpolicy import OnPolicySection
    from distil.train.onpolicy import sample_responses

    model, tokenizer = build_tiny("tiny-student")
    prompts = [tokenizer(f"Reverse: {'abc'[i % 3] * (1 + i)}")["input_ids"] for i in range(12)]
    examples = [
        Example(str(i), p + [tokenizer.eos_token_id], [IGNORE_INDEX] * len(p) + [tokenizer.eos_token_id])
        for i, p in enumerate(prompts)
    ]
    config = OnPolicySection(lmbda=1.0, temperature=1.0, max_new_tokens=12)

    def samples() -> list[list[int]]:
        return [
            e.input_ids
            for e in sample_responses(
                model, examples, config, tokenizer.eos_token_id, tokenizer.pad_token_id, 48, seed=7
            )
        ]

    clean = samples()
    poisoned = GenerationConfig(
        repetition_penalty=50.0,
        no_repeat_ngram_size=1,
        min_p=0.5,
        min_new_tokens=12,
        bad_words_ids=[[ord("a")]],
        top_k=2,
        typical_p=0.2,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.generation_config = poisoned
    assert samples() == clean
    assert model.generation_config is poisoned  # the student's own, untouched
