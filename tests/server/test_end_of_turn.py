"""The end-of-turn token that closes an answer is a completion token like any other: usage
counts it, and the logprobs and token ids cover it (its text is the token's own string).

Served: the demo teacher, which ends its answers (a random model rarely does)."""

import math

import openai
import pytest
import torch

from distil.server.testing import running_server
from distil.teachers import LocalTeacher

QUESTION = [{"role": "user", "content": "What is 2+3?"}]


@pytest.fixture(scope="module")
def demo():
    teacher = LocalTeacher.load("demo", device="cpu")
    with running_server(teacher, served_name="demo") as server:
        yield teacher, openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def reference_logprobs(teacher: LocalTeacher, ids: list[int]) -> list[float]:
    """log p(next token) after `ids`, over the vocabulary, in float64, from the raw logits."""
    with torch.no_grad():
        logits = teacher.model(input_ids=torch.tensor([ids])).logits[0, -1].double()
    return torch.log_softmax(logits, dim=-1).tolist()


def test_chat_logprobs_and_token_ids_end_with_the_end_of_turn_token(demo):
    teacher, client = demo
    eos = teacher.tokenizer.eos_token_id
    answer = client.chat.completions.create(
        model="demo",
        messages=QUESTION,
        max_tokens=32,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
        extra_body={"return_token_ids": True},
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "stop"  # the demo teacher ends its answer
    content = choice.logprobs.content
    ids = [entry.model_extra["token_id"] for entry in content]
    assert len(content) == answer.usage.completion_tokens
    assert ids[-1] == eos and eos not in ids[:-1]
    assert choice.model_extra["token_ids"] == ids
    last = content[-1]
    assert last.token == teacher.tokenizer.eos_token and last.bytes == list(last.token.encode())
    expected = reference_logprobs(teacher, teacher.render(QUESTION) + ids[:-1])
    assert last.logprob == pytest.approx(expected[eos], abs=1e-4)
    assert [t.model_extra["token_id"] for t in last.top_logprobs] == sorted(
        range(len(expected)), key=lambda i: -expected[i]
    )[:3]
    assert teacher.tokenizer.eos_token not in choice.message.content


def test_completions_logprobs_end_with_the_end_of_turn_token(demo):
    teacher, client = demo
    prompt = teacher.tokenizer.decode(teacher.render(QUESTION))
    answer = client.completions.create(
        model="demo", prompt=teacher.render(QUESTION), max_tokens=32, temperature=0, logprobs=2
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "stop"
    logprobs = choice.logprobs
    ids = logprobs.model_extra["token_ids"]
    assert len(ids) == len(logprobs.tokens) == len(logprobs.token_logprobs) == answer.usage.completion_tokens
    assert ids[-1] == teacher.tokenizer.eos_token_id
    assert logprobs.tokens[-1] == teacher.tokenizer.eos_token
    assert logprobs.text_offset[-1] == len(choice.text)  # after the text it closes
    expected = reference_logprobs(
        teacher, teacher.tokenizer(prompt, add_special_tokens=False).input_ids + ids[:-1]
    )
    assert math.isclose(logprobs.token_logprobs[-1], expected[ids[-1]], abs_tol=1e-4)


def test_an_answer_cut_by_a_stop_string_has_no_end_of_turn_token(demo):
    teacher, client = demo
    free = client.chat.completions.create(model="demo", messages=QUESTION, max_tokens=32, temperature=0)
    text = free.choices[0].message.content
    assert len(text) >= 2
    cut = client.chat.completions.create(
        model="demo", messages=QUESTION, max_tokens=32, temperature=0, logprobs=True, stop=[text[-1]]
    )
    ids = [entry.model_extra["token_id"] for entry in cut.choices[0].logprobs.content]
    assert cut.choices[0].message.content == text[: text.index(text[-1])]
    assert teacher.tokenizer.eos_token_id not in ids
