"""Auth, limits and bad requests: each answered with the right status and an OpenAI error body."""

import logging

import httpx
import openai
import pytest

from distil.server.app import create_app
from distil.server.settings import ServeError, ServerSettings, check_exposure, is_loopback
from distil.server.testing import running_server
from tests.server.conftest import API_KEY, MODEL

HI = [{"role": "user", "content": "hi"}]


def _error(exc_info) -> dict:
    body = exc_info.value.body
    assert set(body) == {"message", "type", "param", "code"}  # the client unwraps {"error": ...}
    return body


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_missing_or_wrong_key_is_401_and_the_key_is_never_echoed(server, key):
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/admin/stats")):
        answer = httpx.request(method, server.url + path, headers=headers, json={"model": MODEL})
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "invalid_api_key"
        assert API_KEY not in answer.text and (key is None or key not in answer.text)
    assert httpx.get(server.url + "/health").status_code == 200  # readiness needs no key


def test_the_openai_client_sees_authentication_errors(server):
    client = openai.OpenAI(base_url=server.base_url, api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model=MODEL, messages=HI, max_tokens=2)
    assert _error(refused)["code"] == "invalid_api_key"


def test_the_key_never_reaches_the_server_logs(teacher, caplog):
    server_loggers = [
        logging.getLogger(name) for name in ("uvicorn.access", "uvicorn.error", "distil.server")
    ]
    with running_server(teacher, api_key=API_KEY, log_requests=True) as server:
        for logger in server_loggers:
            logger.addHandler(caplog.handler)
        try:
            client = openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0)
            client.chat.completions.create(model=MODEL, messages=HI, max_tokens=2)
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(
                    base_url=server.base_url, api_key="guess-" + API_KEY, max_retries=0
                ).models.list()
        finally:
            for logger in server_loggers:
                logger.removeHandler(caplog.handler)
    assert "POST /v1/chat/completions" in caplog.text and "401" in caplog.text  # requests logged
    assert API_KEY not in caplog.text


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as refused:
        client.chat.completions.create(model="gpt-none", messages=HI, max_tokens=2)
    assert _error(refused) | {"message": ""} == {
        "message": "",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-none")


@pytest.mark.parametrize(
    ("request_fields", "param"),
    [
        ({"max_tokens": 5000}, "max_tokens"),
        ({"max_tokens": 2, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"max_tokens": 2, "top_logprobs": 3}, "top_logprobs"),
        ({"max_tokens": 2, "n": 2}, "n"),
        ({"max_tokens": 2, "stream": True}, "stream"),
        ({"max_tokens": 2, "temperature": 3}, "temperature"),
        ({"max_tokens": 2, "presence_penalty": 1.0}, "presence_penalty"),
        ({"max_tokens": 2, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 2, "messages": []}, "messages"),
        ({"max_tokens": 2, "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"max_tokens": 2, "extra_body": {"tools_please": 1}}, "tools_please"),
    ],
)
def test_bad_chat_requests_are_400_naming_the_parameter(client, request_fields, param):
    request_fields = {"model": MODEL, "messages": HI, **request_fields}
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**request_fields)
    error = _error(refused)
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert error["message"]


def test_bad_completion_requests_are_400(client):
    for fields, param in (
        ({"prompt": "x", "logprobs": 21}, "logprobs"),
        ({"prompt": [[5, 10**6]]}, "prompt"),
        ({"prompt": []}, "prompt"),
        ({"prompt": [1.5]}, "prompt"),
        ({"prompt": "x", "suffix": "y"}, "suffix"),
        ({"prompt": ["x"] * 65}, "prompt"),
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            client.completions.create(model=MODEL, max_tokens=1, **fields)
        assert _error(refused)["param"] == param, fields


def test_malformed_json_is_400(server):
    answer = httpx.post(
        server.url + "/v1/completions", content=b"{not json", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_json"


def test_long_prompts_and_large_bodies_are_refused(teacher):
    with running_server(teacher, max_prompt_tokens=8, max_body_bytes=4096) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        with pytest.raises(openai.BadRequestError) as too_long:
            client.completions.create(model=MODEL, prompt="nine toks", max_tokens=1)
        assert _error(too_long)["code"] == "context_length_exceeded"
        client.completions.create(model=MODEL, prompt="8 tokens", max_tokens=1)  # at the limit
        with pytest.raises(openai.APIStatusError) as too_large:
            client.completions.create(model=MODEL, prompt="x" * 5000, max_tokens=1)
        assert too_large.value.status_code == 413
        assert _error(too_large)["code"] == "request_too_large"
        chunked = httpx.post(
            server.url + "/v1/completions", content=iter([b"{" + b" " * 3000, b" " * 3000 + b"}"])
        )
        assert chunked.status_code == 413  # no Content-Length: counted while reading


def test_context_window_bounds_prompt_plus_completion(client, teacher):
    context = teacher.model.config.max_position_embeddings
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=MODEL, prompt=[5] * (context - 3), max_tokens=4)
    assert _error(refused)["code"] == "context_length_exceeded"


def test_a_server_can_refuse_logprobs_like_a_provider_without_them(teacher):
    with running_server(teacher, refuse_logprobs=True) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        for ask in (
            lambda: client.chat.completions.create(
                model=MODEL, messages=HI, max_tokens=2, logprobs=True, top_logprobs=2
            ),
            lambda: client.completions.create(model=MODEL, prompt="hi", max_tokens=0, echo=True, logprobs=1),
        ):
            with pytest.raises(openai.BadRequestError) as refused:
                ask()
            assert _error(refused)["code"] == "unsupported_parameter"
            assert _error(refused)["param"] == "logprobs"
        plain = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=2)
        assert plain.choices[0].logprobs is None


def test_unknown_routes_and_methods_answer_openai_errors(server):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    missing = httpx.get(server.url + "/v1/embeddings", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_url"
    wrong_method = httpx.delete(server.url + "/v1/models", headers=headers)
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.org", False),
    ],
)
def test_only_loopback_may_go_without_a_key(host, loopback):
    assert is_loopback(host) is loopback
    check_exposure(host, "a-key")
    if loopback:
        check_exposure(host, None)
    else:
        with pytest.raises(ServeError, match="DISTIL_SERVE_API_KEY"):
            check_exposure(host, None)


def test_a_top_logprobs_limit_beyond_the_vocabulary_is_refused(teacher):
    with pytest.raises(ServeError, match="vocabulary of 261 tokens"):
        create_app(teacher, ServerSettings(served_name=MODEL, max_top_logprobs=100_000))
