"""`distil serve` as a user runs it: startup line, auth, counters, clean stop, bad input."""

import subprocess
import sys

import openai
import pytest

from distil.server.settings import API_KEY_ENV
from distil.server.testing import serve_process
from tests.server.conftest import API_KEY, MODEL


def distil(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    child_env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "distil.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=child_env,
    )


def test_serve_answers_counts_and_stops_cleanly_without_leaking_the_key():
    with serve_process(
        MODEL, "--admin", "--log-requests", "--max-top-logprobs", "5", api_key=API_KEY
    ) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0)
        answer = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=3,
            temperature=0,
            logprobs=True,
            top_logprobs=5,
            extra_headers={"Idempotency-Key": "row-1"},
        )
        assert answer.usage.completion_tokens == 3
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "x"}], logprobs=True, top_logprobs=6
            )
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.base_url, api_key="nope", max_retries=0).models.list()
        stats = server.stats()
        assert stats["completed_by_key"] == {"row-1": 1}
        assert stats["statuses"] == {"200": 1, "400": 1, "401": 1}
        assert server.stop() == 0
    output = server.output()
    first_line = output.splitlines()[0]
    assert first_line.startswith(f"serving {MODEL} as '{MODEL}' at {server.url}/v1")
    assert "API key required" in first_line
    assert "POST /v1/chat/completions" in output and output.rstrip().endswith("server stopped")
    assert API_KEY not in output


def test_serving_beyond_loopback_without_a_key_is_refused_in_one_line():
    result = distil("serve", MODEL, "--host", "0.0.0.0")
    assert result.returncode == 2
    assert result.stdout == "" and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: refusing to listen on 0.0.0.0 without an API key")
    assert API_KEY_ENV in result.stderr


def test_bad_limits_are_refused_in_one_line():
    result = distil("serve", MODEL, "--max-batch-size", "0")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: --max-batch-size: Input should be greater than")
    result = distil("serve", MODEL, "--watermark", "--watermark-scheme", "gumbel")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: --watermark-scheme: Input should be 'kgw' or 'exp-min'")


def test_help_names_every_option():
    result = distil("serve", "--help")
    for option in (
        "--host",
        "--port",
        "--max-top-logprobs",
        "--max-batch-size",
        "--max-tokens",
        "--max-prompt-tokens",
        "--served-name",
        "--refuse-logprobs",
        "--admin",
        "--watermark-scheme",
    ):
        assert option in result.stdout
    assert "--api-key" not in result.stdout  # the key comes from the environment only
