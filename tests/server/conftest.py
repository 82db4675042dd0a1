"""Fixtures: one tiny teacher for the session, a keyed server over it, openai clients, and
what the server logs."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import openai
import pytest

from distil.server.testing import running_server
from distil.teachers import LocalTeacher

API_KEY = "test-key-5f1c0e9a"
MODEL = "tiny-teacher"


@pytest.fixture(scope="session")
def teacher() -> LocalTeacher:
    return LocalTeacher.load(MODEL, device="cpu")


@pytest.fixture(scope="session")
def server(teacher):
    """A server with a key and the admin endpoint; requests wait 20 ms for batch mates."""
    with running_server(teacher, api_key=API_KEY, admin=True, batch_wait_ms=20) as running:
        yield running


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0, timeout=60)


@pytest.fixture
def async_client(server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0, timeout=60)


SERVER_LOGGERS = ("uvicorn.error", "uvicorn.access", "distil.server")


@contextmanager
def capturing_server_log(caplog) -> Iterator[None]:
    """Route what the server logs to `caplog` (uvicorn's loggers do not propagate). Enter it
    after starting a server: starting one resets uvicorn's handlers."""
    loggers = [logging.getLogger(name) for name in SERVER_LOGGERS]
    for logger in loggers:
        logger.addHandler(caplog.handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(caplog.handler)


@pytest.fixture
def server_log(server, caplog):
    """What the session's `server` logs during the test."""
    with capturing_server_log(caplog):
        yield caplog


def assert_no_traceback(log) -> None:
    """Nothing logged at error level and no traceback: a client's mistake is not the server's."""
    assert not [r for r in log.records if r.exc_info or r.levelno >= logging.ERROR], log.text
    assert "Traceback" not in log.text
