"""A store of the teacher's own tokens captured through an API (`distil serve` over the demo
teacher): the local capture's tokens, offsets and top-k, read back as strings; training from
it equals training from the local capture; resume; refusals."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from transformers import AutoTokenizer

from distil.capture import capture
from distil.capture.api_tokens import ApiTeacherTokensSource
from distil.capture.stage import run_capture
from distil.data import Example, Pair
from distil.errors import RecipeError
from distil.models import DEMO_TEACHER_DIR
from distil.recipe import validate_recipe
from distil.server.testing import running_server
from distil.signals import FingerprintMismatchError, SignalsError, SignalStore, build_fingerprint
from distil.signals.vocabulary import TOKEN_STRINGS, TokenStrings, read_teacher_vocabulary
from distil.teachers import LocalTeacher
from distil.teachers.base import Capabilities, TokenLogprob, TopLogprob
from distil.train.loop import next_micro_batches
from distil.train.loss import accumulate_gradients
from distil.train.session import prepare_session
from distil.train.signals import CrossTokenizer
from tests.conftest import recipe_dict, skill_rows, write_jsonl

TOP_K = 12
OBJECTIVE = {
    "divergence": "generalized_jsd",
    "beta": 0.3,
    "temperature": 1.0,
    "ce_weight": 0.2,
    "fused": "never",
}


def _raw(tmp_path, rows, teacher, **changes):
    """A recipe for the tiny byte-level student and the demo teacher (its own BPE), from a store."""
    raw = recipe_dict(
        tmp_path,
        rows,
        teacher=teacher,
        distill=dict(OBJECTIVE),
        signals={"path": "capture"},
        cross_tokenizer={"method": "aligned"},
        capture={"top_k": TOP_K, "logprob_dtype": "float32", "batch_size": 16},
    )
    raw["data"]["max_length"] = 128
    for name, values in changes.items():
        raw[name] = {**raw.get(name, {}), **values}
    return raw


def _api(server, **settings):
    return {
        "model": "demo",
        "api": {
            "base_url": server.base_url,
            "api_key_env": None,
            "tokenizer": "demo",
            "max_retries": 0,
            **settings,
        },
    }


@pytest.fixture(scope="module")
def teacher():
    return LocalTeacher.load("demo", device="cpu")


@pytest.fixture(scope="module")
def server(teacher):
    with running_server(teacher, served_name="demo", batch_wait_ms=2) as running:
        yield running


@pytest.fixture(scope="module")
def captured(tmp_path_factory, server):
    """The demo teacher captured locally and through the server; the API store in two runs
    (a smaller dataset first, then the whole one: the second adds only the missing rows)."""
    root = tmp_path_factory.mktemp("api-store")
    data = write_jsonl(root / "data.jsonl", skill_rows())
    local = _raw(root / "local", data, {"model": "demo"})
    capture(validate_recipe(local))
    first = _raw(root / "api", write_jsonl(root / "half.jsonl", skill_rows(40)), _api(server))
    first_result = capture(validate_recipe(first))
    path = validate_recipe(first).run_dir / "signals"
    first_strings = read_teacher_vocabulary(path).tokens
    api = _raw(root / "api", data, _api(server))
    grown = capture(validate_recipe(api))
    return SimpleNamespace(local=local, api=api, first=first_result, grown=grown, first_strings=first_strings)


def _store(raw):
    return validate_recipe(raw).run_dir / "signals"


def _by_text(ids, logprobs, text_of):
    """One position's top-k as {text: logprob}; of entries that read alike, the likelier."""
    found: dict[str, float] = {}
    for i, logprob in sorted(zip(ids.tolist(), logprobs.tolist(), strict=True), key=lambda e: -e[1]):
        if (text := text_of(i)) is not None:
            found.setdefault(text, logprob)
    return found


def test_the_api_store_holds_the_local_capture_by_token_text(captured):
    fingerprint = json.loads((_store(captured.api) / "fingerprint.json").read_text())
    assert fingerprint["teacher_tokens"] is True and fingerprint["source"] == "score"
    assert fingerprint["logprob_mode"] == "scored-token-text" and fingerprint["temperature"] == 1.0
    vocabulary = read_teacher_vocabulary(_store(captured.api))
    assert vocabulary.spelling == "text" and vocabulary.tokens["<|end|>"] == vocabulary.eos_token_id
    string_of = {i: token for token, i in vocabulary.tokens.items()}
    teacher = AutoTokenizer.from_pretrained(DEMO_TEACHER_DIR)
    with SignalStore(_store(captured.local)) as local, SignalStore(_store(captured.api)) as api:
        assert len(local) > 0 and set(local.sample_ids()) <= set(api.sample_ids())
        for sample_id in local.sample_ids():
            want, got = local.get(sample_id), api.get(sample_id)
            assert [string_of[i] for i in got.tokens.target_ids.tolist()] == [
                teacher.decode([i]) for i in want.tokens.target_ids.tolist()
            ]
            np.testing.assert_array_equal(got.tokens.char_offsets, want.tokens.char_offsets)
            np.testing.assert_allclose(got.tokens.target_logprob, want.tokens.target_logprob, atol=1e-4)
            for row in range(want.num_tokens):
                local_top = _by_text(want.ids[row], want.logprobs[row], lambda i: teacher.decode([i]))
                api_top = _by_text(got.ids[row], got.logprobs[row], string_of.get)
                assert api_top.keys() == local_top.keys(), (sample_id, row)
                np.testing.assert_allclose(
                    [api_top[t] for t in local_top], list(local_top.values()), atol=1e-4
                )
                fillers = [i not in string_of for i in got.ids[row].tolist()]
                assert np.exp(got.logprobs[row][fillers]).sum() == 0  # they name no string
                left = 1 - math.fsum(math.exp(v) for v in local_top.values())
                assert math.exp(got.log_tail[row]) == pytest.approx(left, abs=1e-4)


def test_a_second_capture_adds_the_missing_rows_and_keeps_every_string_id(captured):
    assert captured.first.captured == captured.first.samples > 0
    assert 0 < captured.grown.captured < captured.grown.samples
    assert captured.grown.samples == captured.first.samples + captured.grown.captured
    strings = read_teacher_vocabulary(_store(captured.api)).tokens
    assert captured.first_strings.items() <= strings.items()
    assert sorted(strings.values()) == list(range(len(strings)))
    assert capture(validate_recipe(captured.api)).captured == 0


def test_training_from_the_api_store_equals_training_from_the_local_one(captured):
    local = prepare_session(validate_recipe(captured.local))
    api = prepare_session(validate_recipe(captured.api))
    assert api.teacher is None and isinstance(api.signal, CrossTokenizer)
    assert api.signal.teacher.teacher_to_student.shape[0] > local.signal.teacher.teacher_to_student.shape[0]
    for _ in range(3):  # the same rows in the same order: same seed, same data
        local_loss = accumulate_gradients(local, next_micro_batches(local))
        api_loss = accumulate_gradients(api, next_micro_batches(api))
        assert math.isfinite(api_loss) and api_loss == pytest.approx(local_loss, rel=1e-4)
        for session in (local, api):
            session.optimizer.step()
            session.optimizer.zero_grad(set_to_none=True)


def test_token_texts_that_do_not_spell_the_response_are_refused(tmp_path, server):
    data = write_jsonl(tmp_path / "data.jsonl", [*skill_rows(6), {"prompt": "Say it", "response": "ünï"}])
    raw = _raw(tmp_path, data, _api(server), data={"eval_fraction": 0})
    with pytest.raises(
        SignalsError,
        match=r"for sample '[0-9a-f]+' do not spell its response "
        r"\(from character 0: '\ufffd\ufffdn",
    ):
        capture(validate_recipe(raw))


def _stub(scored, top_k):
    """A teacher that scores every response as `scored`."""
    return SimpleNamespace(
        name="stub",
        score=lambda *args: scored,
        capabilities=Capabilities(logprobs=True, max_top_logprobs=top_k, can_score=True, token_ids=False),
    )


def test_alternatives_that_read_alike_keep_the_likelier_and_fillers_name_nothing(tmp_path):
    top = (
        TopLogprob(7, "a", -0.5),
        TopLogprob(8, "a", -1.0),
        TopLogprob(9, "", -2.0),
        TopLogprob(None, "</s>", -3.0),
    )
    scored = [TokenLogprob(None, "a", -0.5, top), TokenLogprob(None, "</s>", -3.0, top)]
    strings = TokenStrings(tmp_path, "</s>")
    source = ApiTeacherTokensSource(_stub(scored, 4), [Pair("r", "p", "a")], 4, "</s>", strings)
    fingerprint = build_fingerprint(
        {"temperature": 1.0},
        vocab_size=TOKEN_STRINGS + 4,
        top_k=4,
        logprob_dtype="uint8",
        source="score",
        logprob_mode="scored-token-text",
        provenance={},
    )
    run_capture(
        source,
        [Example("r", [5, 6, 7], [-100, 6, 7])],
        {**fingerprint, "teacher_tokens": True},
        tmp_path,
        batch_size=1,
        shard_tokens=10,
    )
    assert read_teacher_vocabulary(tmp_path).tokens == {"</s>": 0, "a": 1}
    with SignalStore(tmp_path) as store:
        sample = store.get("r")
    assert sample.tokens.target_ids.tolist() == [1, 0]
    assert sample.tokens.char_offsets.tolist() == [[0, 1], [-1, -1]]
    for ids, logprobs, log_tail in zip(sample.ids, sample.logprobs, sample.log_tail, strict=True):
        assert ids.tolist() == [0, 1, TOKEN_STRINGS, TOKEN_STRINGS + 1]
        probabilities = np.exp(logprobs)
        assert probabilities[2:].tolist() == [0, 0]  # fillers: no string, no mass
        np.testing.assert_allclose(probabilities[:2], np.exp([-3.0, -0.5]), rtol=0.03)
        assert math.exp(log_tail) == pytest.approx(1 - math.exp(-0.5) - math.exp(-3), rel=0.03)


def test_end_of_turn_not_scored_as_one_token_is_refused(tmp_path):
    top = (TopLogprob(None, "x", -0.1),)
    scored = [
        TokenLogprob(None, "ok", -0.2, top),
        TokenLogprob(None, "<", -0.3, top),
        TokenLogprob(None, "/s>", -0.1, top),
    ]
    source = ApiTeacherTokensSource(
        _stub(scored, 1), [Pair("a", "p", "ok")], 1, "</s>", TokenStrings(tmp_path, "</s>")
    )
    with pytest.raises(SignalsError, match=r"end-of-turn token '</s>' as one token after sample 'a'"):
        source.capture([Example("a", [1, 2], [-100, 2])])


def test_a_truncated_response_is_scored_without_the_end_of_turn_token(tmp_path):
    """The teacher never ended a response cut at the length limit, and the student learns no
    end token after it (distil.data), so none is scored or stored for it."""
    asked = []
    scored = [
        TokenLogprob(None, "o", -0.2, (TopLogprob(None, "o", -0.2),)),
        TokenLogprob(None, "k", -0.1, (TopLogprob(None, "k", -0.1),)),
    ]
    teacher = _stub(scored, 1)
    teacher.score = lambda prompt, text, k: asked.append(text) or scored
    source = ApiTeacherTokensSource(
        teacher, [Pair("a", "p", "ok", truncated=True)], 1, "</s>", TokenStrings(tmp_path, "</s>")
    )
    (sample,) = source.capture([Example("a", [1, 2, 3], [-100, 2, 3])])
    assert asked == ["ok"] and sample.tokens.char_offsets.tolist() == [[0, 1], [1, 2]]


def test_a_teacher_that_cannot_score_is_refused(tmp_path, teacher, dataset):
    with (
        running_server(teacher, served_name="demo", refuse_logprobs=True) as refusing,
        pytest.raises(SignalsError, match="cannot give what this capture needs"),
    ):
        capture(validate_recipe(_raw(tmp_path, dataset, _api(refusing))))
    assert not (tmp_path / "run" / "signals" / "teacher_vocabulary.json").exists()


def test_a_store_from_the_local_teacher_is_not_taken_for_the_api_one(tmp_path, server, captured):
    local = str(_store(captured.local))
    raw = _raw(
        tmp_path, write_jsonl(tmp_path / "d.jsonl", skill_rows(8)), _api(server), capture={"output": local}
    )
    with pytest.raises(FingerprintMismatchError, match="source: store has 'local', expected 'score'"):
        capture(validate_recipe(raw))


def test_the_recipe_takes_an_api_teacher_of_another_tokenizer_through_a_store(tmp_path, dataset):
    teacher = {"model": "demo", "api": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": None}}
    recipe = validate_recipe(_raw(tmp_path, dataset, teacher))
    assert recipe.teacher.api is not None and recipe.cross_tokenizer.method == "aligned"
    with pytest.raises(RecipeError, match="capture.source=generation with cross_tokenizer"):
        validate_recipe(_raw(tmp_path, dataset, teacher, capture={"source": "generation"}))
    with pytest.raises(RecipeError, match="set distill.temperature: 1"):
        validate_recipe(_raw(tmp_path, dataset, teacher, distill={"temperature": 2.0}))
    with pytest.raises(RecipeError, match="capture its top-k logprobs first"):
        validate_recipe(_raw(tmp_path, dataset, teacher, signals={"path": None}))
