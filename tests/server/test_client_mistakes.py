"""A client's mistake is a 4xx naming it, never a 500 (which clients retry) or a logged traceback."""

import json

import httpx
import pytest

from tests.server.conftest import API_KEY, MODEL, assert_no_traceback

HI = [{"role": "user", "content": "hi"}]


def post_raw(server, body: bytes, path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(
        server.url + path,
        content=body,
        timeout=60,
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )


def chat(**fields) -> bytes:
    return json.dumps({"model": MODEL, "messages": HI, "max_tokens": 2, **fields}).encode()


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        (
            b'{"model": "%s", "messages": [], "metadata": %s}' % (MODEL.encode(), b"[" * 2000 + b"]" * 2000),
            None,
            "nested",
        ),
        (
            b'{"model": "%s", "messages": [{"role": "user", "content": "a\\ud800b"}]}' % MODEL.encode(),
            "messages.0.content",
            "surrogate",
        ),
        (
            b'{"model": "%s", "messages": [{"role": "user", "content": "\\uDFFF"}]}' % MODEL.encode(),
            "messages.0.content",
            "surrogate",
        ),
        (
            b'{"model": "%s", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}' % MODEL.encode(),
            None,
            "UTF-8",
        ),
        (chat(seed=2**63, temperature=1.0), "seed", "9223372036854775807"),
        (chat(seed=2**64, temperature=1.0), "seed", "9223372036854775807"),
        (chat(seed=-(2**63) - 1, temperature=1.0), "seed", "-9223372036854775808"),
        (chat(temperature=1e-300), "temperature", "at least"),
        (chat(temperature=5e-324), "temperature", "at least"),
        (chat()[:-1] + b', "temperature": NaN}', None, "NaN"),
        (chat()[:-1] + b', "top_p": Infinity}', None, "Infinity"),
        (chat()[:-1] + b', "seed": ' + b"9" * 5000 + b"}", None, "digits"),
    ],
)
def test_client_mistakes_are_4xx_without_a_traceback(server, server_log, body, param, words):
    answer = post_raw(server, body)
    assert answer.status_code in (400, 422), answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert words in error["message"] and "\n" not in error["message"]
    assert_no_traceback(server_log)


def test_a_byte_order_mark_is_ignored(server):
    assert post_raw(server, b"\xef\xbb\xbf" + chat()).status_code == 200


def test_a_valid_surrogate_pair_is_a_character(server, server_log):
    body = (
        b'{"model": "%s", "messages": [{"role": "user", "content": "\\ud83d\\ude00"}], '
        b'"max_tokens": 1}' % MODEL.encode()
    )
    assert post_raw(server, body).status_code == 200


@pytest.mark.parametrize("fields", [{"seed": 2**63 - 1}, {"seed": -(2**63)}, {"temperature": 0.01}])
def test_the_edges_of_the_ranges_are_served(server, fields):
    assert post_raw(server, chat(**{"temperature": 1.0, **fields})).status_code == 200


@pytest.mark.parametrize(
    ("path", "fields", "param"),
    [
        ("/v1/chat/completions", {"max_tokens": "8"}, "max_tokens"),
        ("/v1/chat/completions", {"max_tokens": 8.0}, "max_tokens"),
        ("/v1/chat/completions", {"max_completion_tokens": "8"}, "max_completion_tokens"),
        ("/v1/chat/completions", {"logprobs": "yes"}, "logprobs"),
        ("/v1/chat/completions", {"logprobs": 1}, "logprobs"),
        ("/v1/chat/completions", {"logprobs": True, "top_logprobs": "2"}, "top_logprobs"),
        ("/v1/chat/completions", {"temperature": "0.5"}, "temperature"),
        ("/v1/chat/completions", {"seed": "3"}, "seed"),
        ("/v1/chat/completions", {"stream": "false"}, "stream"),
        ("/v1/chat/completions", {"return_token_ids": "true"}, "return_token_ids"),
        ("/v1/completions", {"prompt": "hi", "echo": "true"}, "echo"),
        ("/v1/completions", {"prompt": "hi", "logprobs": "1"}, "logprobs"),
        ("/v1/completions", {"prompt": [1, True]}, "prompt"),
    ],
)
def test_values_of_the_wrong_type_are_refused_not_coerced(server, server_log, path, fields, param):
    body = {"model": MODEL, "max_tokens": 2, **({"messages": HI} if "chat" in path else {}), **fields}
    answer = post_raw(server, json.dumps(body).encode(), path)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and error["code"] == "invalid_value"
    assert_no_traceback(server_log)


CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("message", "param", "words"),
    [
        ({"role": "assistant", "content": None, "tool_calls": [CALL]}, "messages.1.tool_calls", "tool"),
        (
            {"role": "assistant", "content": None, "function_call": CALL["function"]},
            "messages.1.function_call",
            "tool",
        ),
        ({"role": "assistant", "content": "x", "refusal": "no"}, "messages.1.refusal", "refusal"),
        (
            {"role": "user", "content": "x", "cache_control": {"type": "ephemeral"}},
            "messages.1.cache_control",
            "cache_control",
        ),
        ({"role": "user", "content": "x", "Content": "y"}, "messages.1.Content", "Content"),
    ],
)
def test_message_fields_the_server_cannot_honour_are_refused_by_name(
    server, server_log, message, param, words
):
    answer = post_raw(server, chat(messages=[*HI, message, *HI]))
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and words in error["message"]
    assert_no_traceback(server_log)


def test_an_assistant_message_echoed_back_as_received_is_accepted(client):
    first = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=2)
    echoed = first.choices[0].message.model_dump()  # refusal, tool_calls, audio ...: all empty
    assert "tool_calls" in echoed and "refusal" in echoed
    client.chat.completions.create(model=MODEL, messages=[*HI, echoed, *HI], max_tokens=2)
