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
    out = marked.generate(
        ["abc", "hello there"], Sampling(max_new_tokens=16, temperature=temperature, seed=0)
    )
    assert score_sequences(KEY, SPEC, [c.token_ids for c in out]).p_value < 1e-6
    assert score_sequences(WatermarkKey("other"), SPEC, [c.token_ids for c in out]).p_value > 1e-3


def test_logprobs_are_those_of_the_marked_distribution(marked):
    prompt = marked.render("abc")
    (out,) = marked.generate_ids(
        [prompt], Sampling(max_new_tokens=8, temperature=0, logprobs=True, top_logprobs=3)
    )
    scored = marked.score_ids(prompt, out.token_ids, 3)
    assert [e.logprob for e in scored] == pytest.approx([e.logprob for e in out.logprobs], abs=1e-5)
    # greedy picks the marked argmax, so every token is its position's top-1
    assert all(e.top[0].token_id == e.token_id for e in out.logprobs)
    ids = torch.tensor([[*prompt, *out.token_ids]])
    raw = torch.log_softmax(marked.model(input_ids=ids).logits[0, len(prompt) - 1].float(), -1)
    biased = torch.log_softmax(raw + marked.logit_bias(ids[:, : len(prompt)])[0], -1)
    assert out.logprobs[0].logprob == pytest.approx(float(biased[out.token_ids[0]]), abs=1e-5)


@pytest.mark.parametrize("temperature,top_p", [(2.0, 1.0), (0.5, 1.0), (2.0, 0.6)])
def test_sampling_draws_from_the_marked_distribution_at_its_temperature(
    marked, temperature, top_p, monkeypatch
):
    """What the sampler draws from at step 0 is softmax((logits + bias) / T), its nucleus taken
    on that marked distribution: the scores generate hands the sampler, compared with the
    distribution written from the raw logits and the bias."""
    seen = {}
    generate = marked.model.generate

    def spy(**kwargs):
        out = generate(**kwargs, output_scores=True)
        seen["scores"] = out.scores[0][0].float()  # (V,): step 0 after every processor and warper
        return out

    monkeypatch.setattr(marked.model, "generate", spy)
    prompt = marked.render("abc")
    marked.generate_ids([prompt], Sampling(max_new_tokens=1, temperature=temperature, top_p=top_p, seed=0))
    ids = torch.tensor([prompt], dtype=torch.float64).long()
    with torch.no_grad():
        raw = marked.model(input_ids=ids).logits[0, -1].double()
    bias = marked.logit_bias(ids)[0].double()
    want = torch.log_softmax((raw + bias) / temperature, -1)  # (V,)
    order = want.argsort(descending=True)
    probs = want[order].exp()
    nucleus = order[probs.cumsum(0) - probs < top_p] if top_p < 1 else order  # (n,)
    got = torch.log_softmax(seen["scores"].double(), -1)
    assert set(torch.nonzero(got > -torch.inf).flatten().tolist()) == set(nucleus.tolist())
    expected = want[nucleus] - torch.logsumexp(want[nucleus], 0)
    assert torch.allclose(got[nucleus], expected, atol=1e-4)
