"""distil capture: values equal the teacher's own top-k, resumes after SIGKILL without duplicates."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from distil.capture import capture, capture_dir
from distil.data import encode_pairs
from distil.errors import DataError
from distil.loading import load_splits
from distil.losses import IGNORE_INDEX
from distil.models import build_tiny
from distil.recipe import validate_recipe
from distil.signals import FingerprintMismatchError, SignalsError, SignalStore, input_hash
from tests.conftest import recipe_dict, skill_rows, write_jsonl


def _recipe(tmp_path, dataset, **capture_settings):
    settings = {
        "top_k": 8,
        "logprob_dtype": "float32",
        "batch_size": 5,
        "shard_tokens": 300,
        **capture_settings,
    }
    return validate_recipe(recipe_dict(tmp_path, dataset, capture=settings, distill={"temperature": 1.5}))


def test_capture_stores_the_teachers_top_k_for_every_training_row(tmp_path, dataset):
    recipe = _recipe(tmp_path, dataset)
    result = capture(recipe)
    teacher, tokenizer = build_tiny("tiny-teacher", seed=recipe.seed)
    train_pairs, held_out = load_splits(recipe.data, recipe.seed)
    examples = encode_pairs(tokenizer, train_pairs, "auto", recipe.data.max_length)
    assert result.samples == len(examples) == result.captured and held_out
    with SignalStore(capture_dir(recipe)) as store:
        assert sorted(store.sample_ids()) == sorted(e.sample_id for e in examples)
        assert store.fingerprint["temperature"] == 1.5 and store.fingerprint["top_k"] == 8
        for example in examples[:12]:
            # naive reference: one row alone, full logits, softmax at T, sort, keep 8
            with torch.no_grad():
                logits = teacher(torch.tensor([example.input_ids])).logits[0, :-1].double()
            log_p = torch.log_softmax(logits / 1.5, dim=-1)
            response = torch.tensor(example.labels[1:]) != IGNORE_INDEX
            want = log_p[response].sort(dim=-1, descending=True).values
            stored = store.get(example.sample_id)
            assert stored.input_hash == input_hash(example.input_ids)
            got = np.sort(stored.logprobs, axis=1)[:, ::-1]
            np.testing.assert_allclose(got, want[:, :8].numpy(), rtol=1e-4, atol=1e-5)
            tail = torch.logsumexp(want[:, 8:], dim=-1).numpy()
            np.testing.assert_allclose(stored.log_tail, tail, rtol=1e-4, atol=1e-5)
            chosen = np.take_along_axis(log_p[response].numpy(), stored.ids, axis=1)
            np.testing.assert_allclose(stored.logprobs, chosen, rtol=1e-4, atol=1e-5)


def test_capture_again_adds_only_what_is_missing(tmp_path, dataset):
    recipe = _recipe(tmp_path, dataset)
    first = capture(recipe)
    assert capture(recipe).captured == 0
    bigger = write_jsonl(tmp_path / "more.jsonl", skill_rows(110))
    grown = capture(_recipe(tmp_path, bigger))
    assert grown.samples > first.samples and grown.captured == grown.samples - first.samples
    with pytest.raises(FingerprintMismatchError, match="top_k: store has 8, expected 4"):
        capture(_recipe(tmp_path, dataset, top_k=4))


def test_one_id_on_two_different_rows_is_refused(tmp_path):
    data = write_jsonl(
        tmp_path / "dup.jsonl",
        [
            {"id": 1, "prompt": "a", "response": "b"},
            {"id": 1, "prompt": "c", "response": "d"},
            {"id": 2, "prompt": "e", "response": "f"},
        ],
    )
    raw = recipe_dict(tmp_path, data)
    raw["data"]["eval_fraction"] = 0
    with pytest.raises(DataError, match="sample id '1' names two different rows"):
        capture(validate_recipe(raw))


def _cli(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "distil.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_without_duplicates(tmp_path):
    data = write_jsonl(tmp_path / "big.jsonl", skill_rows(300))
    raw = recipe_dict(
        tmp_path, data, capture={"top_k": 8, "batch_size": 2, "shard_tokens": 100, "logprob_dtype": "float32"}
    )
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    store = tmp_path / "run" / "signals"
    process = _cli("capture", str(recipe))
    deadline = time.monotonic() + 120
    while len(list(store.glob("shard-*.safetensors"))) < 3:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no shard appeared"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    with SignalStore(store) as partial:
        kept = len(partial)
    loaded = validate_recipe(raw)
    result = capture(loaded)  # the rerun, in this process
    examples = encode_pairs(
        build_tiny("tiny-student")[1], load_splits(loaded.data, 0)[0], "auto", loaded.data.max_length
    )
    assert 0 < kept < len(examples), "the capture ended before it could be killed"
    assert result.captured == len(examples) - kept and result.samples == len(examples)
    with SignalStore(store) as resumed:
        ids = list(resumed.sample_ids())
        assert len(ids) == len(set(ids)) == len(examples)
        assert set(ids) == {e.sample_id for e in examples}
        for example in examples:
            stored = resumed.get(example.sample_id)
            assert stored.input_hash == input_hash(example.input_ids)
            assert stored.num_tokens == sum(x != IGNORE_INDEX for x in example.labels[1:])


def test_a_top_k_beyond_the_vocabulary_is_refused(tmp_path, dataset):
    with pytest.raises(SignalsError, match=r"capture.top_k=1000 exceeds the vocabulary \(261"):
        capture(validate_recipe(recipe_dict(tmp_path, dataset, capture={"top_k": 1000})))


def test_scoring_through_the_teacher_protocol_equals_white_box_capture(tmp_path, dataset):
    """The seam for API teachers: a `Teacher` that can score gives the same store at T = 1."""
    from distil.capture.sources import LocalTeacherSource, ScoringTeacherSource
    from distil.capture.stage import run_capture
    from distil.models import load_model
    from distil.signals import build_fingerprint
    from distil.teachers import LocalTeacher

    loaded = load_model("tiny-teacher", "teacher")
    pairs = load_splits(validate_recipe(recipe_dict(tmp_path, dataset)).data, 0)[0][:20]
    examples = encode_pairs(loaded.tokenizer, pairs, "auto", 48)
    vocab = loaded.model.config.vocab_size
    fingerprint = build_fingerprint(
        {"temperature": 1.0},
        vocab_size=vocab,
        top_k=6,
        logprob_dtype="float32",
        source="test",
        logprob_mode="test",
        provenance={},
    )
    white_box = LocalTeacherSource(loaded, vocab, 6, 1.0, loaded.tokenizer.pad_token_id)
    scoring = ScoringTeacherSource(LocalTeacher(loaded), pairs, 6, loaded.tokenizer.eos_token)
    run_capture(white_box, examples, fingerprint, tmp_path / "white", 4, 50)
    run_capture(scoring, examples, fingerprint, tmp_path / "scored", 4, 50)
    with SignalStore(tmp_path / "white") as white, SignalStore(tmp_path / "scored") as scored:
        assert len(white) == len(scored) == len(examples)
        for example in examples:
            a, b = white.get(example.sample_id), scored.get(example.sample_id)
            np.testing.assert_array_equal(a.ids, b.ids)
            np.testing.assert_allclose(a.logprobs, b.logprobs, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(np.exp(a.log_tail), np.exp(b.log_tail), atol=1e-4)
    with pytest.raises(SignalsError, match="set distill.temperature=1.0"):
        run_capture(scoring, examples, {**fingerprint, "temperature": 2.0}, tmp_path / "t2", 4, 50)


def test_scored_top_k_summing_to_one_after_rounding_keeps_a_nonzero_tail():
    """An API rounds its logprobs; when the returned top-k then sum to 1 or more, the tail is
    still not 0 (a zero tail makes reverse-type divergences infinite)."""
    import math
    from types import SimpleNamespace

    from distil.capture.sources import ScoringTeacherSource
    from distil.data import Example, Pair
    from distil.signals.generation import TAIL_FLOOR
    from distil.teachers.base import Capabilities, TokenLogprob, TopLogprob

    rounded = [-0.00001, -9.0]  # exp sums to 1.00011
    top = tuple(
        TopLogprob(token_id=i, token=str(i), logprob=lp) for i, lp in zip((7, 8), rounded, strict=True)
    )
    teacher = SimpleNamespace(
        name="rounding",
        concurrency=1,
        capabilities=Capabilities(logprobs=True, max_top_logprobs=2, can_score=True, token_ids=True),
        score=lambda prompt, completion, k: [TokenLogprob(token_id=7, token="7", logprob=-0.00001, top=top)],
    )
    source = ScoringTeacherSource(teacher, [Pair("a", "p", "r")], 2, "")
    (sample,) = source.capture([Example("a", [1, 7], [-100, 7])])
    assert math.isfinite(sample.log_tail[0])
    assert sample.log_tail[0] == np.float32(math.log(TAIL_FLOOR))
