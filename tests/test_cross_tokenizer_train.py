"""Training with a teacher of another tokenizer: same-tokenizer equivalence, learning, refusal."""

import pytest
import torch

from distil.data import Pair, encode_pairs
from distil.errors import VocabularyMismatchError
from distil.models import DEMO_TEACHER_DIR, byte_tokenizer
from distil.recipe import validate_recipe
from distil.train.cross_tokenizer import align_row
from distil.train.loop import next_micro_batches
from distil.train.loss import accumulate_gradients
from distil.train.session import prepare_session
from distil.train.signals import CrossTokenizer
from tests.conftest import recipe_dict


def _session(tmp_path, dataset, **sections):
    sections.setdefault("distill", {}).update(fused="never")
    return prepare_session(validate_recipe(recipe_dict(tmp_path, dataset, **sections)))


def test_one_tokenizer_on_both_sides_gives_the_same_vocabulary_loss(tmp_path, dataset):
    # every divergence's equality is tested on the losses; here the whole training step
    distill = {"divergence": "generalized_jsd", "temperature": 2.0, "ce_weight": 0.3}
    plain = _session(tmp_path, dataset, distill=dict(distill))
    cross = _session(tmp_path, dataset, distill=dict(distill), cross_tokenizer={"method": "aligned"})
    assert isinstance(cross.signal, CrossTokenizer) and not isinstance(plain.signal, CrossTokenizer)
    loss_plain = accumulate_gradients(plain, next_micro_batches(plain))
    loss_cross = accumulate_gradients(cross, next_micro_batches(cross))
    assert loss_cross == pytest.approx(loss_plain, rel=1e-5)
    for (name, a), (_, b) in zip(
        plain.student.model.named_parameters(), cross.student.model.named_parameters(), strict=True
    ):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-6, msg=name)


def test_a_teacher_of_another_tokenizer_is_refused_unless_a_method_is_named(tmp_path, dataset):
    with pytest.raises(VocabularyMismatchError, match="different vocabularies"):
        _session(tmp_path, dataset, teacher={"model": "demo"})


@pytest.mark.parametrize("method", ["aligned", "uld"])
def test_a_student_learns_from_a_teacher_of_another_tokenizer(tmp_path, dataset, method):
    """A few steps on one repeated batch lower the cross-tokenizer loss of that batch."""
    session = _session(
        tmp_path,
        dataset,
        teacher={"model": "demo"},
        cross_tokenizer={"method": method},
        train={"max_steps": 10, "learning_rate": 1e-2},
    )
    batches = next_micro_batches(session)
    losses = []
    for _ in range(3):
        losses.append(accumulate_gradients(session, batches))
        session.optimizer.step()
        session.optimizer.zero_grad(set_to_none=True)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.995 * losses[0], losses


def test_row_alignment_covers_the_response_and_the_end_of_turn():
    from transformers import AutoTokenizer

    teacher, student = AutoTokenizer.from_pretrained(DEMO_TEACHER_DIR), byte_tokenizer()
    pair = Pair("a", "What is 12+30?", "12+30 = 42, ünïcode")
    row_t = encode_pairs(teacher, [pair], "chat", 64)[0]
    row_s = encode_pairs(student, [pair], "chat", 64)[0]
    aligned = align_row(pair.response, row_s, row_t, student, teacher)
    assert sorted(set(aligned.student_span)) == list(range(len(aligned.student_first)))
    assert -1 not in aligned.student_span and -1 not in aligned.teacher_span
    assert aligned.student_span[-1] == aligned.teacher_span[-1] == len(aligned.student_first) - 1
    assert len(aligned.student_span) > len(aligned.teacher_span)  # bytes against merges
    cut = encode_pairs(student, [pair], "chat", len(row_s.input_ids) - 4)[0]  # loses its end
    short = align_row(pair.response, cut, row_t, student, teacher)
    assert len(short.student_first) < len(aligned.student_first)
    assert short.teacher_span[-1] == -1  # the teacher's end-of-turn has no partner


def test_eval_scores_each_model_on_its_own_tokens(tmp_path, dataset):
    from distil.evaluate import evaluate

    cross = validate_recipe(
        recipe_dict(tmp_path, dataset, teacher={"model": "demo"}, cross_tokenizer={"method": "aligned"})
    )
    metrics = evaluate(cross, student_source="recipe", output=tmp_path / "cross.json")
    assert metrics["kl_teacher_student"] is None and metrics["top1_agreement"] is None
    same = validate_recipe(
        recipe_dict(tmp_path, dataset, teacher={"model": "demo"}, student={"model": "demo"})
    )
    alone = evaluate(same, student_source="recipe", output=tmp_path / "same.json")
    assert metrics["teacher"]["perplexity"] == pytest.approx(alone["teacher"]["perplexity"])
    assert 1 < metrics["student"]["perplexity"] < float("inf")
