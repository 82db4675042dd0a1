"""A watermarked LocalTeacher: greedy and sampled generation are marked, and its logprobs are
those of the marked distribution (generation and scoring agree)."""

import pytest
import torch

from distil.provenance import KGWBias, WatermarkKey, WatermarkSpec, score_sequences
from distil.teachers import LocalTeacher, Sampling

SPEC = WatermarkSpec(gamma=0.25, delta=4.0, context_width=2)
KEY = WatermarkKey("teacher-key")


@pytest.fixture(scope="module")
def marked() -> LocalTeacher:
    teacher = LocalTeacher.load("tiny-teacher", device="cpu")
    teacher.logit_bias = KGWBias(KEY, SPEC, teacher.model.get_output_embeddings().weight.shape[0])
    return teacher


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_generation_is_marked(marked, temperature):
    out = marked.generate(["abc", "hello there"], Sampling(max_new_tokens=16,
                                                                  temperature=temperature, seed=0))
    assert score_sequences(KEY, SPEC, [c.token_ids for c in out]).p_value < 1e-6
    assert score_sequences(WatermarkKey("other"), SPEC, [c.token_ids for c in out]).p_value > 1e-3


def test_logprobs_are_those_of_the_marked_distribution(marked):
    prompt = marked.render("abc")
    (out,) = marked.generate_ids([prompt], Sampling(max_new_tokens=8, temperature=0,
                                                     logprobs=True, top_logprobs=3))
    scored = marked.score_ids(prompt, out.token_ids, 3)
    assert [e.logprob for e in scored] == pytest.approx([e.logprob for e in out.logprobs], abs=1e-5)
    # greedy picks the marked argmax, so every token is its position's top-1
    assert all(e.top[0].token_id == e.token_id for e in out.logprobs)
    ids = torch.tensor([[*prompt, *out.token_ids]])
    raw = torch.log_softmax(marked.model(input_ids=ids).logits[0, len(prompt) - 1].float(), -1)
    biased = torch.log_softmax(raw + marked.logit_bias(ids[:, :len(prompt)])[0], -1)
    assert out.logprobs[0].logprob == pytest.approx(float(biased[out.token_ids[0]]), abs=1e-5)
