"""The key as operators store it, slow clients, and what the request log may show."""

import openai
import pytest

from distil.server.app import create_app
from distil.server.settings import API_KEY_ENV, ServeError, ServerSettings, api_key_from_env
from distil.server.testing import running_server
from tests.server.conftest import API_KEY, MODEL


@pytest.mark.parametrize("stored", [API_KEY + "\n", f"  {API_KEY}\r\n", f"\t{API_KEY} "])
def test_a_key_read_from_a_secret_file_lets_its_clients_in(teacher, monkeypatch, stored):
    monkeypatch.setenv(API_KEY_ENV, stored)
    assert api_key_from_env() == API_KEY
    with running_server(teacher, api_key=stored) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0)
        assert [m.id for m in client.models.list().data] == [MODEL]


@pytest.mark.parametrize("stored", ["", "\n", "   "])
def test_an_empty_key_is_refused_at_start(teacher, monkeypatch, stored):
    monkeypatch.setenv(API_KEY_ENV, stored)
    with pytest.raises(ServeError, match=f"{API_KEY_ENV}.* empty or only whitespace"):
        api_key_from_env()
    with pytest.raises(ServeError, match="empty or only whitespace"):
        create_app(teacher, ServerSettings(served_name=MODEL), api_key=stored)


def test_no_key_in_the_environment_is_no_key(monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    assert api_key_from_env() is None
