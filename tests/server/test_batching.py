"""Dynamic batching: concurrent requests share model calls and get what they would alone."""

import asyncio

import openai
import pytest

from distil.server.batching import Batcher, Overloaded
from distil.server.testing import running_server
from distil.teachers import Sampling
from tests.server.conftest import MODEL

PROMPTS = [f"Reverse: {'abcdefgh'[: 1 + i % 8]}{i}" for i in range(6)]


def _ask_all(base_url: str, requests: list[dict]) -> list:
    async def run():
        async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0) as client:
            return await asyncio.gather(*(client.completions.create(model=MODEL, **r) for r in requests))

    return asyncio.run(run())


def test_concurrent_requests_share_model_calls_and_match_sequential(teacher):
    with running_server(teacher, batch_wait_ms=200, max_batch_size=4) as server:
        requests = [{"prompt": p, "max_tokens": 6, "temperature": 0} for p in PROMPTS]
        answers = _ask_all(server.base_url, requests)
        batching = server.stats()["batching"]
    alone = [
        teacher.generate_ids([teacher.tokenizer(p).input_ids], Sampling(max_new_tokens=6))[0] for p in PROMPTS
    ]
    assert [a.choices[0].text for a in answers] == [c.text for c in alone]
    assert batching["generated"] == len(PROMPTS)
    assert batching["model_calls"] < len(PROMPTS)
    assert 1 < batching["largest_batch"] <= 4


def test_requests_asking_different_logprobs_share_a_batch_yet_get_their_own(teacher):
    with running_server(teacher, batch_wait_ms=200) as server:
        requests = [
            {"prompt": "hello", "max_tokens": 4, "temperature": 0, "logprobs": k} for k in (None, 0, 2, 5)
        ]
        answers = _ask_all(server.base_url, requests)
        batching = server.stats()["batching"]
    assert batching["model_calls"] < len(requests)
    assert answers[0].choices[0].logprobs is None
    for answer, k in zip(answers[1:], (0, 2, 5), strict=True):
        assert [len(top) for top in answer.choices[0].logprobs.model_extra["top_token_ids"]] == [k] * 4
    texts = {a.choices[0].text for a in answers}
    assert len(texts) == 1


def test_greedy_requests_batch_together_whatever_their_seed_and_top_p(teacher):
    with running_server(teacher, batch_wait_ms=200) as server:
        requests = [
            {"prompt": p, "max_tokens": 3, "temperature": 0, "seed": i, "top_p": 0.5 + i / 10}
            for i, p in enumerate(PROMPTS[:4])
        ]
        _ask_all(server.base_url, requests)
        assert server.stats()["batching"]["largest_batch"] > 1  # each has its own seed and top_p


def test_a_seeded_sample_does_not_depend_on_its_batch(teacher):
    seeded = {"prompt": "hello", "max_tokens": 8, "temperature": 1.0, "seed": 11}
    with running_server(teacher, batch_wait_ms=100) as server:
        (alone,) = _ask_all(server.base_url, [seeded])
        crowd = _ask_all(
            server.base_url,
            [seeded] + [{"prompt": p, "max_tokens": 8, "temperature": 1.0, "seed": 11} for p in PROMPTS[:5]],
        )
    assert crowd[0].choices[0].text == alone.choices[0].text


def test_more_pending_requests_than_allowed_are_refused(teacher):
    batcher = Batcher(teacher, max_batch_size=4, wait_s=0.0, max_pending=2)  # worker not started

    async def submit():
        first = asyncio.ensure_future(batcher.generate_many([[5, 6], [7, 8]], Sampling()))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await batcher.generate([9], Sampling())
        first.cancel()

    asyncio.run(submit())


def test_overload_is_answered_503_with_retry_after(teacher):
    with running_server(teacher, max_pending=2, max_prompts=8) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        with pytest.raises(openai.APIStatusError) as refused:
            client.completions.create(model=MODEL, prompt=PROMPTS[:3], max_tokens=2)
    assert refused.value.status_code == 503
    assert refused.value.response.headers["retry-after"] == "1"
    assert refused.value.body["code"] == "overloaded"
