"""A corpus of bad requests, each sent raw: every one is a 4xx with an OpenAI error body whose
message is one line, and none leaves an error or a traceback in the server's log.

Bodies, JSON types, sizes, encodings, headers: what careless or hostile clients send."""

import json
from typing import Any

import httpx
import pytest

from tests.server.conftest import API_KEY, MODEL, assert_no_traceback

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
HI = [{"role": "user", "content": "hi"}]
AUTH = {"Authorization": f"Bearer {API_KEY}"}
JSON = {"Content-Type": "application/json"}


def chat(**fields: Any) -> bytes:
    return json.dumps({"model": MODEL, "messages": HI, "max_tokens": 2, **fields}).encode()


def completion(**fields: Any) -> bytes:
    return json.dumps({"model": MODEL, "prompt": "hi", "max_tokens": 2, **fields}).encode()


def compact(body: bytes) -> bytes:
    """`body` without the spaces json.dumps puts after separators (to stay under 4 MiB)."""
    return json.dumps(json.loads(body), separators=(",", ":")).encode()


def with_raw(body: bytes, field: bytes) -> bytes:
    """`body` with one more field, written raw (JSON that json.dumps would never write)."""
    return body[:-1] + b", " + field + b"}"


# (case, path, body, headers sent instead of AUTH | JSON (None: the defaults), status)
CORPUS: list[tuple[str, str, bytes, dict[str, Any] | None, int]] = [
    # the body is not a JSON object
    ("invalid JSON", CHAT, b"{not json", None, 400),
    ("truncated JSON", CHAT, chat()[:-5], None, 400),
    ("trailing bytes after the object", CHAT, chat() + b" {}", None, 400),
    ("empty body", CHAT, b"", None, 400),
    ("array body", CHAT, b"[1, 2]", None, 400),
    ("string body", CHAT, b'"hello"', None, 400),
    ("null body", COMPLETIONS, b"null", None, 400),
    ("nested 5,000 deep", CHAT, b"[" * 5000 + b"]" * 5000, None, 400),
    (
        "nested deep inside a field",
        CHAT,
        with_raw(chat(), b'"metadata": ' + b'{"a": ' * 3000 + b"1" + b"}" * 3000),
        None,
        400,
    ),
    ("NaN", CHAT, with_raw(chat(), b'"temperature": NaN'), None, 400),
    ("Infinity", CHAT, with_raw(chat(), b'"top_p": Infinity'), None, 400),
    ("-Infinity", COMPLETIONS, with_raw(completion(), b'"temperature": -Infinity'), None, 400),
    ("a 5,000-digit number", CHAT, with_raw(chat(), b'"seed": ' + b"7" * 5000), None, 400),
    ("a number beyond float", CHAT, with_raw(chat(), b'"temperature": 1' + b"0" * 400), None, 400),
    ("1e400", CHAT, with_raw(chat(), b'"temperature": 1e400'), None, 400),
    # encodings
    (
        "non-UTF-8 bytes",
        CHAT,
        chat(messages=[{"role": "user", "content": "caf\u00e9"}]).replace(b"caf\\u00e9", b"caf\xe9"),
        None,
        400,
    ),
    ("UTF-16 body", CHAT, chat().decode().encode("utf-16"), None, 400),
    ("UTF-32 body", COMPLETIONS, completion().decode().encode("utf-32"), None, 400),
    (
        "encoded surrogate bytes",
        CHAT,
        chat(messages=[{"role": "user", "content": "x"}]).replace(b'"x"', b'"\xed\xa0\x80"'),
        None,
        400,
    ),
    ("escaped lone surrogate", CHAT, chat(messages=[{"role": "user", "content": "a\ud800"}]), None, 400),
    ("lone surrogate in a key", CHAT, with_raw(chat(), b'"metadata": {"\\udc00": "x"}'), None, 400),
    # headers
    ("text/plain content type", CHAT, chat(), {**AUTH, "Content-Type": "text/plain"}, 415),
    (
        "form content type",
        CHAT,
        b"model=tiny-teacher&max_tokens=2",
        {**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
        415,
    ),
    ("no key", CHAT, chat(), JSON, 401),
    ("wrong key", CHAT, chat(), {**JSON, "Authorization": "Bearer wrong"}, 401),
    ("Basic auth", CHAT, chat(), {**JSON, "Authorization": f"Basic {API_KEY}"}, 401),
    ("key without a scheme", CHAT, chat(), {**JSON, "Authorization": API_KEY}, 401),
    ("non-ASCII key", CHAT, chat(), {**JSON, "Authorization": "Bearer k\u00e9y".encode()}, 401),
    # sizes
    ("body over the limit", CHAT, b" " * (4 * 1024 * 1024 + 1), None, 413),
    ("prompt over the context", CHAT, chat(messages=[{"role": "user", "content": "x" * 200_000}]), None, 400),
    ("prompt ids over the context", COMPLETIONS, completion(prompt=[5] * 600), None, 400),
    ("65 prompts", COMPLETIONS, completion(prompt=["x"] * 65), None, 400),
    ("1.9M token ids", COMPLETIONS, compact(completion(prompt=[5] * 1_900_000)), None, 400),
    ("65 lists of token ids", COMPLETIONS, completion(prompt=[[5]] * 65), None, 400),
    ("a list of token ids over the context", COMPLETIONS, completion(prompt=[[5], [5] * 600]), None, 400),
    ("130k messages", CHAT, compact(chat(messages=[{"role": "user", "content": ""}] * 130_000)), None, 400),
    (
        "140k content parts",
        CHAT,
        compact(chat(messages=[{"role": "user", "content": [{"type": "text", "text": ""}] * 140_000}])),
        None,
        400,
    ),
    # fields and their JSON types
    ("unknown model", CHAT, chat(model="gpt-none"), None, 404),
    ("model not a string", CHAT, chat(model=7), None, 400),
    ("missing model", CHAT, json.dumps({"messages": HI}).encode(), None, 400),
    ("missing messages", CHAT, json.dumps({"model": MODEL}).encode(), None, 400),
    ("empty messages", CHAT, chat(messages=[]), None, 400),
    ("messages not a list", CHAT, chat(messages="hi"), None, 400),
    ("message not an object", CHAT, chat(messages=["hi"]), None, 400),
    ("unknown role", CHAT, chat(messages=[{"role": "robot", "content": "x"}]), None, 400),
    ("tool role", CHAT, chat(messages=[{"role": "tool", "content": "x", "tool_call_id": "c"}]), None, 400),
    ("content a number", CHAT, chat(messages=[{"role": "user", "content": 5}]), None, 400),
    (
        "image content part",
        CHAT,
        chat(
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]
        ),
        None,
        400,
    ),
    ("unknown message field", CHAT, chat(messages=[{"role": "user", "content": "x", "extra": 1}]), None, 400),
    (
        "assistant tool calls",
        CHAT,
        chat(
            messages=[
                *HI,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
            ]
        ),
        None,
        400,
    ),
    ("unknown request field", CHAT, chat(tools=[]), None, 400),
    ("max_tokens over the limit", CHAT, chat(max_tokens=10**12), None, 400),
    ("max_tokens beyond int64", CHAT, chat(max_tokens=10**30), None, 400),
    ("negative max_tokens", CHAT, chat(max_tokens=-1), None, 400),
    ("max_tokens a string", CHAT, chat(max_tokens="8"), None, 400),
    ("max_tokens a boolean", CHAT, chat(max_tokens=True), None, 400),
    ("n over 1", CHAT, chat(n=5), None, 400),
    ("stream", CHAT, chat(stream=True), None, 400),
    ("logprobs a string", CHAT, chat(logprobs="yes"), None, 400),
    ("top_logprobs over the limit", CHAT, chat(logprobs=True, top_logprobs=21), None, 400),
    ("negative top_logprobs", CHAT, chat(logprobs=True, top_logprobs=-1), None, 400),
    ("completions logprobs over the limit", COMPLETIONS, completion(logprobs=21), None, 400),
    ("stop a number", CHAT, chat(stop=5), None, 400),
    ("stop holding a number", CHAT, chat(stop=["a", 1]), None, 400),
    ("five stop strings", CHAT, chat(stop=["a", "b", "c", "d", "e"]), None, 400),
    ("temperature over 2", CHAT, chat(temperature=2.5), None, 400),
    ("tiny temperature", CHAT, chat(temperature=1e-300), None, 400),
    ("negative top_p", CHAT, chat(top_p=-0.5), None, 400),
    ("seed over int64", CHAT, chat(seed=2**63, temperature=1.0), None, 400),
    ("seed under int64", CHAT, chat(seed=-(2**63) - 1, temperature=1.0), None, 400),
    ("empty token-id prompt", COMPLETIONS, completion(prompt=[[]]), None, 400),
    ("token id out of range", COMPLETIONS, completion(prompt=[5, 10**6]), None, 400),
    ("negative token id", COMPLETIONS, completion(prompt=[-1]), None, 400),
    ("float token id", COMPLETIONS, completion(prompt=[1.5]), None, 400),
    ("empty prompt list", COMPLETIONS, completion(prompt=[]), None, 400),
    ("echo a string", COMPLETIONS, completion(echo="true"), None, 400),
    ("best_of over 1", COMPLETIONS, completion(best_of=2), None, 400),
]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status"), [case[1:] for case in CORPUS], ids=[case[0] for case in CORPUS]
)
def test_a_bad_request_is_a_4xx_with_a_one_line_message_and_no_traceback(
    server, server_log, path, body, headers, status
):
    answer = httpx.post(
        server.url + path, content=body, timeout=60, headers=headers if headers is not None else AUTH | JSON
    )
    assert answer.status_code == status, answer.text[:500]
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"].strip()
    assert "\n" not in error["message"] and len(error["message"]) < 1000
    assert_no_traceback(server_log)


def test_the_corpus_is_large_and_distinct():
    assert len(CORPUS) >= 20
    assert len({case[0] for case in CORPUS}) == len({repr(case[1:]) for case in CORPUS}) == len(CORPUS)
