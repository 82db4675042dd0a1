"""Fixtures: one tiny teacher for the session, a keyed server over it, openai clients."""

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
