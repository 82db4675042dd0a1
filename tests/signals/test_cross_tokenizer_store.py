"""A store of the teacher's own tokens: round trip with offsets, training equal to live, refusals."""

import json
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from distil.align import token_offsets
from distil.capture import capture
from distil.data import content_id
from distil.models import DEMO_TEACHER_DIR
from distil.recipe import validate_recipe
from distil.signals import FingerprintMismatchError, SignalStore
from distil.signals.vocabulary import VOCABULARY_FILE, read_teacher_vocabulary
from distil.train.loop import next_micro_batches
from distil.train.loss import accumulate_gradients
from distil.train.session import prepare_session
from distil.train.signals import CrossTokenizer
from tests.conftest import recipe_dict, skill_rows, write_jsonl

OBJECTIVE = {
    "divergence": "generalized_jsd",
    "beta": 0.3,
    "temperature": 1.5,
    "ce_weight": 0.2,
    "fused": "never",
}


def _raw(tmp_path, dataset, **sections):
    return recipe_dict(
        tmp_path,
        dataset,
        teacher={"model": "demo"},
        distill=dict(OBJECTIVE),
        capture={"top_k": 512, "logprob_dtype": "float32", "batch_size": 16},
        cross_tokenizer={"method": "aligned"},
        **sections,
    )


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    """One capture shared by the tests that only read it."""
    tmp_path = tmp_path_factory.mktemp("cross-store")
    raw = _raw(tmp_path, write_jsonl(tmp_path / "data.jsonl", skill_rows()))
    capture(validate_recipe(raw))
    return raw


def test_the_store_keeps_the_teacher_tokens_and_their_offsets(captured):
    recipe = validate_recipe(captured)
    path = recipe.run_dir / "signals"
    fingerprint = json.loads((path / "fingerprint.json").read_text())
    assert fingerprint["teacher_tokens"] is True and fingerprint["vocab_size"] == 512
    teacher = AutoTokenizer.from_pretrained(DEMO_TEACHER_DIR)
    assert read_teacher_vocabulary(path).tokens == teacher.get_vocab()
    assert (path / VOCABULARY_FILE).is_file()
    lines = Path(recipe.data.train).read_text(encoding="utf-8").splitlines()
    rows = {line: json.loads(line) for line in lines if line.strip()}
    with SignalStore(path) as store:
        assert len(store) > 0
        for sample in store:
            tokens = sample.tokens
            assert tokens is not None and len(tokens.target_ids) == sample.num_tokens
            assert tokens.target_ids[-1] == teacher.eos_token_id
            assert tokens.char_offsets[-1].tolist() == [-1, -1]
            assert np.isfinite(tokens.target_logprob).all() and (tokens.target_logprob <= 0).all()
            # the stored top-k covers the vocabulary: the target's logprob is among them
            at = (sample.ids == tokens.target_ids[:, None]).argmax(axis=1)
            np.testing.assert_allclose(
                sample.logprobs[np.arange(len(at)), at], tokens.target_logprob, atol=1e-5
            )
        row = next(iter(rows.values()))  # one row's offsets against the teacher's tokenizer
        sample = store.get(content_id(row["prompt"], row["response"]))
        ids, offsets = token_offsets(teacher, row["response"])
        assert sample.tokens.target_ids[:-1].tolist() == ids
        assert sample.tokens.char_offsets[:-1].tolist() == [list(o) for o in offsets]


def test_training_from_the_store_equals_the_live_teacher(captured):
    live = prepare_session(validate_recipe(captured))
    stored = prepare_session(validate_recipe({**captured, "signals": {"path": "capture"}}))
    assert stored.teacher is None and isinstance(stored.signal, CrossTokenizer)
    live_loss = accumulate_gradients(live, next_micro_batches(live))
    stored_loss = accumulate_gradients(stored, next_micro_batches(stored))
    assert stored_loss == pytest.approx(live_loss, rel=1e-5)


def test_a_store_of_the_student_tokens_is_refused_for_cross_tokenizer_training(tmp_path, dataset):
    same = recipe_dict(tmp_path, dataset, capture={"top_k": 8, "batch_size": 16})
    capture(validate_recipe(same))  # tiny teacher and student: one tokenizer, no teacher tokens
    other = {**same, "cross_tokenizer": {"method": "uld"}, "signals": {"path": "capture"}}
    with pytest.raises(FingerprintMismatchError, match="teacher_tokens"):
        prepare_session(validate_recipe(other))
