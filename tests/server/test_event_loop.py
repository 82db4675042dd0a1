"""One large or slow request must not hold up the others: prompts too long to fit are refused
before tokenising (lists of millions of items before validating), and tokenising runs off the
event loop."""

import threading
import time

import httpx
import pytest

from tests.server.conftest import API_KEY, MODEL

AUTH = {"Authorization": f"Bearer {API_KEY}"}


class Recorder:
    """Stands in for the tokenizer and the chat template: records each call, tokenises nothing."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *_args, **_kwargs):
        self.calls += 1
        raise AssertionError("a prompt too long to fit was tokenised")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * 400_000}]}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * 1000}] * 400}),
        ("/v1/completions", {"prompt": "x" * 400_000}),
        ("/v1/completions", {"prompt": ["short", "x" * 400_000]}),
        ("/v1/completions", {"prompt": [5] * 200_000}),
    ],
)
def test_a_prompt_too_long_to_fit_is_refused_without_tokenising(server, teacher, monkeypatch, path, body):
    recorder, served = Recorder(), server.app.state.served
    monkeypatch.setattr(teacher, "render", recorder)
    monkeypatch.setattr(served, "tokenizer", recorder)
    answer = httpx.post(
        server.url + path, json={"model": MODEL, "max_tokens": 1, **body}, headers=AUTH, timeout=60
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert str(served.max_prompt_tokens) in error["message"]  # names the limit
    assert recorder.calls == 0


def test_tokenising_runs_off_the_event_loop(server, teacher, monkeypatch):
    """While one request's chat template is being rendered, /health still answers."""
    started, release = threading.Event(), threading.Event()
    render = teacher.render

    def slow_render(messages):
        started.set()
        release.wait(30)  # bounded only so that a broken server cannot hang the test run
        return render(messages)

    monkeypatch.setattr(teacher, "render", slow_render)
    answers = []
    request = threading.Thread(
        target=lambda: answers.append(
            httpx.post(
                server.url + "/v1/chat/completions",
                headers=AUTH,
                timeout=60,
                json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
            )
        )
    )
    request.start()
    try:
        assert started.wait(30)
        health = httpx.get(server.url + "/health", timeout=10)  # on the loop: times out if blocked
        assert health.status_code == 200 and not release.is_set()
    finally:
        release.set()
        request.join(60)
    assert answers[0].status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/completions",
            b'{"model": "%s", "max_tokens": 1, "prompt": [' % MODEL.encode() + b"5," * 1_900_000 + b"5]}",
        ),
        (
            "/v1/chat/completions",
            b'{"model": "%s", "max_tokens": 1, "messages": [' % MODEL.encode()
            + b'{"role":"user","content":""},' * 130_000
            + b'{"role":"user","content":"hi"}]}',
        ),
    ],
    ids=["1.9M token ids", "130k messages"],
)
def test_a_body_of_millions_of_items_is_refused_without_holding_the_loop(server, path, body):
    """Validating 1.9M token ids held /health for 5.9 s before the 400; they are counted first."""
    assert len(body) < 4 * 1024 * 1024  # under the body limit: this is not the 413
    answers = []
    request = threading.Thread(
        target=lambda: answers.append(
            httpx.post(
                server.url + path,
                content=body,
                timeout=120,
                headers={**AUTH, "Content-Type": "application/json"},
            )
        )
    )
    request.start()
    waits = []
    while request.is_alive():
        started = time.perf_counter()
        assert httpx.get(server.url + "/health", timeout=60).status_code == 200
        waits.append(time.perf_counter() - started)
        time.sleep(0.005)
    request.join()
    assert answers[0].status_code == 400, answers[0].text[:300]
    assert answers[0].json()["error"]["code"] == "context_length_exceeded"
    assert waits and max(waits) < 1.5, waits  # generous for a busy machine; 3.9 s before
