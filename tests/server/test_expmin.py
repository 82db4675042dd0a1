"""The exp-min marked teacher that `distil serve --watermark-scheme exp-min` runs: it draws
after temperature and top-p, leaves greedy decoding and the logprobs as the model's own, and
leaves the shared model as it found it."""

from typing import get_args

import pytest

from distil.provenance import SCHEMES, ExpMinSampler, WatermarkKey, WatermarkSpec, score_sequences
from distil.server.expmin import ExpMinTeacher, _keyed_draws
from distil.server.served import ServedModel
from distil.server.settings import ServerSettings
from distil.server.watermark import describe, marked_teacher
from distil.teachers import Sampling

SPEC = WatermarkSpec(context_width=2, scheme="exp-min")
KEY = WatermarkKey("exp-min-teacher")
PROMPTS = ["abc", "hello there", "Count: 1 2 3"]


@pytest.fixture(scope="module")
def marked(teacher) -> ExpMinTeacher:
    return ExpMinTeacher(teacher, ExpMinSampler(KEY, SPEC))


def test_sampled_text_is_marked_and_its_logprobs_are_the_models_own(marked, teacher):
    out = marked.generate(PROMPTS, Sampling(max_new_tokens=24, temperature=1.0, logprobs=True))
    assert score_sequences(KEY, SPEC, [c.token_ids for c in out]).log10_p < -10
    assert score_sequences(WatermarkKey("other"), SPEC, [c.token_ids for c in out]).p_value > 1e-3
    for prompt, completion in zip(PROMPTS, out, strict=True):
        scored = teacher.score_ids(teacher.render(prompt), completion.token_ids, 0)
        assert [e.logprob for e in completion.logprobs] == pytest.approx(
            [e.logprob for e in scored], abs=1e-4
        )


def test_greedy_is_left_as_it_is(marked, teacher):
    greedy = Sampling(max_new_tokens=16, temperature=0, logprobs=True)
    assert [c.token_ids for c in marked.generate(PROMPTS, greedy)] == [
        c.token_ids for c in teacher.generate(PROMPTS, greedy)
    ]


@pytest.mark.parametrize(
    "sampling",
    [Sampling(max_new_tokens=16, temperature=1.0, top_p=1e-6), Sampling(max_new_tokens=16, temperature=1e-4)],
    ids=["top_p", "temperature"],
)
def test_the_draw_comes_after_temperature_and_top_p(marked, teacher, sampling):
    # a nucleus of one token, or a near-zero temperature, leaves only the argmax to draw
    greedy = Sampling(max_new_tokens=16, temperature=0)
    assert [c.token_ids for c in marked.generate(PROMPTS, sampling)] == [
        c.token_ids for c in teacher.generate(PROMPTS, greedy)
    ]


def test_the_model_is_left_as_found_and_its_config_shows_no_key(marked):
    config = marked.model.generation_config
    with _keyed_draws(marked.model, marked.sampler):
        shown = config.to_json_string() + repr(config)  # what a log line would print
        assert '"scheme": "exp-min"' in shown and "exp-min-teacher" not in shown
    assert config.watermarking_config is None


def test_the_server_setting_picks_the_scheme(teacher):
    settings = ServerSettings(served_name="t", watermark=True, watermark_scheme="exp-min")
    marked = marked_teacher(teacher, settings, KEY)
    assert isinstance(marked, ExpMinTeacher)
    # a marked model answers otherwise: it is served under another system_fingerprint
    assert ServedModel(marked, settings, None).fingerprint != ServedModel(teacher, settings, None).fingerprint
    assert describe(settings).startswith("watermarked: exp-min (distortion-free")
    assert get_args(ServerSettings.model_fields["watermark_scheme"].annotation) == SCHEMES
