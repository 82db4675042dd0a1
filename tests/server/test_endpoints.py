"""The endpoints through the real openai client: shapes, and agreement with the local teacher."""

import asyncio

import openai
import pytest

from distil.teachers import Sampling
from tests.server.conftest import MODEL

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Reverse: abc"}]


def test_models_lists_the_served_name(client):
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert client.models.retrieve(MODEL).owned_by == "distil"


def test_chat_greedy_is_the_teachers_greedy_completion(client, teacher):
    answer = client.chat.completions.create(
        model=MODEL, messages=CHAT, max_tokens=6, temperature=0, extra_body={"return_token_ids": True}
    )
    (expected,) = teacher.generate([CHAT], Sampling(max_new_tokens=6))
    choice = answer.choices[0]
    assert answer.object == "chat.completion" and answer.model == MODEL
    assert answer.id.startswith("chatcmpl-") and answer.created > 0
    assert answer.system_fingerprint.startswith("fp_")
    assert choice.message.role == "assistant" and choice.message.content == expected.text
    assert choice.finish_reason == expected.finish_reason and choice.logprobs is None
    assert choice.model_extra["token_ids"] == list(expected.token_ids)
    assert answer.model_extra["prompt_token_ids"] == teacher.render(CHAT)
    assert answer.usage.prompt_tokens == len(teacher.render(CHAT))
    assert answer.usage.completion_tokens == expected.usage.completion_tokens
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_chat_logprobs_agree_with_scoring(client, teacher):
    answer = client.chat.completions.create(
        model=MODEL, messages=CHAT, max_tokens=6, temperature=0, logprobs=True, top_logprobs=5
    )
    content = answer.choices[0].logprobs.content
    ids = [entry.model_extra["token_id"] for entry in content]
    scored = teacher.score_ids(teacher.render(CHAT), ids, top_logprobs=5)
    assert len(content) == answer.usage.completion_tokens  # max_tokens reached, no end token
    for entry, forced in zip(content, scored, strict=True):
        assert entry.token == teacher.tokenizer.decode([forced.token_id])
        assert entry.logprob == pytest.approx(forced.logprob, abs=1e-4)
        assert [t.model_extra["token_id"] for t in entry.top_logprobs] == [t.token_id for t in forced.top]
        assert [t.logprob for t in entry.top_logprobs] == pytest.approx(
            [t.logprob for t in forced.top], abs=1e-4
        )
        assert entry.top_logprobs[0].model_extra["token_id"] == entry.model_extra["token_id"]  # greedy
    text = bytes(b for entry in content for b in entry.bytes).decode("utf-8", errors="replace")
    assert text == answer.choices[0].message.content


def test_completions_echo_with_no_new_tokens_scores_the_prompt(client, teacher):
    prompt = "Reverse: hello"
    answer = client.completions.create(model=MODEL, prompt=prompt, max_tokens=0, echo=True, logprobs=3)
    ids = teacher.tokenizer(prompt).input_ids
    scored = teacher.score_ids(ids[:1], ids[1:], top_logprobs=3)
    choice = answer.choices[0]
    logprobs = choice.logprobs
    assert answer.object == "text_completion" and choice.text == prompt
    assert answer.usage.prompt_tokens == len(ids) and answer.usage.completion_tokens == 0
    assert logprobs.model_extra["token_ids"] == ids
    assert logprobs.tokens == [teacher.tokenizer.decode([i]) for i in ids]
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    assert logprobs.token_logprobs[1:] == pytest.approx([t.logprob for t in scored], abs=1e-4)
    assert logprobs.model_extra["top_token_ids"][1:] == [[t.token_id for t in s.top] for s in scored]
    for top, top_ids, top_values in zip(
        logprobs.top_logprobs[1:],
        logprobs.model_extra["top_token_ids"][1:],
        logprobs.model_extra["top_token_logprobs"][1:],
        strict=True,
    ):
        by_string = {}  # two ids may read the same (partial UTF-8): the likelier one is kept
        for token_id, value in zip(top_ids, top_values, strict=True):
            by_string.setdefault(teacher.tokenizer.decode([token_id]), value)
        assert top == by_string and len(top_ids) == 3
    assert [prompt[offset] for offset in logprobs.text_offset] == list(prompt)


def test_completions_echo_and_generate(client, teacher):
    prompt = "abc"
    answer = client.completions.create(
        model=MODEL, prompt=prompt, max_tokens=4, echo=True, logprobs=0, temperature=0
    )
    ids = teacher.tokenizer(prompt).input_ids
    (expected,) = teacher.generate_ids([ids], Sampling(max_new_tokens=4, logprobs=True))
    logprobs = answer.choices[0].logprobs
    assert answer.choices[0].text == prompt + expected.text
    assert logprobs.model_extra["token_ids"] == ids + list(expected.token_ids)
    assert logprobs.token_logprobs[len(ids) :] == pytest.approx(
        [t.logprob for t in expected.logprobs], abs=1e-4
    )
    assert logprobs.top_logprobs[1:] == [{}] * (len(ids) - 1 + 4)


def test_completions_take_token_ids_and_lists_of_prompts(client, teacher):
    prompts = ["one", "a longer prompt", "xyz"]
    ids = [teacher.tokenizer(p).input_ids for p in prompts]
    by_text = client.completions.create(model=MODEL, prompt=prompts, max_tokens=5, temperature=0)
    by_ids = client.completions.create(model=MODEL, prompt=ids, max_tokens=5, temperature=0)
    single = client.completions.create(model=MODEL, prompt=ids[1], max_tokens=5, temperature=0)
    expected = teacher.generate_ids(ids, Sampling(max_new_tokens=5))
    assert [c.index for c in by_text.choices] == [0, 1, 2]
    assert [c.text for c in by_text.choices] == [c.text for c in expected]
    assert [c.text for c in by_ids.choices] == [c.text for c in expected]
    assert single.choices[0].text == expected[1].text
    assert by_text.usage.prompt_tokens == sum(len(i) for i in ids)


def test_stop_strings_cut_text_and_logprobs(client, teacher):
    free = client.completions.create(model=MODEL, prompt="hi", max_tokens=10, temperature=0)
    stop = free.choices[0].text[3:5]
    cut = client.completions.create(
        model=MODEL, prompt="hi", max_tokens=10, temperature=0, stop=[stop], logprobs=1
    )
    choice = cut.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.text == free.choices[0].text[: free.choices[0].text.index(stop)]
    ids = choice.logprobs.model_extra["token_ids"]  # the tokens of the text, and no more
    assert len(ids) == len(choice.logprobs.tokens) == len(choice.logprobs.token_logprobs)
    assert teacher.tokenizer.decode(ids).startswith(choice.text)
    assert len(teacher.tokenizer.decode(ids[:-1])) < len(choice.text)


def test_greedy_is_deterministic_and_a_seed_fixes_a_sample(client):
    def ask(**sampling):
        answer = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=8, **sampling)
        return answer.choices[0].message.content

    assert ask(temperature=0) == ask(temperature=0)
    assert ask(temperature=1.0, seed=3) == ask(temperature=1.0, seed=3)
    samples = {ask(temperature=1.0, seed=seed) for seed in range(4)}
    assert len(samples) > 1


def test_async_client_gets_the_same_answers(client, async_client):
    prompts = [f"Reverse: {word}" for word in ("ab", "hello", "xyz", "q")]

    async def ask_all():
        async with async_client:
            return await asyncio.gather(
                *(
                    async_client.completions.create(model=MODEL, prompt=p, max_tokens=6, temperature=0)
                    for p in prompts
                )
            )

    concurrent = asyncio.run(ask_all())
    sequential = [
        client.completions.create(model=MODEL, prompt=p, max_tokens=6, temperature=0) for p in prompts
    ]
    assert [a.choices[0].text for a in concurrent] == [a.choices[0].text for a in sequential]


def test_max_completion_tokens_bounds_the_answer(client):
    answer = client.chat.completions.create(
        model=MODEL, messages=CHAT, max_completion_tokens=3, temperature=0
    )
    assert answer.usage.completion_tokens <= 3
    same = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=3, temperature=0)
    assert answer.choices[0].message.content == same.choices[0].message.content


def test_a_failing_model_call_is_a_500_and_the_server_goes_on(client, teacher, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("CUDA error: out of memory")

    with monkeypatch.context() as patch:
        patch.setattr(teacher, "generate_ids", broken)
        with pytest.raises(openai.InternalServerError) as failed:
            client.completions.create(model=MODEL, prompt="hi", max_tokens=2)
    assert failed.value.body["type"] == "server_error" and "out of memory" in failed.value.body["message"]
    assert client.completions.create(model=MODEL, prompt="hi", max_tokens=2).choices[0].text is not None


def test_the_earliest_stop_string_cuts_whatever_its_place_in_the_list(client):
    """Two overlapping stop strings, the later-starting one listed first ("134", stop
    ["34", "13"] -> ""): the text ends where the earliest match starts."""
    text = client.completions.create(model=MODEL, prompt="hi", max_tokens=12, temperature=0).choices[0].text
    start = next(
        i
        for i in range(len(text) - 2)
        if text.index(text[i : i + 2]) == i and text.index(text[i + 1 : i + 3]) == i + 1
    )
    stops = [text[start + 1 : start + 3], text[start : start + 2]]
    cut = client.completions.create(model=MODEL, prompt="hi", max_tokens=12, temperature=0, stop=stops)
    assert cut.choices[0].text == text[:start] and cut.choices[0].finish_reason == "stop"
